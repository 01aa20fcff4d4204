"""Video DataModules, decoded with PyAV (``pip install jepa-lightning[video]``).

Modules, each importing only those above it:

- :mod:`~datamodules.video.codec`: PyAV: frame counts, the seeking frame decoder (:func:`read_frames`),
  :func:`write_mp4`;
- :mod:`~datamodules.video.sources`: the sources of a split (class folders, V-JEPA list files, CSVs;
  :func:`read_video_index`);
- :mod:`~datamodules.video.transforms`: the training and evaluation views of a clip;
- :mod:`~datamodules.video.clips`: clip positions (:func:`clip_indices`) and :class:`VideoClipDataset`;
- :mod:`~datamodules.video.datamodule`: :class:`VideoDataModule` (batch keys and shapes);
- :mod:`~datamodules.video.embedded`: :class:`EmbeddedVideoDataModule`, the cache-folder half of the embedded sets;
- :mod:`~datamodules.video.moving_digits`: the embedded moving-digits generator and
  :class:`MovingDigitsDataModule`;
- :mod:`~datamodules.video.object_motion`: the moving-objects renderer (textured shapes over panning photographs);
- :mod:`~datamodules.video.moving_objects`: :class:`MovingObjectsDataModule`, its mp4 set.

The names below are imported lazily (`jepa_lightning.lazy`), each with its own module only.
"""

from jepa_lightning.lazy import lazy_exports

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MOTIONS",
    "OBJECT_MOTIONS",
    "SHORT_VIDEO_POLICIES",
    "VIDEO_EXTENSIONS",
    "EmbeddedVideoDataModule",
    "MotionSpec",
    "MovingDigitsDataModule",
    "MovingObjectsDataModule",
    "ScaleNormalize",
    "ShortVideoError",
    "VideoClipDataset",
    "VideoDataModule",
    "VideoEvalTransform",
    "VideoTrainTransform",
    "clip_indices",
    "generate_moving_digits",
    "generate_moving_objects",
    "moving_digit_trajectories",
    "read_frames",
    "read_video_index",
    "render_moving_digit",
    "render_moving_objects",
    "video_frame_count",
    "write_mp4",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "clips": ["ShortVideoError", "VideoClipDataset", "clip_indices"],
    "codec": ["read_frames", "video_frame_count", "write_mp4"],
    "datamodule": ["SHORT_VIDEO_POLICIES", "VideoDataModule"],
    "embedded": ["EmbeddedVideoDataModule"],
    "moving_digits": [
        "MOTIONS", "MovingDigitsDataModule", "generate_moving_digits", "moving_digit_trajectories",
        "render_moving_digit",
    ],
    "moving_objects": ["MovingObjectsDataModule", "generate_moving_objects"],
    "object_motion": ["OBJECT_MOTIONS", "MotionSpec", "render_moving_objects"],
    "sources": ["VIDEO_EXTENSIONS", "read_video_index"],
    "transforms": [
        "IMAGENET_MEAN", "IMAGENET_STD", "ScaleNormalize", "VideoEvalTransform", "VideoTrainTransform",
    ],
})
