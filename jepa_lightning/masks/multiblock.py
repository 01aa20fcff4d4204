"""I-JEPA multi-block masks on a 2D patch grid, batched and vectorized.

Sampling rule (I-JEPA, Assran et al. 2023), per call:

1. ``u_t, u_c = rand(2)`` (first draw from the generator). The target block size uses one ``u`` for
   both scale and aspect: ``s = lo + u (hi - lo)``, ``max_keep = int(H W s)``,
   ``a = alo + u (ahi - alo)``, ``h = round(sqrt(max_keep a))``, ``w = round(sqrt(max_keep / a))``,
   clipped to ``1 <= h <= H``, ``1 <= w <= W``. The context block size likewise from ``u_c``.
   Every sample of the batch shares both sizes.
2. Each sample gets ``num_targets`` target blocks, top-left corners uniform in
   ``[0, H - h] x [0, W - w]`` (inclusive, so every patch can be covered).
3. The context block is placed uniformly and, unless ``allow_overlap``, intersected with the
   complement of all target blocks. A placement leaving fewer than ``min_keep`` patches is rejected;
   ``context_tries`` placements are tried per relaxation level, where level ``l`` drops the last
   ``l`` target complements; the last level (no target removed) always succeeds or the call raises.
4. All context masks are cut to the batch minimum count by keeping a random subset per sample.

Differences from the reference implementation (facebookresearch/ijepa ``src/masks/multiblock.py``):
blocks may reach the last row/column; all work is bounded (no rejection loops) and impossible
requests raise ``ValueError``; truncation keeps a random subset instead of the first indices;
``min_keep`` bounds the context only (the reference also applied it to the fixed-size target
blocks, where it can only loop forever); a context is valid when it has ``>= min_keep`` patches
(the reference used ``>``).
"""

from __future__ import annotations

import math
import numbers

import torch
import torch.nn.functional as F

from .utils import Masks

__all__ = ["MultiBlockMask2D"]


