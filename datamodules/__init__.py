"""DataModules, one file per modality (video, ui, tabular, lidar and rotations: a package each). They yield dict
batches and import nothing from jepa_lightning but its seeding helpers, the skipped-sample report
(`jepa_lightning.skipped`), the generate-once cache of embedded sets (`jepa_lightning.generated`) and the RL episode
format / embedded generators of `jepa_lightning.rl` (never a method: a method reads batch keys, a DataModule knows no
method), and `jepa_lightning.lazy`. jepa_lightning never imports datamodules.

The names below (and those of the sub-packages) are imported lazily (`jepa_lightning.lazy`): a run of the digits
imports `images` (and `common`, `digits`) only, not the video, LiDAR, UI, tabular or RL modules of the others."""

from jepa_lightning.lazy import lazy_exports

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
    "MultiCrop",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "common": [
        "SKIPPED_KEY", "EpochSampler", "JEPADataModule", "SeededSamples", "Skipped", "SkippedReport",
        "SkippedSampleWarning", "SkipUnreadable", "collate_skipping",
    ],
    "images": ["DigitsDataModule", "DigitsDataset", "ImageFolderDataModule", "ImageFolderDataset"],
    "lidar": ["LidarDataModule", "generate_lidar_dataset"],
    "linear": ["LinearPairsDataModule"],
    "multicrop": ["MultiCrop"],
    "object_scenes": ["ObjectScenesDataModule"],
    "offline_rl": ["OfflineRLDataModule"],
    "rotations": ["RotationSequenceDataModule"],
    "scenes": ["DigitScenesDataModule"],
    "tabular": ["TabularDataModule", "TabularDataset"],
    "ui": ["UIRecordingsDataModule", "generate_ui_recordings"],
    "video": [
        "MOTIONS", "VIDEO_EXTENSIONS", "MovingDigitsDataModule", "MovingObjectsDataModule",
        "ShortVideoError", "VideoClipDataset", "VideoDataModule", "VideoEvalTransform",
        "VideoTrainTransform", "clip_indices", "read_frames", "read_video_index", "video_frame_count",
    ],
    "views": ["ViewSequenceDataModule", "ViewSequenceTransform"],
})
