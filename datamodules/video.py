"""Video DataModules, decoded with PyAV (``pip install jepa-lightning[video]``).

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

Sources (:func:`read_video_index`), one per split:

- a folder ``root/<class>/<video files>``: sorted class names give the label index (key ``"label"``);
  extensions :data:`VIDEO_EXTENSIONS`, hidden files ignored;
- a list file in V-JEPA's format (any extension but ``.csv``, typically ``.txt``): one
  ``<path> <integer label>`` per line, space-delimited, no header, blank lines ignored;
- a ``.csv`` with a header: a ``path`` column plus one or more integer label columns.

Relative paths in list and CSV files are resolved against the file's folder.

Clips (:class:`VideoClipDataset`): ``frames_per_clip`` frames ``frame_step`` apart, so a clip spans
``(frames_per_clip - 1) * frame_step + 1`` frames. Training: ``num_clips`` clips whose starts are drawn
from the torch RNG (seeded per sample by :class:`~datamodules.common.SeededSamples`, so a training clip is
a function of the sample's seed), clip i inside the i-th of ``num_clips`` equal parts of the valid start
range. Evaluation: ``eval_clips`` evenly spaced clips (one clip: centred) times ``eval_views`` spatial
crops. The decoder seeks to the keyframe before each clip and stops after the clip's last frame.

:class:`MovingDigitsDataModule` is the embedded default: scikit-learn's digits moving in 8 ways, written
once as real h264 mp4 files into a cache folder and read back through the same PyAV path.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from torchvision import tv_tensors
from torchvision.transforms import v2

from .common import JEPADataModule, SkipUnreadable, embedded_root, generate_once, list_class_folders

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v")
SHORT_VIDEO_POLICIES = ("loop", "pad", "skip")
_SOURCE_FORMS = (
    "a folder of class sub-folders (root/<class>/<video files>, extensions "
    + ", ".join(VIDEO_EXTENSIONS)
    + "), a list file in V-JEPA's format ('<path> <integer label>' per line, no header; any extension"
    " but .csv), or a .csv file with a header: a 'path' column plus integer label columns"
)
_SEEK_GAP = 32  # wanted frames further apart than this are reached by a new seek rather than by decoding on


def _av():
    try:
        import av
    except ImportError as err:  # pragma: no cover - the [video] extra is missing
        raise ImportError("video datamodules need PyAV: pip install 'jepa-lightning[video]' (or pip install av)") from err
    return av


# ======================================================================================= sources
def _scan_folder(folder: str, classes: Sequence[str], extensions: Sequence[str]) -> list[tuple[str, dict[str, int]]]:
    exts = tuple(e.lower() for e in extensions)
    samples: list[tuple[str, dict[str, int]]] = []
    empty = []
    for label, name in enumerate(classes):
        found = []
        for dirpath, dirnames, filenames in os.walk(os.path.join(folder, name), followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            found += [os.path.join(dirpath, f) for f in sorted(filenames)
                      if f.lower().endswith(exts) and not f.startswith(".")]
        if not found:
            empty.append(name)
        samples += [(path, {"label": label}) for path in found]
    if not samples:
        raise FileNotFoundError(
            f"no videos found under '{folder}' (class folders {list(classes)}); accepted extensions: {', '.join(exts)}"
        )
    if empty:
        rank_zero_warn(f"class folder(s) with no videos under '{folder}': {empty} (accepted extensions: {exts})")
    return samples


def _resolve(path: str, base: str) -> str:
    path = os.path.expanduser(path)
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))


def _read_list_file(source: str) -> list[tuple[str, dict[str, int]]]:
    base = os.path.dirname(os.path.abspath(source))
    samples = []
    with open(source, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            text = line.strip()
            if not text:
                continue
            parts = text.rsplit(maxsplit=1)  # the path may contain spaces; the label is the last field
            label = None
            if len(parts) == 2:
                try:
                    label = int(parts[1])
                except ValueError:
                    pass
            if label is None:
                raise ValueError(
                    f"{source}:{lineno}: expected '<path> <integer label>' (space-delimited, V-JEPA's list format),"
                    f" got {text!r}"
                )
            samples.append((_resolve(parts[0], base), {"label": label}))
    return samples


def _read_csv(source: str, label: str) -> list[tuple[str, dict[str, int]]]:
    base = os.path.dirname(os.path.abspath(source))
    samples = []
    with open(source, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        columns = [c.strip() for c in header] if header else []
        if "path" not in columns:
            raise ValueError(f"{source}: the header must have a 'path' column, got columns {columns}")
        label_columns = [c for c in columns if c != "path"]
        if not label_columns:
            raise ValueError(f"{source}: expected one or more integer label columns besides 'path', got {columns}")
        if label not in label_columns:
            raise ValueError(f"{source}: no label column '{label}' (label={label!r}); its columns are {columns}")
        if label != "label" and "label" in label_columns:
            raise ValueError(
                f"{source}: has a 'label' column, which would clash with the batch key 'label' that label={label!r}"
                f" fills; rename the column or pass label='label'"
            )
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            line = reader.line_num
            if len(row) != len(columns):
                raise ValueError(f"{source}:{line}: expected {len(columns)} fields ({','.join(columns)}), got {row}")
            values = dict(zip(columns, (cell.strip() for cell in row)))
            if not values["path"]:
                raise ValueError(f"{source}:{line}: empty 'path'")
            labels = {}
            for col in label_columns:
                try:
                    labels[col] = int(values[col])
                except ValueError:
                    raise ValueError(
                        f"{source}:{line}: column '{col}' must be an integer label, got {values[col]!r}"
                    ) from None
            if label != "label":
                labels["label"] = labels[label]
            samples.append((_resolve(values["path"], base), labels))
    return samples


def read_video_index(
    source: str,
    label: str = "label",
    classes: Sequence[str] | None = None,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
) -> list[tuple[str, dict[str, int]]]:
    """``(path, {label_name: int})`` for every video of ``source`` (a class folder tree, a V-JEPA list file or
    a CSV; see the module docstring). Every sample's dict has the key ``"label"`` (for a CSV: the column
    ``label``, besides every label column under its own name). ``classes``: for a folder, the class folders
    it must hold (those of the training folder). Files are not opened here."""
    source = os.fspath(source)
    if os.path.isdir(source):
        if label != "label":
            raise ValueError(
                f"label={label!r} names a CSV column, but '{source}' is a class folder tree whose only label is 'label'"
            )
        found = list_class_folders(source, "video", "video.mp4")
        if classes is not None and list(classes) != found:
            raise ValueError(
                f"class folders of '{source}' differ from the training classes: missing"
                f" {sorted(set(classes) - set(found))}, not in train {sorted(set(found) - set(classes))}"
            )
        samples = _scan_folder(source, found, extensions)
    elif os.path.isfile(source):
        if source.lower().endswith(".csv"):
            samples = _read_csv(source, label)
        else:
            if label != "label":
                raise ValueError(
                    f"label={label!r} names a CSV column, but '{source}' is a list file ('<path> <label>' per line)"
                    f" whose only label is 'label'"
                )
            samples = _read_list_file(source)
        if not samples:
            raise ValueError(f"{source}: no samples (the file has no non-blank line)")
    else:
        raise FileNotFoundError(f"video source '{source}' does not exist; expected {_SOURCE_FORMS}")
    return samples


# ================================================================================ decoding (PyAV)
class ShortVideoError(ValueError):
    """A video has fewer frames than a clip spans and ``short_videos="skip"``: the sample is skipped."""


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


# ==================================================================================== transforms
class ScaleNormalize:
    """uint8 ``[..., C, H, W]`` -> float32 ``(x / 255 - mean) / std``: ``v2.ToDtype(float32, scale=True)`` then
    ``v2.Normalize(mean, std)`` in one multiply-add, run along the channels-last memory layout decoded frames
    keep through the resize (per-channel float ops on channels-last tensors are slow in ``[C, H, W]`` order).
    Equal to the two v2 ops up to float rounding (~1e-6)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.scale = torch.tensor([1.0 / (255.0 * s) for s in std])
        self.shift = torch.tensor([-m / s for m, s in zip(mean, std)])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = x.movedim(-3, -1).to(torch.float32)  # [..., H, W, C]: contiguous for channels-last frames
        return torch.addcmul(self.shift, y, self.scale, out=y).movedim(-1, -3)


