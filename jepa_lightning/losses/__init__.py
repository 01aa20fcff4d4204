"""Losses shared by several methods: SIGReg (LeJEPA's isotropic-Gaussian regulariser)."""

from jepa_lightning.losses.sigreg import SIGReg, epps_pulley, random_directions

__all__ = ["SIGReg", "epps_pulley", "random_directions"]
