"""DataModules, one file per modality. They yield dict batches and import nothing from jepa_lightning."""

from .common import (
    SKIPPED_KEY,
    EpochSampler,
    JEPADataModule,
    SeededSamples,
    Skipped,
    SkippedSampleWarning,
    SkipUnreadable,
    collate_skipping,
)
from .images import (
    DigitsDataModule,
    DigitsDataset,
    ImageFolderDataModule,
    ImageFolderDataset,
)

__all__ = [
    "SKIPPED_KEY",
    "DigitsDataModule",
    "DigitsDataset",
    "EpochSampler",
    "ImageFolderDataModule",
    "ImageFolderDataset",
    "JEPADataModule",
    "SeededSamples",
    "SkipUnreadable",
    "Skipped",
    "SkippedSampleWarning",
    "collate_skipping",
]
