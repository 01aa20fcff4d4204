"""Video files through PyAV (``pip install jepa-lightning[video]``): frame counts, frame decoding (seeking to
the keyframe before the wanted frames, stopping after the last) and h264 mp4 writing."""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import numpy as np
import torch

_SEEK_GAP = 32  # wanted frames further apart than this are reached by a new seek rather than by decoding on


def _av():
    try:
        import av
    except ImportError as err:  # pragma: no cover - the [video] extra is missing
        raise ImportError("video datamodules need PyAV: pip install 'jepa-lightning[video]' (or pip install av)") from err
    return av


# ================================================================================ decoding (PyAV)
class _ShortRead(Exception):
    """Decoding reached the end of the stream before the last wanted frame (the frame count was wrong)."""


class _Timing:
    """Frame index <-> presentation timestamp of a constant-frame-rate stream."""

    def __init__(self, start: int, frames_per_tick: Fraction) -> None:
        self.start, self.rate = start, float(frames_per_tick)

    def index(self, pts: int) -> int:
        return round((pts - self.start) * self.rate)

    def pts(self, index: int) -> int:
        return self.start + math.floor(index / self.rate)


def _timing(stream: Any) -> _Timing | None:
    fps = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not fps or not stream.time_base:
        return None
    return _Timing(stream.start_time or 0, Fraction(stream.time_base) * Fraction(fps))


def _video_stream(container: Any, path: str, decode_threads: int) -> Any:
    if not container.streams.video:
        raise ValueError(f"no video stream in {path}")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    if decode_threads:
        stream.codec_context.thread_count = decode_threads
    return stream


def _count_by_decoding(path: str, decode_threads: int = 0) -> int:
    av = _av()
    with av.open(path) as container:
        stream = _video_stream(container, path, decode_threads)
        return sum(1 for _ in container.decode(stream))


def video_frame_count(path: str, decode_threads: int = 0) -> int:
    """Number of frames of the first video stream of ``path``.

    ``stream.frames`` when the container knows it (mp4/mov index). Otherwise (webm/mkv usually report 0) the
    estimate ``duration * average_rate`` is checked against the timestamps of the packets at the end of the
    stream (demuxed, not decoded). Without any of these, frames are counted by decoding. A read that runs out
    of frames early corrects the count by decoding too (see :class:`VideoClipDataset`).
    """
    av = _av()
    with av.open(path) as container:
        stream = _video_stream(container, path, decode_threads)
        if stream.frames > 0:
            return int(stream.frames)
        timing = _timing(stream)
        estimate = None
        if timing is not None:
            if stream.duration:
                estimate = round(stream.duration * float(stream.time_base) * timing.rate)
            elif container.duration:
                estimate = round(container.duration / av.time_base * timing.rate)
        if estimate is not None and estimate > 0:
            container.seek(timing.pts(estimate - 1), stream=stream, backward=True, any_frame=False)
            last = max((p.pts for p in container.demux(stream) if p.pts is not None and p.size), default=None)
            if last is not None:
                return max(timing.index(last) + 1, 0)
    return _count_by_decoding(path, decode_threads)


def _decode(container: Any, stream: Any, wanted: Sequence[int], timing: _Timing | None) -> dict[int, np.ndarray]:
    """RGB frames ``{index: [H, W, 3] uint8}`` for the sorted, distinct ``wanted`` indices.

    With ``timing`` (seek mode) each run of nearby wanted frames starts with a seek to the keyframe before its
    first frame, and a decoded frame's index comes from its timestamp; without, the stream is decoded from the
    start and frames are counted. Decoding stops after the last wanted frame. A wanted index the stream skips
    (variable frame rate) gets the frame before it.
    """
    out: dict[int, np.ndarray] = {}
    if timing is None:
        runs = [list(wanted)]
    else:
        runs, run = [], [wanted[0]]
        for i in wanted[1:]:
            if i - run[-1] > _SEEK_GAP:
                runs.append(run)
                run = []
            run.append(i)
        runs.append(run)
    for run in runs:
        target = run[0]
        while True:  # once more from the first keyframe if a seek lands after the run's first frame
            if timing is not None:
                container.seek(timing.pts(target), stream=stream, backward=True, any_frame=False)
            late = _decode_run(container, stream, run, timing, target, out)
            if not late:
                break
            target = 0
    return out


