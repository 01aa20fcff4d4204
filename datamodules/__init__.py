"""DataModules, one file per modality (video, ui, tabular, lidar and rotations: a package each). They yield dict
batches and import nothing from jepa_lightning but its seeding helpers, the skipped-sample report
(`jepa_lightning.skipped`), the generate-once cache of embedded sets (`jepa_lightning.generated`) and the RL episode
format / embedded generators of `jepa_lightning.rl` (never a method: a method reads batch keys, a DataModule knows no
method). jepa_lightning never imports datamodules."""

from .common import (
    SKIPPED_KEY,
    EpochSampler,
    JEPADataModule,
    SeededSamples,
    Skipped,
    SkippedReport,
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
from .lidar import LidarDataModule, generate_lidar_dataset
from .linear import LinearPairsDataModule
from .object_scenes import ObjectScenesDataModule
from .offline_rl import OfflineRLDataModule
from .rotations import RotationSequenceDataModule
from .scenes import DigitScenesDataModule
from .tabular import TabularDataModule, TabularDataset
from .ui import UIRecordingsDataModule, generate_ui_recordings
from .video import (
    MOTIONS,
    VIDEO_EXTENSIONS,
    MovingDigitsDataModule,
    MovingObjectsDataModule,
    ShortVideoError,
    VideoClipDataset,
    VideoDataModule,
    VideoEvalTransform,
    VideoTrainTransform,
    clip_indices,
    read_frames,
    read_video_index,
    video_frame_count,
)
from .views import ViewSequenceDataModule, ViewSequenceTransform

__all__ = [
    "MOTIONS",
    "SKIPPED_KEY",
    "VIDEO_EXTENSIONS",
    "DigitScenesDataModule",
    "DigitsDataModule",
    "DigitsDataset",
    "EpochSampler",
    "ImageFolderDataModule",
    "ImageFolderDataset",
    "JEPADataModule",
    "ObjectScenesDataModule",
    "OfflineRLDataModule",
    "RotationSequenceDataModule",
    "LidarDataModule",
    "generate_lidar_dataset",
    "UIRecordingsDataModule",
    "generate_ui_recordings",
    "LinearPairsDataModule",
    "MovingDigitsDataModule",
    "MovingObjectsDataModule",
    "SeededSamples",
    "ShortVideoError",
    "SkipUnreadable",
    "Skipped",
    "SkippedReport",
    "SkippedSampleWarning",
    "TabularDataModule",
    "TabularDataset",
    "VideoClipDataset",
    "VideoDataModule",
    "VideoEvalTransform",
    "VideoTrainTransform",
    "ViewSequenceDataModule",
    "ViewSequenceTransform",
    "clip_indices",
    "collate_skipping",
    "read_frames",
    "read_video_index",
    "video_frame_count",
]
