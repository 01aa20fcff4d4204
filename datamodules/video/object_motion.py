"""Embedded moving-object videos: the textured shapes of :mod:`datamodules.object_render` moving over panning
crops of real photographs (scikit-learn's two sample photographs; no download).

A video (``frames`` x ``image_size`` x ``image_size``) is a scene of :class:`~datamodules.object_render.SceneSpec`
set in motion:

- the *main* object (the largest; its shape is the appearance label) moves in a straight line at constant speed in
  one of 4 directions (right, left, down, up) at one of 2 speeds (slow, fast): the motion label, one of
  :data:`OBJECT_MOTIONS`. Its path covers ``travel[speed]`` (x 0.9-1.1) of the centre range ``main_range`` over
  the video, from a start drawn so that at a random frame both centre coordinates have the same distribution
  whatever the direction (see :func:`main_object_paths`): one frame does not say where the object goes;
- small distractors of the other classes drift in random directions at ``distractor_speed`` pixels per frame
  (they may leave the canvas) and pass in front of or behind the main object (random drawing order; where a
  distractor would hide too much of it in some frame, the main object is drawn on top in the whole video);
- the background photograph crop pans in a random direction at up to ``pan_speed`` pixels per frame, so every
  pixel moves and only the main object's own motion tells the label.

Textures are drawn in each object's own coordinates and move with it. Deterministic from ``seed``; vectorized over
videos and frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..object_render import (
    MAIN_MARGIN,
    SceneSpec,
    _background_crops,
    _finish_background,
    _sample_crops,
    _uniform,
    composite,
    noise_backgrounds,
    object_layers,
    paint_objects,
    sample_objects,
    visible_owner,
)

DIRECTIONS = ("right", "left", "down", "up")
SPEEDS = ("slow", "fast")
OBJECT_MOTIONS = tuple(f"{d}-{s}" for s in SPEEDS for d in DIRECTIONS)  # label m: direction m % 4, speed m // 4


@dataclass(frozen=True)
class MotionSpec:
    """How the objects and the background move (see the module docstring); checked on construction.

    ``main_range``: the main object's centre range (fraction of the side, both axes); ``travel``: the fraction
    of that range its path covers over the video, slow and fast; ``distractor_speed``: range of the distractors'
    speeds and ``pan_speed`` the background's largest speed, in pixels per frame."""

    scene: SceneSpec = field(default_factory=lambda: SceneSpec(main_scale=(0.18, 0.22)))
    main_range: tuple[float, float] = (0.25, 0.75)
    travel: tuple[float, float] = (0.4, 0.8)
    distractor_speed: tuple[float, float] = (0.3, 1.5)
    pan_speed: float = 0.6

    def __post_init__(self) -> None:
        lo, hi = (float(v) for v in self.main_range)
        if not 0 <= lo < hi <= 1:
            raise ValueError(f"main_range must satisfy 0 <= lo < hi <= 1, got {tuple(self.main_range)}")
        slow, fast = (float(v) for v in self.travel)
        if not 0 < slow < fast / 1.1 * 0.9 or fast * 1.1 > 1:
            raise ValueError(f"travel (slow, fast) must satisfy 0 < slow, slow x 1.1 < fast x 0.9 and fast x 1.1 <= 1"
                             f" (the paths' jitter keeps the speeds apart), got {tuple(self.travel)}")
        a, b = (float(v) for v in self.distractor_speed)
        if not 0 <= a <= b:
            raise ValueError(f"distractor_speed must satisfy 0 <= min <= max, got {tuple(self.distractor_speed)}")
        if self.pan_speed < 0:
            raise ValueError(f"pan_speed must be >= 0, got {self.pan_speed!r}")