def _decode_run(container: Any, stream: Any, run: list[int], timing: _Timing | None, target: int,
                out: dict[int, np.ndarray]) -> bool:
    j, prev_idx, prev, prev_rgb = 0, None, None, None
    for n, frame in enumerate(container.decode(stream)):
        if timing is None:
            idx = n
        elif frame.pts is not None:
            idx = timing.index(frame.pts)
        elif prev_idx is None and target > 0:
            return True  # no timestamp after a seek: where we are is unknown, decode from the start
        else:
            idx = prev_idx + 1 if prev_idx is not None else 0
        if prev_idx is None and idx > run[0] and target > 0:
            return True  # the seek landed after the first wanted frame
        if prev_idx is not None and idx <= prev_idx:
            continue  # repeated or out-of-order timestamp
        while j < len(run) and run[j] < idx:  # skipped by the stream: the previous frame stands in
            if prev is None:
                out[run[j]] = _rgb(frame)
            else:
                if prev_rgb is None:
                    prev_rgb = _rgb(prev)
                out[run[j]] = prev_rgb
            j += 1
        if j < len(run) and run[j] == idx:
            out[idx] = _rgb(frame)
            j += 1
        prev_idx, prev, prev_rgb = idx, frame, None
        if j == len(run):
            return False
    raise _ShortRead(f"the stream ended after frame {prev_idx}, before frame {run[-1]}")


_REFORMATTER: Any = None  # reused: its cached SwsContext makes RGB conversion much faster for small frames


def _rgb(frame: Any) -> np.ndarray:
    """``frame.to_ndarray(format="rgb24")`` (same values) through a reused single-threaded reformatter.

    Single-threaded: an SwsContext with a slice-thread pool, inherited by a forked DataLoader worker, hangs the
    worker the next time it is reconfigured or freed (its threads do not exist in the child); one thread per
    worker process is also what a DataLoader wants.
    """
    global _REFORMATTER
    if _REFORMATTER is None:
        from av.video.reformatter import VideoReformatter

        _REFORMATTER = VideoReformatter()
    return _REFORMATTER.reformat(frame, format="rgb24", threads=1).to_ndarray()


def _stack(frames: dict[int, np.ndarray], indices: Sequence[int]) -> torch.Tensor:
    """``[C, T, H, W]`` uint8 from ``[H, W, 3]`` frames."""
    return torch.from_numpy(np.stack([frames[i] for i in indices])).permute(3, 0, 1, 2)


def read_frames(path: str, indices: Sequence[int], seek: bool = True, decode_threads: int = 0) -> torch.Tensor:
    """Frames ``indices`` (any order, repeats allowed) of ``path`` as uint8 RGB ``[C, T, H, W]``.

    ``seek=True`` seeks to the keyframe before the first wanted frame (and before each later group of
    wanted frames more than a few frames away); ``seek=False`` decodes from the start. Both give the same
    frames. Raises PyAV/OS errors for unreadable files and ``ValueError`` when the stream has fewer frames.
    """
    av = _av()
    wanted = sorted(set(int(i) for i in indices))
    if not wanted or wanted[0] < 0:
        raise ValueError(f"indices must be non-empty and >= 0, got {list(indices)[:8]}")
    with av.open(path) as container:
        stream = _video_stream(container, path, decode_threads)
        try:
            frames = _decode(container, stream, wanted, _timing(stream) if seek else None)
        except _ShortRead as err:
            raise ValueError(f"{path}: {err}") from None
    return _stack(frames, indices)


# ======================================================================================= writing
def write_mp4(path: str, frames: np.ndarray, fps: int, options: dict[str, str] | None = None) -> None:
    """Writes uint8 frames ``[T, H, W]`` (gray, replicated to RGB) or ``[T, H, W, 3]`` as h264 (libx264,
    yuv420p) mp4."""
    av = _av()
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    with av.open(path, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options=options or {})
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