class VideoTrainTransform:
    """Training view of one clip: RandomResizedCrop (the same crop for every frame), optional horizontal flip,
    scale to [0, 1], normalize. ``uint8 [T, C, H, W]`` -> ``float32 [1, C, T, crop_size, crop_size]``."""

    def __init__(self, crop_size: int, crop_scale: tuple[float, float], crop_ratio: tuple[float, float],
                 hflip: bool, mean: Sequence[float], std: Sequence[float]) -> None:
        ops: list[Any] = [v2.RandomResizedCrop(crop_size, scale=crop_scale, ratio=crop_ratio, antialias=True)]
        if hflip:
            ops.append(v2.RandomHorizontalFlip())
        self.geometry = v2.Compose(ops)
        self.norm = ScaleNormalize(mean, std)

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        x = self.geometry(tv_tensors.Video(clip)).as_subclass(torch.Tensor)
        return self.norm(x).permute(1, 0, 2, 3).unsqueeze(0)


class VideoEvalTransform:
    """Evaluation views of one clip: resize the short side to ``crop_size``, take ``views`` square crops evenly
    spaced along the long side (one view: the centre crop), scale, normalize.
    ``uint8 [T, C, H, W]`` -> ``float32 [views, C, T, crop_size, crop_size]``."""

    def __init__(self, crop_size: int, views: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.crop_size, self.views = crop_size, views
        self.resize = v2.Resize(crop_size, antialias=True)
        self.norm = ScaleNormalize(mean, std)

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        x = self.resize(tv_tensors.Video(clip)).as_subclass(torch.Tensor)
        c, (h, w) = self.crop_size, x.shape[-2:]
        slack = max(h, w) - c
        if self.views == 1:
            offsets = [slack // 2]
        else:
            offsets = [round(i * slack / (self.views - 1)) for i in range(self.views)]
        if w >= h:
            top = (h - c) // 2
            crops = [self.norm(x[..., top:top + c, o:o + c]) for o in offsets]
        else:
            left = (w - c) // 2
            crops = [self.norm(x[..., o:o + c, left:left + c]) for o in offsets]
        return torch.stack(crops).permute(0, 2, 1, 3, 4)


# ======================================================================================= dataset
class VideoClipDataset(SkipUnreadable):
    """``(path, labels)`` samples -> ``{"video": ..., **labels}`` (see the module docstring for shapes).

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


# =================================================================================== datamodule
def _check_pair(name: str, value: Sequence[float], upper: float | None) -> tuple[float, float]:
    if len(value) != 2:
        raise ValueError(f"{name} must be a pair (min, max), got {tuple(value)}")
    lo, hi = (float(v) for v in value)
    if not 0.0 < lo <= hi or (upper is not None and hi > upper):
        bound = f" <= {upper}" if upper is not None else ""
        raise ValueError(f"{name} must satisfy 0 < min <= max{bound}, got {tuple(value)}")
    return lo, hi


class VideoDataModule(JEPADataModule):
    """Videos from a class folder tree, a V-JEPA list file or a CSV per split (see the module docstring for
    the sources and the batch keys and shapes).

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


# ================================================================================ moving digits
MOTIONS = ("right", "left", "down", "up", "clockwise", "counterclockwise", "grow", "shrink")
_MOVING_DIGITS_VERSION = 1
_SCALE_RANGE = (0.6, 1.0)  # digit size relative to digit_size
_MAX_ANGLE = math.pi / 4  # radians, either way from upright (6 and 9 stay apart)
_TRAVEL = (0.5, 1.0)  # how much of its range the moving parameter covers over the video


def _parameter_ranges(canvas: int, digit_size: int) -> np.ndarray:
    """[4, 2] (lo, hi) of centre x, centre y (pixels), angle (radians), scale. The centre range keeps the
    digit's box inside the canvas at any angle (half-diagonal) and scale."""
    half = _SCALE_RANGE[1] * digit_size / 2 * math.sqrt(2)
    return np.array([[half, canvas - half], [half, canvas - half], [-_MAX_ANGLE, _MAX_ANGLE], list(_SCALE_RANGE)])


def moving_digit_trajectories(motions: np.ndarray, frames: int, canvas: int, digit_size: int,
                              rng: np.random.Generator) -> np.ndarray:
    """Per-frame ``(centre x, centre y, angle, scale)`` ``[N, frames, 4]`` of N videos with the given motion
    classes (indices into :data:`MOTIONS`).

    Motion m moves parameter ``m // 2`` (x, y, angle, scale) monotonically, up for even m (right, down,
    clockwise on screen, grow) and down for odd m, at constant speed, covering a random 50-100% of the
    parameter's range from a uniformly drawn start that keeps it in range. Every other parameter is
    constant at the value a moving one would have at a random frame, so at a random frame every parameter
    has the same distribution whatever the motion class: a single frame tells nothing about the motion.
    """
    motions = np.asarray(motions)
    n = len(motions)
    ranges = _parameter_ranges(canvas, digit_size)
    lo, width = ranges[:, 0], ranges[:, 1] - ranges[:, 0]
    travel = rng.uniform(*_TRAVEL, size=(n, 4)) * width
    start = lo + rng.uniform(size=(n, 4)) * (width - travel)
    t = np.arange(frames) / max(frames - 1, 1)  # [F]
    frozen = rng.integers(frames, size=(n, 4)) / max(frames - 1, 1)  # the random frame a constant one sits at
    moving = np.arange(4)[None, :] == (motions // 2)[:, None]  # [N, 4]
    tt = np.where(moving[:, None, :], t[None, :, None], frozen[:, None, :])  # [N, F, 4]
    values = start[:, None, :] + travel[:, None, :] * tt
    mirror = np.where(moving, motions[:, None] % 2 == 1, rng.integers(2, size=(n, 4)) == 1)
    return np.where(mirror[:, None, :], 2 * lo + width - values, values)


def render_moving_digit(image: np.ndarray, trajectory: np.ndarray, canvas: int, digit_size: int) -> np.ndarray:
    """uint8 ``[F, canvas, canvas]``: the 8x8 digit ``image`` (values 0..16) upsampled bilinearly to
    ``digit_size * scale`` pixels, rotated and placed per frame by ``trajectory`` ``[F, 4]``, on black."""
    traj = torch.as_tensor(trajectory, dtype=torch.float32)
    frames = len(traj)
    cx, cy, angle, scale = (traj[:, k].view(-1, 1, 1) for k in range(4))
    pix = torch.arange(canvas, dtype=torch.float32) + 0.5
    dy, dx = pix.view(1, -1, 1) - cy, pix.view(1, 1, -1) - cx
    cos, sin, half = angle.cos(), angle.sin(), scale * (digit_size / 2)
    # output pixel -> digit coordinates in [-1, 1] (inverse rotation; angle > 0 turns clockwise on screen)
    grid = torch.stack([(cos * dx + sin * dy) / half, (cos * dy - sin * dx) / half], dim=-1)
    src = torch.as_tensor(image, dtype=torch.float32).view(1, 1, 8, 8).expand(frames, 1, 8, 8) * (255 / 16)
    out = F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()


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


def generate_moving_digits(folder: str, num_train: int, num_val: int, video_frames: int, canvas: int,
                           digit_size: int, fps: int, gen_seed: int) -> None:
    """Writes ``train/*.mp4``, ``val/*.mp4``, ``train.csv`` and ``val.csv`` (``path,digit,motion``) into the
    (new, empty) ``folder`` (:func:`~datamodules.common.generate_once` adds ``params.json``).

    Digit images come from a fixed stratified 80/20 split of scikit-learn's 1797 digits (the split of
    ``DigitsDataModule``): val videos show digit images no train video shows. Digit classes and motion
    classes are balanced (``i % 10`` and ``i % 8``, each shuffled by ``gen_seed``).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    pools = dict(zip(("train", "val"), train_test_split(
        np.arange(len(digits.target)), test_size=0.2, stratify=digits.target, random_state=0)))
    options = {"crf": "10", "preset": "veryfast", "threads": "1"}  # x264 threads cost more than they save at 32 px
    for s, (split, count) in enumerate((("train", num_train), ("val", num_val))):
        rng = np.random.default_rng([gen_seed, s])
        pool = pools[split]
        digit = rng.permutation(np.arange(count) % 10)
        motion = rng.permutation(np.arange(count) % 8)
        by_class = [pool[digits.target[pool] == d] for d in range(10)]
        images = [digits.images[rng.choice(by_class[d])] for d in digit]
        trajectories = moving_digit_trajectories(motion, video_frames, canvas, digit_size, rng)
        os.makedirs(os.path.join(folder, split))
        rows = []
        for i in range(count):
            rel = f"{split}/{i:05d}.mp4"
            video = render_moving_digit(images[i], trajectories[i], canvas, digit_size)
            write_mp4(os.path.join(folder, rel), video, fps, options)
            rows.append((rel, int(digit[i]), int(motion[i])))
        with open(os.path.join(folder, f"{split}.csv"), "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(("path", "digit", "motion"))
            writer.writerows(rows)


class MovingDigitsDataModule(VideoDataModule):
    """Moving digits: scikit-learn's bundled 8x8 digits moving on a black canvas, as real h264 mp4 videos.

    Nothing is downloaded: the videos are generated once (``prepare_data``, or lazily in ``setup``) into
    ``cache_dir/<hash of the generation parameters>/`` (``cache_dir`` defaults to
    ``$JEPA_LIGHTNING_CACHE/moving_digits``, else ``~/.cache/jepa_lightning/moving_digits``) and read back
    through :class:`VideoDataModule`'s PyAV path. Changed generation parameters give another folder;
    identical ones reuse it. Generation writes a temporary folder next to it and renames it into place, so
    concurrent processes never see half a dataset.

    Every video has two labels (batch keys ``digit`` and ``motion``; ``label`` picks the one also given as
    ``"label"``, and ``num_classes`` follows it: 10 for digit, 8 for motion):

    - ``digit``: which digit (0-9); val videos use digit images no train video uses;
    - ``motion``: one of :data:`MOTIONS` (translate right, left, down, up; rotate clockwise,
      counter-clockwise; grow; shrink), constant speed (see :func:`moving_digit_trajectories`). Initial
      positions, angles and scales are random, so a single frame carries no information about the motion,
      while a clip of a few frames shows it: a probe on ``motion`` tells whether an encoder captures time.

    Defaults for 32-pixel videos: digits of up to 18 pixels (the largest size that still leaves them ~7 pixels of
    travel; with 14 the digit covered so few 8-pixel patches that no pretrained encoder beat a random one),
    8-frame clips 2 frames apart (half of a 32-frame video), crops of 50-100% of the area. ``hflip`` is off and should stay off: a flip swaps the "right" and "left" motion
    labels (and digits are not flip-invariant either).
    """

    _index_at_init = False  # the CSVs exist only after prepare_data
    motions = MOTIONS

    def __init__(
        self,
        cache_dir: str | None = None,
        num_train: int = 1000,
        num_val: int = 300,
        video_frames: int = 32,
        canvas: int = 32,
        digit_size: int = 18,
        fps: int = 8,
        gen_seed: int = 0,
        label: Literal["digit", "motion"] = "digit",
        frames_per_clip: int = 8,
        frame_step: int = 2,
        num_clips: int = 1,
        eval_clips: int = 1,
        eval_views: int = 1,
        crop_size: int = 32,
        crop_scale: tuple[float, float] = (0.5, 1.0),
        crop_ratio: tuple[float, float] = (0.75, 1.35),
        hflip: bool = False,
        mean: tuple[float, float, float] = (0.5, 0.5, 0.5),
        std: tuple[float, float, float] = (0.5, 0.5, 0.5),
        short_videos: Literal["loop", "pad", "skip"] = "loop",
        seek: bool = True,
        decode_threads: int = 1,
        batch_size: int = 64,
        num_workers: int = 2,
        **loader: Any,
    ) -> None:
        """``loader``: the other DataLoader settings of :class:`JEPADataModule` (pin_memory, seed, ...).
        ``decode_threads=1``: at 32 pixels FFmpeg's decoder threads cost more than they save."""
        for name, value, least in (("num_train", num_train, 1), ("num_val", num_val, 1),
                                   ("video_frames", video_frames, 2), ("fps", fps, 1), ("digit_size", digit_size, 2)):
            if not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
        if not isinstance(canvas, int) or canvas < 8 or canvas % 2:
            raise ValueError(f"canvas must be an even number of pixels >= 8 (h264 yuv420p), got {canvas!r}")
        lo, hi = _parameter_ranges(canvas, digit_size)[0]
        if hi - lo < 2:
            raise ValueError(
                f"digit_size={digit_size} leaves the digit no room to move on a {canvas}-pixel canvas (its box,"
                f" up to {_SCALE_RANGE[1]}x and turned up to 45 degrees, needs {2 * lo:.1f} pixels; allow >= 2 more)"
            )
        if label not in ("digit", "motion"):
            raise ValueError(f"label must be 'digit' or 'motion', got {label!r}")
        if hflip:
            rank_zero_warn("MovingDigitsDataModule(hflip=True): a horizontal flip swaps the 'right' and 'left'"
                           " motion labels and mirrors the digits")
        self.generation = {"num_train": num_train, "num_val": num_val, "video_frames": video_frames,
                           "canvas": canvas, "digit_size": digit_size, "fps": fps, "gen_seed": gen_seed,
                           "version": _MOVING_DIGITS_VERSION}
        self.cache_dir, self.data_dir = embedded_root(cache_dir, "moving_digits", self.generation)
        super().__init__(
            train=os.path.join(self.data_dir, "train.csv"), val=os.path.join(self.data_dir, "val.csv"),
            test=os.path.join(self.data_dir, "val.csv"), label=label, frames_per_clip=frames_per_clip,
            frame_step=frame_step, num_clips=num_clips, eval_clips=eval_clips, eval_views=eval_views,
            crop_size=crop_size, crop_scale=crop_scale, crop_ratio=crop_ratio, hflip=hflip, mean=mean, std=std,
            short_videos=short_videos, seek=seek, decode_threads=decode_threads, batch_size=batch_size,
            num_workers=num_workers, **loader,
        )
        self.label_names = ["label", "digit", "motion"]
        self.num_classes = 10 if label == "digit" else len(MOTIONS)
        self.generation_seconds: float | None = None  # set when this object generated the videos

    def _count_classes(self, index: dict[str, list[tuple[str, dict[str, int]]]]) -> int:
        return 10 if self.label == "digit" else len(MOTIONS)

    @property
    def generated(self) -> bool:
        return os.path.isfile(os.path.join(self.data_dir, "params.json"))

    def prepare_data(self) -> None:
        """Generates the videos unless ``data_dir`` already holds them (atomic; safe with concurrent processes)."""
        if self.generated:
            return
        params = {k: v for k, v in self.generation.items() if k != "version"}

        def generate(folder: str) -> dict[str, int]:
            generate_moving_digits(folder, **params)
            return {"train": params["num_train"], "val": params["num_val"]}

        done = generate_once(self.data_dir, self.generation, generate)
        if done is not None:  # None: another process finished first, use theirs
            self.generation_seconds = done[1]
            rank_zero_info(f"MovingDigitsDataModule: wrote {self.generation['num_train']}+"
                           f"{self.generation['num_val']} videos to {self.data_dir}"
                           f" in {self.generation_seconds:.1f}s")

    def setup(self, stage: str | None = None) -> None:
        if not self.generated:
            self.prepare_data()
        super().setup(stage)
