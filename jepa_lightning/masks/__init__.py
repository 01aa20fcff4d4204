"""Mask generators: batched, vectorized torch, seeded; they return index tensors."""

from .bev import BEVCellMask, BEVMasks
from .multiblock import MultiBlockMask2D
from .multiblock3d import MultiBlockMask3D
from .tabular import FeatureMask
from .temporal import TemporalMask
from .utils import Masks, step_generator

__all__ = ["BEVCellMask", "BEVMasks", "FeatureMask", "Masks", "MultiBlockMask2D", "MultiBlockMask3D", "step_generator", "TemporalMask"]
