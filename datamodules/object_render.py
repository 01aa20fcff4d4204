"""Embedded object scenes: textured geometric shapes of 10 classes pasted on crops of real photographs.

Nothing is downloaded: the backgrounds are cut from the two photographs scikit-learn ships
(``sklearn.datasets.load_sample_images``: ``china.jpg`` and ``flower.jpg``, 427x640 RGB).

A scene (``image_size`` x ``image_size``):

- background: a square crop of a random photograph at a random position, its side a random fraction
  (``background_scale``) of the photograph's short side, randomly mirrored, resampled to the canvas; or a constant
  colour (``background=(r, g, b)``, for tests).
- objects (``objects_per_scene`` = (min, max), main object included): one *main* object, drawn large
  (``main_scale``), and small *distractors* (``distractor_scale``) of the other classes. Each object is a shape of
  :data:`SHAPES`, all normalised to the same area (``pi * size**2``), so area carries no class information; it
  gets a random position, rotation, mirror, aspect jitter (area-preserving) and a colour pair contrasting with the
  local background (``min_contrast``, RGB distance) mixed by a texture drawn in the object's own coordinates
  (solid, stripes, checks or smooth noise). Objects are drawn in a random depth order; later ones occlude earlier
  ones. Alpha is binary, so the labels are exact.

Outputs: ``image`` float [N, 3, H, W] in [0, 1]; ``segmentation`` int64 [N, H, W] (0 = background, ``1 + c`` = a
visible pixel of an object of class ``c``, the top-most object wins); ``label`` int64 [N], the class of the object
with the largest visible area. Tie-free by construction: that object is the main object (distractors are of other
classes), its visible area is at least ``MAIN_MARGIN`` times any distractor's (where random depth would let
distractors hide more of it, it is drawn on top instead). Deterministic from ``seed``; vectorized over scenes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torchvision.transforms.v2.functional import gaussian_blur

SHAPES = ("disk", "square", "triangle", "star", "cross", "ring", "bar", "L", "T", "arrow")
NUM_SHAPES = len(SHAPES)
TEXTURES = ("solid", "stripes", "checks", "noise")
MAIN_MARGIN = 1.5  # the main object's visible area is at least this many times any distractor's
_STAR_OUTER, _STAR_INNER = 1.0, 0.45
_SIN36, _COS36 = math.sin(math.pi / 5), math.cos(math.pi / 5)


def _star(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """5-pointed star, outer radius 1 (a point on +v), inner radius 0.45: fold the angle into one half-spike."""
    rho, theta = torch.hypot(u, v), torch.atan2(u, v)                       # angle from +v
    phi = ((theta + math.pi / 5) % (2 * math.pi / 5) - math.pi / 5).abs()   # [0, 36 deg], 0 at a spike tip
    x, y = rho * phi.cos(), rho * phi.sin()
    ox, ix, iy = _STAR_OUTER, _STAR_INNER * _COS36, _STAR_INNER * _SIN36
    return (ix - ox) * y - iy * (x - ox) >= 0  # on the centre's side of the edge tip -> inner vertex


def shape_mask(cls: int, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Membership (bool) of canonical coordinates ``(u, v)`` (``v`` points up) in shape ``cls`` before area
    normalisation; every shape lies in [-1, 1]^2."""
    au, av = u.abs(), v.abs()
    if cls == 0:   # disk
        return u * u + v * v <= 1
    if cls == 1:   # square
        return torch.maximum(au, av) <= 0.8
    if cls == 2:   # triangle: equilateral, circumradius 1, apex up
        return (v >= -0.5) & (math.sqrt(3) * au + v <= 1)
    if cls == 3:
        return _star(u, v)
    if cls == 4:   # cross (plus)
        return ((au <= 0.3) & (av <= 1)) | ((av <= 0.3) & (au <= 1))
    if cls == 5:   # ring
        r2 = u * u + v * v
        return (r2 <= 1) & (r2 >= 0.55 ** 2)
    if cls == 6:   # bar
        return (au <= 1) & (av <= 0.4)
    if cls == 7:   # L: a stem on the left and a foot at the bottom
        return (((u >= -0.8) & (u <= -0.2)) | (v <= -0.4)) & (u >= -0.8) & (u <= 0.8) & (av <= 1)
    if cls == 8:   # T
        return ((v >= 0.4) | (au <= 0.3)) & (au <= 1) & (av <= 1)
    if cls == 9:   # arrow pointing to +u: shaft and head
        shaft = (u >= -1) & (u <= 0.1) & (av <= 0.22)
        head = (u >= 0.1) & (u <= 1) & (av <= 0.6 * (1 - u) / 0.9)
        return shaft | head
    raise ValueError(f"shape class must be in [0, {NUM_SHAPES}), got {cls}")


