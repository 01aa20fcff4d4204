"""Mask generators: batched, vectorized torch, seeded; they return index tensors.

The names below are imported lazily (`jepa_lightning.lazy`), each with its own module only."""

from jepa_lightning.lazy import lazy_exports

__all__ = ["BEVCellMask", "BEVMasks", "FeatureMask", "Masks", "MultiBlockMask2D", "MultiBlockMask3D", "step_generator", "TemporalMask"]

__getattr__, __dir__ = lazy_exports(__name__, {
    "bev": ["BEVCellMask", "BEVMasks"],
    "multiblock": ["MultiBlockMask2D"],
    "multiblock3d": ["MultiBlockMask3D"],
    "tabular": ["FeatureMask"],
    "temporal": ["TemporalMask"],
    "utils": ["Masks", "step_generator"],
})