def main_object_paths(motion: torch.Tensor, frames: int, lo: float, hi: float, travel: tuple[float, float],
                      g: torch.Generator) -> torch.Tensor:
    """Centre ``(x, y)`` per frame [N, frames, 2] of main objects with motion labels ``motion`` [N] (indices into
    :data:`OBJECT_MOTIONS`), in the units of ``lo, hi`` (the range of both coordinates).

    The moving coordinate (x for right/left, y for down/up) goes from ``start`` to ``start + T`` (T = the speed's
    travel x (hi - lo) x U(0.9, 1.1)), ``start`` uniform in [lo, hi - T], mirrored in the range for left and up.
    The other coordinate stays where such a path would be at a random frame, randomly mirrored. So at a random
    frame each coordinate is ``lo + U (width - T) + T t`` (U, t uniform) whatever the direction."""
    n, width = motion.numel(), hi - lo
    speed = torch.tensor(travel)[motion // 4]
    run = (speed * _uniform(g, (n,), 0.9, 1.1) * width)[:, None]            # [N, 1]
    start = lo + torch.rand(n, 2, generator=g) * (width - run)               # [N, 2]
    t = torch.linspace(0, 1, frames)                                         # [F]
    frozen = torch.randint(0, frames, (n, 2), generator=g) / max(frames - 1, 1)
    axis = (motion % 4) // 2                                                 # 0: x, 1: y
    moving = torch.arange(2)[None] == axis[:, None]                          # [N, 2]
    tt = torch.where(moving[:, None], t[None, :, None], frozen[:, None])     # [N, F, 2]
    values = start[:, None] + run[:, None] * tt
    mirror = torch.where(moving, (motion % 2 == 1)[:, None], torch.rand(n, 2, generator=g) < 0.5)
    return torch.where(mirror[:, None], 2 * lo + width - values, values)


def _panning_backgrounds(n: int, frames: int, s: SceneSpec, pan_speed: float, g: torch.Generator) -> torch.Tensor:
    """[n, frames, 3, H, W] photograph crops (or noise fields, ``background_source``) panning in a random direction
    at up to ``pan_speed`` px/frame (a crop's path centred on the drawn crop, shrunk towards the photograph's centre
    to stay inside it)."""
    size = s.image_size
    if s.background is not None:
        return torch.tensor(s.background).view(1, 1, 3, 1, 1).expand(n, frames, 3, size, size).clone()
    photographs = s.background_source == "photographs"
    crops = _background_crops(n, size, s.background_scale, g) if photographs else None
    angle = _uniform(g, (n,), 0, 2 * math.pi)
    px = _uniform(g, (n,), 0, 1) * pan_speed                                 # pixels per frame
    if not photographs:
        velocity = torch.stack([angle.cos(), angle.sin()], 1) * px[:, None]
        bg = noise_backgrounds(n, size, g, velocity, frames)
        return _finish_background(bg.flatten(0, 1), s).view(n, frames, 3, size, size)
    offset = torch.arange(frames) - (frames - 1) / 2                         # [F]
    rows = {k: v.repeat_interleave(frames) for k, v in crops.items()}
    for key, half, trig in (("cx", "sx", angle.cos()), ("cy", "sy", angle.sin())):
        step = px * trig * 2 * crops[half] / size                            # grid units per frame
        room = 1 - crops[half]
        reach = step.abs() * (frames - 1) / 2
        centre = crops[key] * ((room - reach) / room).clamp(min=0)
        rows[key] = (centre[:, None] + step[:, None] * offset[None]).flatten()
    bg = _finish_background(_sample_crops(rows, size, s.background_scale), s)
    return bg.view(n, frames, 3, size, size)


def render_moving_objects(num_videos: int, frames: int = 16, seed: int = 0, chunk: int = 16,
                          motion: torch.Tensor | None = None, spec: MotionSpec | None = None) -> dict:
    """``num_videos`` videos of ``spec`` (default :class:`MotionSpec`), deterministic from ``seed``, rendered
    ``chunk`` videos at a time. ``motion``: the motion label of each video (default: balanced, ``i % 8``
    shuffled). Returns ``video`` uint8 [N, frames, H, W, 3], ``shape`` [N] (the main object's class), ``motion``
    [N], and per frame and slot ``center`` [N, frames, K, 2] (pixels), ``area`` [N, frames, K] (visible pixels),
    ``cls`` [N, K], ``present`` [N, K]."""
    spec = spec or MotionSpec()
    if not isinstance(num_videos, int) or num_videos < 1:
        raise ValueError(f"num_videos must be an integer >= 1, got {num_videos!r}")
    if not isinstance(frames, int) or frames < 2:
        raise ValueError(f"frames must be an integer >= 2, got {frames!r}")
    g = torch.Generator().manual_seed(int(seed))
    if motion is None:
        motion = (torch.arange(num_videos) % len(OBJECT_MOTIONS))[torch.randperm(num_videos, generator=g)]
    motion = torch.as_tensor(motion, dtype=torch.long)
    if motion.shape != (num_videos,) or motion.min() < 0 or motion.max() >= len(OBJECT_MOTIONS):
        raise ValueError(f"motion must hold {num_videos} labels in [0, {len(OBJECT_MOTIONS)}), got {motion}")
    parts = [_render_videos(motion[i:i + chunk], frames, spec, g) for i in range(0, num_videos, chunk)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def _render_videos(motion: torch.Tensor, frames: int, spec: MotionSpec, g: torch.Generator) -> dict:
    s, n = spec.scene, motion.numel()
    size, k = s.image_size, int(s.objects_per_scene[1])
    obj = sample_objects(n, s, g)
    lo, hi = spec.main_range
    main = main_object_paths(motion, frames, lo * size, hi * size, spec.travel, g)          # [n, F, 2]
    angle = _uniform(g, (n, k - 1), 0, 2 * math.pi)
    speed = _uniform(g, (n, k - 1), *spec.distractor_speed)
    velocity = torch.stack([angle.cos(), angle.sin()], -1) * speed[..., None]              # [n, k-1, 2]
    start = obj["place"][:, 1:] * size - velocity * (frames - 1) / 2                       # drawn place = mid-video
    others = start[:, None] + velocity[:, None] * torch.arange(frames).view(1, -1, 1, 1)  # [n, F, k-1, 2]
    center = torch.cat([main[:, :, None], others], 2)                                      # [n, F, k, 2]
    bg = _panning_backgrounds(n, frames, s, spec.pan_speed, g)
    obj["place"] = center[:, 0] / size                       # colours contrast with the first frame's background
    obj = paint_objects(obj, s, bg[:, 0], g)
    rows = {key: value.repeat_interleave(frames, 0) for key, value in obj.items()}
    rows["center"] = center.flatten(0, 1)
    masks, colour = object_layers(rows, size)
    depth = rows["depth"].view(n, frames, k)
    owner, area = visible_owner(masks, depth.flatten(0, 1))
    if k > 1:
        hidden = (area[:, 0] < MAIN_MARGIN * area[:, 1:].max(1).values).view(n, frames).any(1)
        if hidden.any():
            depth[hidden, :, 0] = k
            owner, area = visible_owner(masks, depth.flatten(0, 1))
    image, _ = composite(owner, colour, rows["cls"], bg.flatten(0, 1))
    video = image.mul(255).round_().to(torch.uint8).view(n, frames, 3, size, size).permute(0, 1, 3, 4, 2)
    return {"video": video.contiguous(), "shape": obj["cls"][:, 0], "motion": motion, "center": center,
            "area": area.view(n, frames, k), "cls": obj["cls"], "present": obj["present"]}