def _int_at_least(name: str, value: int, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise ValueError(f"{name} must be an integer >= {lo}, got {value!r}")
    return int(value)


def _pair(name: str, value: tuple[float, float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair (lo, hi) of numbers, got {value!r}") from None
    if lo > hi:
        raise ValueError(f"{name} must have lo <= hi, got {value!r}")
    return lo, hi


def _scale_range(name: str, value: tuple[float, float]) -> tuple[float, float]:
    """A (lo, hi) range of area/extent fractions within (0, 1]."""
    lo, hi = _pair(name, value)
    if not (0.0 < lo <= hi <= 1.0):
        raise ValueError(f"{name} must lie within (0, 1], got {(lo, hi)}")
    return lo, hi


def _aspect_range(name: str, value: tuple[float, float]) -> tuple[float, float]:
    """A (lo, hi) range of aspect ratios, positive and finite."""
    lo, hi = _pair(name, value)
    if not (0.0 < lo <= hi < math.inf):
        raise ValueError(f"{name} must be positive and finite, got {(lo, hi)}")
    return lo, hi


def _block_size(
    u: float, scale: tuple[float, float], aspect: tuple[float, float], height: int, width: int
) -> tuple[int, int]:
    s = scale[0] + u * (scale[1] - scale[0])
    max_keep = int(height * width * s)
    a = aspect[0] + u * (aspect[1] - aspect[0])
    h = round(math.sqrt(max_keep * a))
    w = round(math.sqrt(max_keep / a))
    return min(max(h, 1), height), min(max(w, 1), width)


def _offsets(h: int, w: int, width: int, device: torch.device) -> torch.Tensor:
    """Flat row-major offsets of an ``h x w`` block from its top-left patch, ascending."""
    return (torch.arange(h, device=device)[:, None] * width + torch.arange(w, device=device)).flatten()


def _grid(grid_size: tuple[int, int]) -> tuple[int, int]:
    try:
        height, width = grid_size
    except (TypeError, ValueError):
        raise ValueError(f"grid_size must be a pair (H, W) of integers, got {grid_size!r}") from None
    return _int_at_least("grid height", height, 1), _int_at_least("grid width", width, 1)


def _resolve_device(generator: torch.Generator | None, device: torch.device | str | None) -> torch.device:
    if generator is None:
        return torch.device(device if device is not None else "cpu")
    gdev = generator.device
    if device is None:
        return gdev
    device = torch.device(device)
    if device.type != gdev.type or (
        device.index is not None and gdev.index is not None and device.index != gdev.index
    ):
        raise ValueError(f"generator is on {gdev} but masks were requested on {device}")
    return gdev


class MultiBlockMask2D:
    """I-JEPA multi-block mask generator (see the module docstring for the rule).

    Args:
        num_targets: target blocks per sample.
        target_scale: range of a target block's area as a fraction of the grid, within (0, 1].
        target_aspect: range of a target block's aspect ratio h / w, positive.
        context_scale: range of the context block's area as a fraction of the grid, within (0, 1].
        context_aspect: range of the context block's aspect ratio h / w, positive.
        min_keep: least number of context patches per sample.
        allow_overlap: if False, the context excludes every target patch (up to relaxation).
        context_tries: context placements tried per relaxation level.

    Calling it with ``(batch_size, (H, W), generator)`` returns :class:`Masks` with flat
    row-major indices into the ``H x W`` grid. All randomness comes from ``generator``; with
    ``generator=None`` torch's global RNG for ``device`` is used.
    """

    def __init__(
        self,
        num_targets: int = 4,
        target_scale: tuple[float, float] = (0.15, 0.2),
        target_aspect: tuple[float, float] = (0.75, 1.5),
        context_scale: tuple[float, float] = (0.85, 1.0),
        context_aspect: tuple[float, float] = (1.0, 1.0),
        min_keep: int = 10,
        allow_overlap: bool = False,
        context_tries: int = 20,
    ) -> None:
        self.num_targets = _int_at_least("num_targets", num_targets, 1)
        self.min_keep = _int_at_least("min_keep", min_keep, 1)
        self.context_tries = _int_at_least("context_tries", context_tries, 1)
        self.target_scale = _scale_range("target_scale", target_scale)
        self.context_scale = _scale_range("context_scale", context_scale)
        self.target_aspect = _aspect_range("target_aspect", target_aspect)
        self.context_aspect = _aspect_range("context_aspect", context_aspect)
        self.allow_overlap = bool(allow_overlap)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_targets={self.num_targets}, target_scale={self.target_scale}, "
            f"target_aspect={self.target_aspect}, context_scale={self.context_scale}, "
            f"context_aspect={self.context_aspect}, min_keep={self.min_keep}, "
            f"allow_overlap={self.allow_overlap}, context_tries={self.context_tries})"
        )

    def _check_context_size(self, hc: int, wc: int, height: int, width: int, what: str) -> None:
        if hc * wc < self.min_keep:
            raise ValueError(
                f"MultiBlockMask2D: min_keep={self.min_keep} exceeds the {what} context block "
                f"{hc}x{wc}={hc * wc} patches on grid {height}x{width} with "
                f"context_scale={self.context_scale}, context_aspect={self.context_aspect}; "
                f"lower min_keep or raise context_scale"
            )

    def __call__(
        self,
        batch_size: int,
        grid_size: tuple[int, int],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Masks:
        height, width = _grid(grid_size)
        _int_at_least("batch_size", batch_size, 1)
        dev = _resolve_device(generator, device)
        g, B, T = generator, batch_size, self.num_targets
        # The smallest context block (u = 0) must hold min_keep patches: fail on the first call,
        # not at a random later step. Exact for the default square aspect (area monotone in u).
        self._check_context_size(
            *_block_size(0.0, self.context_scale, self.context_aspect, height, width),
            height,
            width,
            "smallest",
        )

        u_t, u_c = torch.rand(2, generator=g, device=dev).tolist()
        h, w = _block_size(u_t, self.target_scale, self.target_aspect, height, width)
        hc, wc = _block_size(u_c, self.context_scale, self.context_aspect, height, width)
        self._check_context_size(hc, wc, height, width, "sampled")

        # Targets: rectangles inside the grid, so each has exactly h*w row-major (sorted) indices.
        top = torch.randint(0, height - h + 1, (B, T), generator=g, device=dev)
        left = torch.randint(0, width - w + 1, (B, T), generator=g, device=dev)
        targets = (top * width + left)[..., None] + _offsets(h, w, width, dev)  # [B, T, h*w]

        if self.allow_overlap:
            ctop = torch.randint(0, height - hc + 1, (B, 1), generator=g, device=dev)
            cleft = torch.randint(0, width - wc + 1, (B, 1), generator=g, device=dev)
            context = ctop * width + cleft + _offsets(hc, wc, width, dev)  # [B, hc*wc]
            return Masks(context=context, targets=targets)

        # Relaxation level l = 0..T forbids the union of targets 0..T-l-1 (level T forbids nothing).
        n = height * width
        tmask = torch.zeros(B, T, n, dtype=torch.bool, device=dev).scatter_(2, targets, True)
        covered = tmask.cumsum(1, dtype=torch.int32)  # [:, j] > 0 on the union of targets 0..j
        allowed = F.pad(covered.flip(1), (0, 0, 0, 1)) == 0  # [B, L, n], L = T + 1
        L, C = T + 1, self.context_tries

        # Integral image of each level's allowed map: any rectangle's count from 4 lookups.
        sat = allowed.view(B, L, height, width).to(torch.int32).cumsum(-1).cumsum(-2)
        sat = F.pad(sat, (1, 0, 1, 0)).flatten(2)  # [B, L, (H+1)(W+1)]
        ctop = torch.randint(0, height - hc + 1, (B, L, C), generator=g, device=dev)
        cleft = torch.randint(0, width - wc + 1, (B, L, C), generator=g, device=dev)
        corner = ctop * (width + 1) + cleft  # top-left corner in the integral image
        d = torch.tensor([hc * (width + 1) + wc, wc, hc * (width + 1), 0], device=dev)
        vals = sat.gather(2, (corner[..., None] + d).flatten(2)).view(B, L, C, 4)
        count = vals[..., 0] - vals[..., 1] - vals[..., 2] + vals[..., 3]  # [B, L, C]

        # First valid candidate in (level, try) order; level T always is (checked above).
        first = (count >= self.min_keep).flatten(1).to(torch.uint8).argmax(1, keepdim=True)  # [B, 1]
        start = (corner - ctop).flatten(1).gather(1, first)  # chosen top * W + left, [B, 1]
        rect = start + _offsets(hc, wc, width, dev)  # [B, hc*wc], ascending
        keep = allowed.flatten(1).gather(1, (first // C) * n + rect)  # [B, hc*wc]

        # Equal counts: a uniformly random k-subset of each row, k = batch minimum.
        k = int(keep.sum(1).min())
        keys = torch.rand(B, hc * wc, generator=g, device=dev).masked_fill_(~keep, -1.0)
        pos = keys.topk(k, dim=1, sorted=False).indices.sort(dim=1).values
        return Masks(context=rect.gather(1, pos), targets=targets)
