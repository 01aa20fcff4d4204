""":class:`MovingDigitsDataModule` is the embedded default: scikit-learn's digits moving in 8 ways, written
once as real h264 mp4 files into a cache folder and read back through the same PyAV path.
"""

from __future__ import annotations

import csv
import math
import os
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from ..digits import load_digits, stratified_split
from .codec import write_mp4
from .embedded import EmbeddedVideoDataModule

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


def generate_moving_digits(folder: str, num_train: int, num_val: int, video_frames: int, canvas: int,
                           digit_size: int, fps: int, gen_seed: int) -> None:
    """Writes ``train/*.mp4``, ``val/*.mp4``, ``train.csv`` and ``val.csv`` (``path,digit,motion``) into the
    (new, empty) ``folder`` (:func:`~datamodules.common.generate_once` adds ``params.json``).

    Digit images come from a fixed stratified 80/20 split of scikit-learn's 1797 digits (the split of
    ``DigitsDataModule``): val videos show digit images no train video shows. Digit classes and motion
    classes are balanced (``i % 10`` and ``i % 8``, each shuffled by ``gen_seed``).
    """
    data, target = load_digits()
    pools = dict(zip(("train", "val"), stratified_split(target, 0.2, 0)))
    options = {"crf": "10", "preset": "veryfast", "threads": "1"}  # x264 threads cost more than they save at 32 px
    for s, (split, count) in enumerate((("train", num_train), ("val", num_val))):
        rng = np.random.default_rng([gen_seed, s])
        pool = pools[split]
        digit = rng.permutation(np.arange(count) % 10)
        motion = rng.permutation(np.arange(count) % 8)
        by_class = [pool[target[pool] == d] for d in range(10)]
        images = [data[rng.choice(by_class[d])].reshape(8, 8) for d in digit]
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


class MovingDigitsDataModule(EmbeddedVideoDataModule):
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

    kind = "moving_digits"
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
        generation = {"num_train": num_train, "num_val": num_val, "video_frames": video_frames, "canvas": canvas,
                      "digit_size": digit_size, "fps": fps, "gen_seed": gen_seed, "version": _MOVING_DIGITS_VERSION}
        super().__init__(
            cache_dir, generation, label=label, frames_per_clip=frames_per_clip,
            frame_step=frame_step, num_clips=num_clips, eval_clips=eval_clips, eval_views=eval_views,
            crop_size=crop_size, crop_scale=crop_scale, crop_ratio=crop_ratio, hflip=hflip, mean=mean, std=std,
            short_videos=short_videos, seek=seek, decode_threads=decode_threads, batch_size=batch_size,
            num_workers=num_workers, **loader,
        )
        self.label_names = ["label", "digit", "motion"]
        self.num_classes = 10 if label == "digit" else len(MOTIONS)

    def _count_classes(self, index: dict[str, list[tuple[str, dict[str, int]]]]) -> int:
        return 10 if self.label == "digit" else len(MOTIONS)

    def _generate(self, folder: str) -> dict[str, int]:
        params = {k: v for k, v in self.generation.items() if k != "version"}
        generate_moving_digits(folder, **params)
        return {"train": params["num_train"], "val": params["num_val"]}