@lru_cache(maxsize=1)
def shape_gains() -> torch.Tensor:
    """Per-class factor [10] that scales the canonical shape to area ``pi`` (the unit disk's)."""
    n = 1024
    t = (torch.arange(n) + 0.5) / n * 2 - 1
    v, u = torch.meshgrid(t, t, indexing="ij")
    areas = torch.stack([shape_mask(c, u, v).float().mean() * 4 for c in range(NUM_SHAPES)])
    return (math.pi / areas).sqrt()


@lru_cache(maxsize=4)
def photographs(short_side: int) -> torch.Tensor:
    """scikit-learn's two sample photographs, float [2, 3, short_side, W] in [0, 1], resized with antialiasing."""
    from sklearn.datasets import load_sample_images

    photos = torch.stack([torch.tensor(im).permute(2, 0, 1) for im in load_sample_images().images])
    h, w = photos.shape[-2:]
    return F.interpolate(photos.float() / 255, size=(short_side, round(w * short_side / h)), mode="bilinear",
                         antialias=True, align_corners=False)


def _uniform(g: torch.Generator, shape: Sequence[int], lo: float, hi: float) -> torch.Tensor:
    return torch.rand(*shape, generator=g) * (hi - lo) + lo


def _crop_photos(short_side: int) -> torch.Tensor:
    return photographs(min(427, short_side))


def _background_crops(n: int, size: int, scale: tuple[float, float], g: torch.Generator) -> dict[str, torch.Tensor]:
    """Where ``n`` square photograph crops lie: photograph index ``which``, half-extents ``sx, sy`` and centre
    ``cx, cy`` in grid_sample's [-1, 1] units, mirror ``flip`` (+-1); side ``scale`` x the short side, random place."""
    photos = _crop_photos(math.ceil(2 * size / scale[0]))  # crops downsampled at most 2x
    ph, pw = photos.shape[-2:]
    which = torch.randint(0, photos.size(0), (n,), generator=g)
    side = _uniform(g, (n,), *scale)                       # of the short side
    sx, sy = side * ph / pw, side                          # half-extent in grid_sample's [-1, 1] units
    cx, cy = _uniform(g, (n,), 0, 1) * 2 * (1 - sx) - (1 - sx), _uniform(g, (n,), 0, 1) * 2 * (1 - sy) - (1 - sy)
    flip = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    return {"which": which, "sx": sx, "sy": sy, "cx": cx, "cy": cy, "flip": flip}


