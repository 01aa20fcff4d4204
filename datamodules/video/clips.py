"""Clips (:class:`VideoClipDataset`): ``frames_per_clip`` frames ``frame_step`` apart, so a clip spans
``(frames_per_clip - 1) * frame_step + 1`` frames. Training: ``num_clips`` clips whose starts are drawn
from the torch RNG (seeded per sample by :class:`~datamodules.common.SeededSamples`, so a training clip is
a function of the sample's seed), clip i inside the i-th of ``num_clips`` equal parts of the valid start
range. Evaluation: ``eval_clips`` evenly spaced clips (one clip: centred) times ``eval_views`` spatial
crops. The decoder seeks to the keyframe before each clip and stops after the clip's last frame.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..common import SkipUnreadable
from .codec import (
    _av,
    _count_by_decoding,
    _decode,
    _ShortRead,
    _stack,
    _timing,
    _video_stream,
    video_frame_count,
)


class ShortVideoError(ValueError):
    """A video has fewer frames than a clip spans and ``short_videos="skip"``: the sample is skipped."""


def clip_indices(
    num_frames: int,
    frames_per_clip: int,
    frame_step: int,
    num_clips: int = 1,
    draws: torch.Tensor | None = None,
    short_videos: str = "loop",
) -> torch.Tensor:
    """Frame indices ``[num_clips, frames_per_clip]`` of the clips of a ``num_frames`` video.

    ``draws``: ``num_clips`` uniform numbers in [0, 1) (training): clip i starts at a random frame of the
    i-th of ``num_clips`` equal parts of the valid start range. ``None`` (evaluation): evenly spaced
    starts, first and last clips at the ends; a single clip is centred. Videos shorter than a clip's span:
    ``"loop"`` takes the indices modulo the length, ``"pad"`` repeats the last frame, ``"skip"`` raises
    :class:`ShortVideoError`.
    """
    if num_frames < 1:
        raise ValueError("the video has no frames")
    span = (frames_per_clip - 1) * frame_step + 1
    offsets = torch.arange(frames_per_clip) * frame_step
    if num_frames < span:
        if short_videos == "skip":
            raise ShortVideoError(
                f"the video has {num_frames} frames, a clip needs {span}"
                f" (frames_per_clip={frames_per_clip}, frame_step={frame_step}; short_videos='skip')"
            )
        idx = offsets % num_frames if short_videos == "loop" else offsets.clamp(max=num_frames - 1)
        return idx.expand(num_clips, -1).clone()
    last = num_frames - span  # the latest start
    if draws is None:
        if num_clips == 1:
            starts = [last // 2]
        else:
            starts = [round(i * last / (num_clips - 1)) for i in range(num_clips)]
    else:
        starts = []
        for i in range(num_clips):
            lo = i * (last + 1) // num_clips
            hi = max((i + 1) * (last + 1) // num_clips - 1, lo)
            starts.append(lo + min(int(float(draws[i]) * (hi - lo + 1)), hi - lo))
    return torch.tensor(starts).view(-1, 1) + offsets


# ======================================================================================= dataset
class VideoClipDataset(SkipUnreadable):
    """``(path, labels)`` samples -> ``{"video": ..., **labels}`` (see :mod:`datamodules.video.datamodule` for shapes).

    ``train=True``: ``clips`` random clips (starts drawn from the torch RNG) through ``transform``;
    ``train=False``: ``clips`` evenly spaced clips. ``transform`` maps a uint8 clip ``[T, C, H, W]`` to
    ``[V, C, T, h, w]`` (:class:`VideoTrainTransform`, :class:`VideoEvalTransform`). Frame counts
    (:func:`video_frame_count`) are cached per path in this object, so per worker process. A read that runs
    out of frames before the count says (a file cut short behind its index) recounts by decoding and draws
    the clip again from the same random numbers. Unreadable files, files with no video stream, files that
    decode no frame and (with ``short_videos="skip"``) short videos are skipped.
    """

    def __init__(
        self,
        samples: Sequence[tuple[str, dict[str, int]]],
        transform: Callable[[torch.Tensor], torch.Tensor],
        frames_per_clip: int,
        frame_step: int,
        clips: int = 1,
        train: bool = False,
        short_videos: str = "loop",
        seek: bool = True,
        decode_threads: int = 0,
    ) -> None:
        av = _av()
        self.unreadable_errors = (*SkipUnreadable.unreadable_errors, av.error.FFmpegError)
        self.samples = list(samples)
        self.transform = transform
        self.frames_per_clip, self.frame_step, self.clips = frames_per_clip, frame_step, clips
        self.train, self.short_videos, self.seek, self.decode_threads = train, short_videos, seek, decode_threads
        self.frame_counts: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def sample_path(self, index: int) -> str:
        return self.samples[index][0]

    def num_frames(self, path: str) -> int:
        if path not in self.frame_counts:
            self.frame_counts[path] = video_frame_count(path, self.decode_threads)
        return self.frame_counts[path]

    def read(self, index: int) -> torch.Tensor:
        """uint8 ``[clips, C, T, H, W]``."""
        av = _av()
        path = self.samples[index][0]
        # every random number of the clip positions is drawn up front, so that a corrected frame count
        # (second attempt below) does not shift the RNG stream the crops draw from
        draws = torch.rand(self.clips) if self.train else None
        for attempt in range(2):
            idx = clip_indices(self.num_frames(path), self.frames_per_clip, self.frame_step, self.clips,
                               draws, self.short_videos)
            flat = idx.flatten().tolist()
            with av.open(path) as container:
                stream = _video_stream(container, path, self.decode_threads)
                try:
                    frames = _decode(container, stream, sorted(set(flat)), _timing(stream) if self.seek else None)
                except _ShortRead as err:
                    if attempt:
                        raise ValueError(f"{err} (frame count by decoding: {self.frame_counts[path]})") from None
                    self.frame_counts[path] = _count_by_decoding(path, self.decode_threads)
                    continue
            return _stack(frames, flat).unflatten(1, idx.shape).permute(1, 0, 2, 3, 4)
        raise AssertionError("unreachable")

    def prepare(self, raw: torch.Tensor, index: int) -> dict[str, Any]:
        views = [self.transform(clip.permute(1, 0, 2, 3)) for clip in raw]  # each [V, C, T, h, w]
        video = views[0] if len(views) == 1 else torch.cat(views)
        return {"video": video[0] if len(video) == 1 else video, **self.samples[index][1]}
