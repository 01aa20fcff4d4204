"""The reader of UI screen recordings in the "Intent in the Wild" (IIW) / "Intent in the Tame" (IIT) layout.

Layout (one folder per split, the videos next to the split's ``annotations.csv``)::

    root/train/annotations.csv        video,intent,category[,...]   (column names are options)
    root/train/<video files>          .mp4 / .mov / ...; relative paths resolve against the split folder
    root/few_shot/annotations.csv
    root/zero_shot/annotations.csv

Splits as in the paper: ``train``; ``few_shot``: recordings of intent categories that ``train`` holds only a few
examples of; ``zero_shot``: recordings of held-out categories that ``train`` does not hold at all.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from ..common import SkipUnreadable
from ..video.codec import _av, read_frames, video_frame_count
from ..video.transforms import ScaleNormalize

SPLITS = ("train", "few_shot", "zero_shot")


def read_ui_annotations(csv_path: str, video_column: str = "video", intent_column: str = "intent",
                        category_column: str = "category") -> list[tuple[str, str, str]]:
    """``(video path, intent, category name)`` per row of a split's ``annotations.csv``; relative video paths
    resolve against the csv's folder. A missing column is an error naming the csv, the option, the column and
    the columns present."""
    if not os.path.isfile(csv_path):
        raise FileNotFoundError(f"annotations file '{csv_path}' does not exist; expected <root>/<split>/"
                                f"annotations.csv with columns for the video file, the intent and the category")
    base = os.path.dirname(os.path.abspath(csv_path))
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = [c.strip() for c in reader.fieldnames or []]
        reader.fieldnames = columns
        for option, col in (("video_column", video_column), ("intent_column", intent_column),
                            ("category_column", category_column)):
            if col not in columns:
                raise ValueError(f"{csv_path}: no column '{col}' ({option}={col!r}); its columns are {columns}")
        out = []
        for row in reader:
            video = (row.get(video_column) or "").strip()
            if not video:
                if not any((v or "").strip() for v in row.values()):
                    continue
                raise ValueError(f"{csv_path}:{reader.line_num}: empty '{video_column}'")
            path = os.path.expanduser(video)
            out.append((path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path)),
                        (row.get(intent_column) or "").strip(), (row.get(category_column) or "").strip()))
    return out


def uniform_indices(num_video_frames: int, num_frames: int) -> list[int]:
    """``num_frames`` indices spread uniformly over the whole video, first and last frame included."""
    if num_frames == 1:
        return [(num_video_frames - 1) // 2]
    return [round(i * (num_video_frames - 1) / (num_frames - 1)) for i in range(num_frames)]


class UIRecordingDataset(SkipUnreadable):
    """``(path, intent, category index, frame count or None)`` samples -> ``{"video", "intent", "category",
    "path"}``: ``num_frames`` frames uniformly over the whole video, resized to ``image_size`` (no crop/flip),
    normalized (or uint8). Unreadable files are skipped (:class:`~datamodules.common.SkipUnreadable`)."""

    def __init__(self, samples: Sequence[tuple[str, str, int, int | None]], num_frames: int,
                 image_size: tuple[int, int], mean: Sequence[float], std: Sequence[float], normalize: bool = True,
                 decode_threads: int = 1) -> None:
        self.unreadable_errors = (*SkipUnreadable.unreadable_errors, _av().error.FFmpegError)
        self.samples = list(samples)
        self.num_frames, self.decode_threads, self.normalize = num_frames, decode_threads, normalize
        self.resize = v2.Resize(list(image_size), antialias=True)
        self.norm = ScaleNormalize(mean, std)

    def __len__(self) -> int:
        return len(self.samples)

    def sample_path(self, index: int) -> str:
        return self.samples[index][0]

    def read(self, index: int) -> torch.Tensor:
        path, _, _, count = self.samples[index]
        if count is None:
            count = video_frame_count(path, self.decode_threads)
        if count < self.num_frames:
            raise ValueError(f"{path}: {count} frames, fewer than num_frames={self.num_frames}")
        return read_frames(path, uniform_indices(count, self.num_frames), seek=True,
                           decode_threads=self.decode_threads)  # [C, T, H, W]

    def prepare(self, raw: torch.Tensor, index: int) -> dict[str, Any]:
        path, intent, category, _ = self.samples[index]
        x = self.resize(tv_tensors.Video(raw.permute(1, 0, 2, 3))).as_subclass(torch.Tensor)  # [T, C, h, w]
        x = self.norm(x) if self.normalize else x.contiguous()
        return {"video": x.permute(1, 0, 2, 3), "intent": intent, "category": category, "path": path}
