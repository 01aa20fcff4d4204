"""Video DataModule, decoded with PyAV (``pip install jepa-lightning[video]``).

Batches (dicts; unreadable files are skipped and reported, see :mod:`datamodules.common`):

- ``"video"``: float32, normalized with ``mean``/``std``, ``[B, C, T, H, W]`` with C = 3 (RGB),
  T = ``frames_per_clip``, H = W = ``crop_size``.
  Training with ``num_clips > 1``: ``[B, num_clips, C, T, H, W]`` (each clip its own crop).
  Evaluation (val, test, ``train_eval_dataloader``) with ``eval_clips * eval_views > 1``:
  ``[B, V, C, T, H, W]``, V = eval_clips * eval_views, clip-major (the views of clip 0, then those
  of clip 1, ...).
- ``"label"``: int64 ``[B]``, the label column picked by ``label``.
- one int64 ``[B]`` entry per label column of a CSV source, under the column's name (so a CSV with
  columns ``path,digit,motion`` and ``label="digit"`` gives ``video, label, digit, motion``).

Sources: :mod:`datamodules.video.sources`; clips: :mod:`datamodules.video.clips`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

from ..common import JEPADataModule, list_class_folders
from .clips import VideoClipDataset
from .codec import _av
from .sources import read_video_index
from .transforms import IMAGENET_MEAN, IMAGENET_STD, VideoEvalTransform, VideoTrainTransform

SHORT_VIDEO_POLICIES = ("loop", "pad", "skip")


def _check_pair(name: str, value: Sequence[float], upper: float | None) -> tuple[float, float]:
    if len(value) != 2:
        raise ValueError(f"{name} must be a pair (min, max), got {tuple(value)}")
    lo, hi = (float(v) for v in value)
    if not 0.0 < lo <= hi or (upper is not None and hi > upper):
        bound = f" <= {upper}" if upper is not None else ""
        raise ValueError(f"{name} must satisfy 0 < min <= max{bound}, got {tuple(value)}")
    return lo, hi


class VideoDataModule(JEPADataModule):
    """Videos from a class folder tree, a V-JEPA list file or a CSV per split (see
    :mod:`datamodules.video.sources` for the sources, the module docstring for the batch keys and shapes).

    Training view (``train_dataloader``): ``num_clips`` clips of ``frames_per_clip`` frames ``frame_step``
    apart at random positions, RandomResizedCrop(crop_size, crop_scale, crop_ratio) shared by the frames of a
    clip, horizontal flip if ``hflip``, normalize with ``mean``/``std``. Evaluation view (val, test,
    ``train_eval_dataloader``): ``eval_clips`` evenly spaced clips, short side resized to ``crop_size``,
    ``eval_views`` crops along the long side. ``short_videos``: what to do with videos shorter than a clip
    ("loop" the frames, "pad" with the last frame, "skip" the sample). ``seek=False`` decodes every clip
    from the start of the video (slower; for benchmarks and checks). ``decode_threads``: FFmpeg decoder
    threads per video (0: FFmpeg's default). Unreadable files are skipped and reported in ``skipped_files``.

    ``num_classes``: for the ``"label"`` key, the number of class folders (folder tree) or the largest label
    + 1 over the given splits (list file, CSV). ``label_names``: the label keys of a batch.
    """

    _index_at_init = True  # read the sources in __init__ (errors early; num_classes known before setup)

    def __init__(
        self,
        train: str,
        val: str | None = None,
        test: str | None = None,
        label: str = "label",
        frames_per_clip: int = 16,
        frame_step: int = 4,
        num_clips: int = 1,
        eval_clips: int = 1,
        eval_views: int = 1,
        crop_size: int = 224,
        crop_scale: tuple[float, float] = (0.3, 1.0),
        crop_ratio: tuple[float, float] = (0.75, 1.35),
        hflip: bool = True,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        short_videos: Literal["loop", "pad", "skip"] = "loop",
        seek: bool = True,
        decode_threads: int = 0,
        **loader: Any,
    ) -> None:
        """``loader``: the DataLoader settings of :class:`JEPADataModule` (batch_size, num_workers, ...)."""
        super().__init__(**loader)
        self.save_hyperparameters()
        _av()
        for name, value in (("frames_per_clip", frames_per_clip), ("frame_step", frame_step),
                            ("num_clips", num_clips), ("eval_clips", eval_clips), ("eval_views", eval_views),
                            ("crop_size", crop_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not isinstance(decode_threads, int) or decode_threads < 0:
            raise ValueError(f"decode_threads must be an integer >= 0 (0: FFmpeg's default), got {decode_threads!r}")
        if short_videos not in SHORT_VIDEO_POLICIES:
            raise ValueError(f"short_videos must be one of {SHORT_VIDEO_POLICIES}, got {short_videos!r}")
        for name, value in (("mean", mean), ("std", std)):
            if len(value) != 3:
                raise ValueError(f"{name} must have 3 values (R, G, B), got {tuple(value)}")
        if min(std) <= 0:
            raise ValueError(f"std must be > 0, got {tuple(std)}")
        if not label:
            raise ValueError("label must name a label column, got an empty string")
        self.crop_scale = _check_pair("crop_scale", crop_scale, 1.0)
        self.crop_ratio = _check_pair("crop_ratio", crop_ratio, None)
        self.sources = {split: os.fspath(src) for split, src in (("train", train), ("val", val), ("test", test))
                        if src is not None}
        self.label = label
        self.frames_per_clip, self.frame_step, self.num_clips = frames_per_clip, frame_step, num_clips
        self.eval_clips, self.eval_views, self.crop_size, self.hflip = eval_clips, eval_views, crop_size, hflip
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.short_videos, self.seek, self.decode_threads = short_videos, seek, decode_threads
        self.classes: list[str] | None = None
        self.num_classes: int | None = None
        self.label_names: list[str] = ["label"]
        self.index: dict[str, list[tuple[str, dict[str, int]]]] | None = None
        if self._index_at_init:
            self._read_index()

    @property
    def clip_span(self) -> int:
        """Frames covered by one clip: ``(frames_per_clip - 1) * frame_step + 1``."""
        return (self.frames_per_clip - 1) * self.frame_step + 1

    def _read_index(self) -> None:
        train = self.sources["train"]
        self.classes = list_class_folders(train, "video", "video.mp4") if os.path.isdir(train) else None
        index = {split: read_video_index(src, self.label, classes=self.classes)
                 for split, src in self.sources.items()}
        keys = {split: sorted(samples[0][1]) for split, samples in index.items()}
        if any(k != keys["train"] for k in keys.values()):
            raise ValueError(f"the splits have different label columns: {keys} (sources {self.sources})")
        self.index = index
        self.label_names = ["label", *(k for k in keys["train"] if k != "label")]
        self.num_classes = self._count_classes(index)

    def _count_classes(self, index: dict[str, list[tuple[str, dict[str, int]]]]) -> int:
        if self.classes is not None:
            return len(self.classes)
        return 1 + max(labels["label"] for samples in index.values() for _, labels in samples)

    def _dataset(self, split: str, train: bool) -> VideoClipDataset:
        assert self.index is not None
        if train:
            transform: Any = VideoTrainTransform(self.crop_size, self.crop_scale, self.crop_ratio, self.hflip,
                                                 self.mean, self.std)
        else:
            transform = VideoEvalTransform(self.crop_size, self.eval_views, self.mean, self.std)
        return VideoClipDataset(
            self.index[split], transform, self.frames_per_clip, self.frame_step,
            clips=self.num_clips if train else self.eval_clips, train=train, short_videos=self.short_videos,
            seek=self.seek, decode_threads=self.decode_threads,
        )

    def setup(self, stage: str | None = None) -> None:
        if self.index is None:
            self._read_index()
        if stage in (None, "fit") and self.train_dataset is None:
            self.train_dataset = self._dataset("train", train=True)
            self.train_eval_dataset = self._dataset("train", train=False)
        if stage in (None, "fit", "validate") and self.val_dataset is None and "val" in self.sources:
            self.val_dataset = self._dataset("val", train=False)
        if stage in (None, "test") and self.test_dataset is None and "test" in self.sources:
            self.test_dataset = self._dataset("test", train=False)