def _sample_crops(crops: dict[str, torch.Tensor], size: int, scale: tuple[float, float]) -> torch.Tensor:
    """The crops of :func:`_background_crops` (any number of rows) resampled to [M, 3, size, size]."""
    photos = _crop_photos(math.ceil(2 * size / scale[0]))
    m = crops["which"].size(0)
    theta = torch.zeros(m, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = crops["sx"] * crops["flip"], crops["cx"]
    theta[:, 1, 1], theta[:, 1, 2] = crops["sy"], crops["cy"]
    grid = F.affine_grid(theta, [m, 3, size, size], align_corners=False)
    out = torch.empty(m, 3, size, size)
    for p in range(photos.size(0)):
        idx = (crops["which"] == p).nonzero().flatten()
        if len(idx):
            out[idx] = F.grid_sample(photos[p:p + 1].expand(len(idx), -1, -1, -1), grid[idx], mode="bilinear",
                                     padding_mode="border", align_corners=False)
    return out


def _colours(local_bg: torch.Tensor, min_contrast: float, strength: tuple[float, float], g: torch.Generator,
             tries: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """A colour pair per row of ``local_bg`` [M, 3]: the first of ``tries`` random pairs whose both colours are at
    least ``min_contrast`` (RGB distance) from the local background, else the pair farthest from it. The second
    colour is the first moved a fraction ``strength`` (range) towards black or white (the texture's contrast)."""
    m = local_bg.size(0)
    c1 = torch.rand(m, tries, 3, generator=g)
    toward = (torch.rand(m, tries, 1, generator=g) < 0.5).float()
    c2 = c1 + _uniform(g, (m, tries, 1), *strength) * (toward - c1)
    dist = torch.minimum((c1 - local_bg[:, None]).norm(dim=-1), (c2 - local_bg[:, None]).norm(dim=-1))
    ok = dist >= min_contrast
    pick = torch.where(ok.any(1), ok.float().argmax(1), dist.argmax(1))
    rows = torch.arange(m)
    return c1[rows, pick], c2[rows, pick]


def _texture_params(m: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Random texture parameters of ``m`` objects: frequency, stripe angle, phase and the smooth-noise cells."""
    return {"freq": _uniform(g, (m, 1, 1), 2.5, 5.0), "ang": _uniform(g, (m, 1, 1), 0, math.pi),
            "phase": _uniform(g, (m, 1, 1), 0, 2 * math.pi), "cells": torch.rand(m, 1, 5, 5, generator=g)}


def _texture(kind: torch.Tensor, p: dict[str, torch.Tensor], u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Mixing weight in [0, 1] [M, H, W] of texture ``kind`` [M] with parameters ``p`` (:func:`_texture_params`)
    in object coordinates ``u, v`` [M, H, W]."""
    freq, ang, phase = p["freq"], p["ang"], p["phase"]
    along = u * ang.cos() + v * ang.sin()
    stripes = (torch.sin(freq * math.pi * along + phase) > 0).float()
    checks = ((torch.sin(freq * math.pi * u + phase) * torch.sin(freq * math.pi * v)) > 0).float()
    noise = F.grid_sample(p["cells"], torch.stack([u, v], -1).clamp(-1.5, 1.5) / 1.5, mode="bicubic",
                          align_corners=True)[:, 0].clamp(0, 1)
    k = kind[:, None, None]
    return torch.where(k == 1, stripes, torch.where(k == 2, checks, torch.where(k == 3, noise, torch.zeros_like(u))))


def _range(name: str, value: Sequence[float], lo: float, hi: float) -> tuple[float, float]:
    a, b = (float(x) for x in value)
    if not lo < a <= b <= hi:
        raise ValueError(f"{name} must satisfy {lo:g} < min <= max <= {hi:g}, got {tuple(value)}")
    return a, b


@dataclass(frozen=True)
class SceneSpec:
    """What a scene looks like (see the module docstring); checked on construction.

    Sizes are object radii (of the equal-area disk) as fractions of ``image_size``; ``rotation`` is the largest
    absolute object rotation in degrees; ``background_scale`` the crop side as a fraction of the photograph's short
    side; ``background_blur`` a Gaussian sigma in output pixels (0: none) and ``background_contrast`` the factor on
    the background's deviation from its mean (both keep objects salient against busy photographs);
    ``background`` a constant RGB colour in [0, 1] instead of photographs; ``background_source`` "photographs" or
    "noise" (a fresh smooth random field per scene, power spectrum 1/f^3, see
    :func:`noise_backgrounds`: no two scenes share a background); ``texture_strength`` how far (range)
    the texture's second colour moves from the first towards black or white; ``min_contrast`` the least RGB
    distance of an object's colours from its local background."""

    image_size: int = 64
    objects_per_scene: tuple[int, int] = (2, 4)
    main_scale: tuple[float, float] = (0.24, 0.32)
    distractor_scale: tuple[float, float] = (0.05, 0.09)
    rotation: float = 15.0
    background_scale: tuple[float, float] = (0.15, 0.35)
    background_blur: float = 1.0
    background_contrast: float = 0.6
    background: tuple[float, float, float] | None = None
    background_source: str = "photographs"
    textures: bool = True
    texture_strength: tuple[float, float] = (0.2, 0.45)
    min_contrast: float = 0.35

    def __post_init__(self) -> None:
        if not isinstance(self.image_size, int) or self.image_size < 8:
            raise ValueError(f"image_size must be an integer >= 8, got {self.image_size!r}")
        lo, hi = (int(x) for x in self.objects_per_scene)
        if not 1 <= lo <= hi:
            raise ValueError(f"objects_per_scene must satisfy 1 <= min <= max, got {tuple(self.objects_per_scene)}")
        main = _range("main_scale", self.main_scale, 0, 0.5)
        distractor = _range("distractor_scale", self.distractor_scale, 0, 0.5)
        if distractor[1] * math.sqrt(MAIN_MARGIN) * 1.2 > main[0]:
            raise ValueError(f"distractor_scale max {distractor[1]} must be <= main_scale min {main[0]} / "
                             f"{math.sqrt(MAIN_MARGIN) * 1.2:.2f}, so that the main object is clearly the largest")
        _range("background_scale", self.background_scale, 0, 1)
        _range("texture_strength", self.texture_strength, -1e-9, 1)
        for name, value, top in (("rotation", self.rotation, 180.0), ("background_blur", self.background_blur, 10.0),
                                 ("background_contrast", self.background_contrast, 1.0),
                                 ("min_contrast", self.min_contrast, 1.0)):
            if not 0 <= value <= top:
                raise ValueError(f"{name} must be in [0, {top:g}], got {value!r}")
        if self.background_source not in ("photographs", "noise"):
            raise ValueError(f"background_source must be 'photographs' or 'noise', got {self.background_source!r}")
        if self.background is not None and (len(self.background) != 3 or not all(0 <= c <= 1 for c in self.background)):
            raise ValueError(f"background must be None (photographs) or an RGB colour in [0, 1], got {self.background!r}")


def render_object_scenes(num_scenes: int, seed: int = 0, chunk: int = 256, with_masks: bool = False,
                         **spec) -> dict[str, torch.Tensor]:
    """``num_scenes`` scenes of :class:`SceneSpec` ``(**spec)`` (see the module docstring), deterministic from
    ``seed``, rendered ``chunk`` scenes at a time. Returns ``image``, ``segmentation``, ``label`` and ``objects``
    (per slot [N, K], K = max objects, slot 0 the main object: ``cls``, ``present``, ``center`` [N, K, 2] (x, y in
    pixels), ``size`` (radius in pixels), ``angle`` (radians, counter-clockwise), ``aspect``, ``mirror``,
    ``depth`` (drawing order, higher = later), ``area`` (visible pixels), ``texture``, ``colour`` [N, K, 3]; with
    ``with_masks`` also ``mask`` [N, K, H, W], each object's full (unoccluded) mask)."""
    s = SceneSpec(**spec)
    if not isinstance(num_scenes, int) or num_scenes < 1:
        raise ValueError(f"num_scenes must be an integer >= 1, got {num_scenes!r}")
    g = torch.Generator().manual_seed(int(seed))
    parts = [_render_chunk(min(chunk, num_scenes - i), s, g, with_masks) for i in range(0, num_scenes, chunk)]
    out = {k: torch.cat([p[k] for p in parts]) for k in ("image", "segmentation", "label")}
    out["objects"] = {k: torch.cat([p["objects"][k] for p in parts]) for k in parts[0]["objects"]}
    return out


def _finish_background(bg: torch.Tensor, s: SceneSpec) -> torch.Tensor:
    """Blur and contrast of :class:`SceneSpec` applied to photograph crops [M, 3, H, W]."""
    if s.background_blur > 0:
        sigma = s.background_blur
        bg = gaussian_blur(bg, [2 * math.ceil(2 * sigma) + 1] * 2, [sigma, sigma])
    mean = bg.mean((1, 2, 3), keepdim=True)
    return mean + s.background_contrast * (bg - mean)


def noise_backgrounds(n: int, size: int, g: torch.Generator, velocity: torch.Tensor | None = None,
                      frames: int = 1) -> torch.Tensor:
    """[n, frames, 3, size, size] smooth random backgrounds (power spectrum 1/f^3, a little smoother than a photograph's 1/f^2), one fresh field
    per scene: a luminance field shared by the channels plus weaker per-channel fields, around a random mean colour
    (std 0.2 per scene). Periodic, so ``velocity`` [n, 2] (x, y pixels per frame) pans it exactly (a phase shift)."""
    f = torch.fft.fftfreq(size)
    fy, fx = f[:, None], f[None, :]
    amplitude = torch.hypot(fx, fy).clamp(min=1 / size).pow(-1.5)
    amplitude[0, 0] = 0
    white = torch.randn(n, 4, size, size, generator=g)
    field = 0.8 * white[:, :1] + 0.45 * white[:, 1:]                            # [n, 3, H, W], correlated channels
    spectrum = torch.fft.fft2(field) * amplitude
    t = torch.arange(frames, dtype=torch.float32)
    if velocity is None:
        velocity = torch.zeros(n, 2)
    shift = velocity[:, 0, None, None] * fx + velocity[:, 1, None, None] * fy   # [n, H, W] cycles per frame
    phase = torch.exp(-2j * math.pi * t.view(1, -1, 1, 1) * shift[:, None])     # [n, F, H, W]
    out = torch.fft.ifft2(spectrum[:, None] * phase[:, :, None]).real          # [n, F, 3, H, W]
    out = out / out[:, :1].std((1, 2, 3, 4), keepdim=True).clamp(min=1e-8) * 0.2
    return (out + _uniform(g, (n, 1, 3, 1, 1), 0.3, 0.7)).clamp(0, 1)


def _background(n: int, s: SceneSpec, g: torch.Generator) -> torch.Tensor:
    size = s.image_size
    if s.background is not None:
        return torch.tensor(s.background, dtype=torch.float32).view(1, 3, 1, 1).expand(n, 3, size, size).clone()
    if s.background_source == "noise":
        return _finish_background(noise_backgrounds(n, size, g)[:, 0], s)
    return _finish_background(_sample_crops(_background_crops(n, size, s.background_scale, g), size,
                                            s.background_scale), s)


def sample_objects(n: int, s: SceneSpec, g: torch.Generator) -> dict[str, torch.Tensor]:
    """The objects of ``n`` scenes, per slot [n, K] (K = max objects; slot 0 the main object, the others
    distractors of other classes): ``cls``, ``present``, ``size`` (radius, pixels), ``place`` [n, K, 2] (centre
    as a fraction of the side; main object in [0.3, 0.7]), ``angle``, ``aspect``, ``mirror``, ``texture`` (kind)
    and ``depth`` (random drawing order, -1 where absent)."""
    size, k = s.image_size, int(s.objects_per_scene[1])
    count = torch.randint(int(s.objects_per_scene[0]), k + 1, (n,), generator=g)
    present = torch.arange(k)[None] < count[:, None]
    main_cls = torch.randint(0, NUM_SHAPES, (n, 1), generator=g)
    cls = torch.cat([main_cls, (main_cls + torch.randint(1, NUM_SHAPES, (n, k - 1), generator=g)) % NUM_SHAPES], 1)
    radius = torch.cat([_uniform(g, (n, 1), *s.main_scale), _uniform(g, (n, k - 1), *s.distractor_scale)], 1) * size
    place = torch.cat([_uniform(g, (n, 1, 2), 0.3, 0.7), _uniform(g, (n, k - 1, 2), 0.05, 0.95)], 1)
    angle = _uniform(g, (n, k), -1, 1) * math.radians(s.rotation)
    aspect = _uniform(g, (n, k), 0.85, 1.0 / 0.85)
    mirror = torch.rand(n, k, generator=g) < 0.5
    texture = torch.randint(0, len(TEXTURES) if s.textures else 1, (n, k), generator=g)
    depth = torch.where(present, torch.rand(n, k, generator=g).argsort(1).argsort(1), -1)  # random drawing order
    return {"cls": cls, "present": present, "size": radius, "place": place, "angle": angle, "aspect": aspect,
            "mirror": mirror, "texture": texture, "depth": depth}


def paint_objects(obj: dict[str, torch.Tensor], s: SceneSpec, bg: torch.Tensor,
                  g: torch.Generator) -> dict[str, torch.Tensor]:
    """Colours (``colour``, ``colour2`` [n, K, 3]: a pair contrasting with the local background ``bg`` [n, 3, H, W]
    at the object's place) and texture parameters (``tex_<name>``, per slot) of the objects of
    :func:`sample_objects`, added to a copy of ``obj``."""
    n, k = obj["cls"].shape
    cell = (obj["place"] * 4).long().clamp(0, 3)                                      # local background: 4x4 cells
    local = F.adaptive_avg_pool2d(bg, 4)[torch.arange(n)[:, None], :, cell[..., 1], cell[..., 0]]   # [n, k, 3]
    c1, c2 = _colours(local.reshape(-1, 3), s.min_contrast, s.texture_strength, g)
    tex = [_texture_params(n, g) for _ in range(k)]
    return {**obj, "colour": c1.view(n, k, 3), "colour2": c2.view(n, k, 3),
            **{f"tex_{key}": torch.stack([t[key] for t in tex], 1) for key in tex[0]}}


def object_layers(obj: dict[str, torch.Tensor], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Each painted object's full (unoccluded) mask [M, K, H, W] and colour [M, K, 3, H, W], in its own
    coordinates (v up), at its ``center`` [M, K, 2] (pixels); ``obj`` as from :func:`paint_objects` (any rows)."""
    m, k = obj["cls"].shape
    center, cls = obj["center"], obj["cls"]
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    masks = torch.zeros(m, k, size, size, dtype=torch.bool)
    colour = torch.zeros(m, k, 3, size, size)
    gains = shape_gains()
    for j in range(k):
        dx, dy = xs - center[:, j, 0, None, None], -(ys - center[:, j, 1, None, None])
        ca, sa = obj["angle"][:, j, None, None].cos(), obj["angle"][:, j, None, None].sin()
        scale, asp = (obj["size"][:, j] * gains[cls[:, j]])[:, None, None], obj["aspect"][:, j, None, None]
        u = (ca * dx + sa * dy) / (scale * asp)
        v = (-sa * dx + ca * dy) * asp / scale
        u = torch.where(obj["mirror"][:, j, None, None], -u, u)
        for c in range(NUM_SHAPES):
            idx = (cls[:, j] == c).nonzero().flatten()
            if len(idx):
                masks[idx, j] = shape_mask(c, u[idx], v[idx])
        masks[:, j] &= obj["present"][:, j, None, None]
        t = _texture(obj["texture"][:, j], {key[4:]: obj[key][:, j] for key in obj if key.startswith("tex_")}, u, v)
        colour[:, j] = obj["colour"][:, j, :, None, None] * (1 - t[:, None]) + obj["colour2"][:, j, :, None, None] * t[:, None]
    return masks, colour


def visible_owner(masks: torch.Tensor, depth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The slot that owns each pixel (the top-most object, -1: background) [M, H, W] and each slot's visible area
    [M, K], for drawing order ``depth`` [M, K] (higher = later)."""
    k = masks.size(1)
    top_depth, top = torch.where(masks, depth[:, :, None, None], -1).max(1)     # [M, H, W]
    owner = torch.where(top_depth >= 0, top, -1)
    return owner, (owner[:, None] == torch.arange(k)[None, :, None, None]).sum((2, 3))


def composite(owner: torch.Tensor, colour: torch.Tensor, cls: torch.Tensor,
              bg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Image [M, 3, H, W] in [0, 1] and segmentation [M, H, W] (0 = background, 1 + class) of objects drawn by
    ``owner`` (:func:`visible_owner`) over ``bg``."""
    seen, slot = owner >= 0, owner.clamp(min=0)
    top_colour = colour.gather(1, slot[:, None, None].expand(-1, 1, 3, -1, -1))[:, 0]
    image = torch.where(seen[:, None], top_colour, bg).clamp(0, 1)
    seg = torch.where(seen, cls.gather(1, slot.flatten(1)).view_as(slot) + 1, 0)
    return image, seg.long()


def _render_chunk(n: int, s: SceneSpec, g: torch.Generator, with_masks: bool) -> dict:
    size, k = s.image_size, int(s.objects_per_scene[1])
    obj = sample_objects(n, s, g)
    bg = _background(n, s, g)
    obj = paint_objects(obj, s, bg, g)
    obj["center"] = obj["place"] * size
    masks, colour = object_layers(obj, size)
    # occlusion: the top-most object owns a pixel; the main object goes on top where it would not clearly be the
    # largest visible object
    depth = obj["depth"]
    owner, area = visible_owner(masks, depth)
    if k > 1:
        hidden = area[:, 0] < MAIN_MARGIN * area[:, 1:].max(1).values
        if hidden.any():
            depth[hidden, 0] = k
            owner, area = visible_owner(masks, depth)
    image, seg = composite(owner, colour, obj["cls"], bg)
    label = obj["cls"].gather(1, area.argmax(1, keepdim=True))[:, 0]
    objects = {"cls": obj["cls"], "present": obj["present"], "center": obj["center"], "size": obj["size"],
               "angle": obj["angle"], "aspect": obj["aspect"], "mirror": obj["mirror"], "depth": depth, "area": area,
               "texture": obj["texture"], "colour": obj["colour"]}
    if with_masks:
        objects["mask"] = masks
    return {"image": image, "segmentation": seg, "label": label, "objects": objects}
