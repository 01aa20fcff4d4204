"""JEPA variants, one LightningModule per paper; shared machinery in `base`."""

from jepa_lightning.methods.base import JEPAModule
from jepa_lightning.methods.ijepa import IJEPA

__all__ = ["JEPAModule", "IJEPA"]
