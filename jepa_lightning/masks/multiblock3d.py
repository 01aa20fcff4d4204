"""V-JEPA multi-block masks on a 3D token grid, batched and vectorized.

The grid is the TOKEN grid ``T x H x W`` (frames / tubelet, height / patch, width / patch);
indices are flat row-major over ``(t, h, w)``: ``(t H + h) W + w`` in ``[0, N)``, ``N = T H W``.

Sampling rule (V-JEPA, Bardes et al. 2024), per call:

1. ``u_t, u_s, u_a = rand(3)`` (first draw from the generator), three independent uniforms:
   ``t = max(1, int(T s_t))`` with ``s_t = lo + u_t (hi - lo)`` from ``temporal_scale``;
   ``area = int(H W s)`` with ``s`` from ``spatial_scale`` and ``u_s``; ``a`` from ``aspect_ratio`` and
   ``u_a``; ``h = round(sqrt(area a))``, ``w = round(sqrt(area / a))``, clipped to ``[1, H]``,
   ``[1, W]``. Every block of every sample of the batch has this size ``t x h x w``.
2. Each sample draws ``tries`` candidates of ``num_blocks`` blocks, each block's corner uniform in
   ``[0, T - t] x [0, H - h] x [0, W - w]`` (inclusive, so every token can be covered). A candidate's
   target is the union of its blocks, its context the complement. The sample takes the first
   candidate whose context has ``>= min_keep`` tokens (so, unless all ``tries`` fail, exactly the
   reference's rejection sampling). If none has, relaxation level ``l = 1, 2, ...`` looks at the same
   candidates with their last ``l`` blocks dropped, in (level, candidate) order; level
   ``num_blocks - 1`` keeps one block, which always leaves ``min_keep`` tokens: the first call raises
   ``ValueError`` when the largest reachable block would not (so a run never fails at a random later
   step).
3. Equal lengths: the targets are cut to the batch minimum count, the contexts to the batch minimum
   (and to ``max_keep``), each keeping a uniformly random subset per row; rows sorted ascending.
   Context and target never overlap. ``targets`` is ``[B, 1, Kt]`` (one target set per sample).

Generator draws, in order: ``rand(3)``; block starts, tops, lefts (``randint``, ``[B, tries,
num_blocks]`` each); ``rand(B, N)`` keys for the cut.

With ``temporal_scale=(1, 1)`` (V-JEPA's setting) every block is a tube through all time steps, so the
target is the same spatial set at every time step.

V-JEPA's default pair (``configs/pretrain/vitl16.yaml``; the method holds a list of both):
short-range ``MultiBlockMask3D(num_blocks=8, spatial_scale=(0.15, 0.15))`` and long-range
``MultiBlockMask3D(num_blocks=2, spatial_scale=(0.7, 0.7))``, both with ``aspect_ratio=(0.75, 1.5)``
and full temporal extent. On the 8x14x14 grid of a 16-frame 224px clip (tubelet 2, patch 16) the
target union covers on average 0.63 (short-range) and 0.81 (long-range) of the tokens, 0.72 over the
pair (the reference code measures the same). The encoder sees fewer tokens because contexts are cut
to the batch minimum: at batch 24-32, 1 - Kc/N is about 0.77 and 0.94, 0.85 over the pair, which is
roughly the paper's "~90%".

Differences from the reference (facebookresearch/jepa ``src/masks/multiblock3d.py``): block
positions come from the passed generator too (the reference seeds only the block size, from a step
counter, and places blocks with the global RNG); all work is bounded (``tries`` candidates plus
relaxation instead of an unbounded while-loop) and impossible requests raise ``ValueError``;
``min_keep`` generalizes the reference's non-empty-context condition (``min_keep=1``); ``h, w`` are
clipped below at 1 (the reference could make empty blocks on tiny grids); truncation keeps a random
subset instead of the first indices, which in the reference biases the kept context and target
tokens toward early time steps (and top rows); the reference's ``max_temporal_keep`` (context limited
to the first frames, 1.0 in all its configs) is not implemented. Not a difference: the reference
already draws corners up to the last position (I-JEPA's 2D reference did not).
"""

from __future__ import annotations

import math

import torch

from .multiblock import _aspect_range, _int_at_least, _resolve_device, _scale_range
from .utils import Masks

__all__ = ["MultiBlockMask3D"]


def _grid3(grid_size: tuple[int, int, int]) -> tuple[int, int, int]:
    try:
        duration, height, width = grid_size
    except (TypeError, ValueError):
        raise ValueError(f"grid_size must be a triple (T, H, W) of integers, got {grid_size!r}") from None
    return (
        _int_at_least("grid T", duration, 1),
        _int_at_least("grid height", height, 1),
        _int_at_least("grid width", width, 1),
    )


def _lerp(pair: tuple[float, float], u: float) -> float:
    return pair[0] + u * (pair[1] - pair[0])


def _plane_size(area: int, a: float, height: int, width: int) -> tuple[int, int]:
    h = round(math.sqrt(area * a))
    w = round(math.sqrt(area / a))
    return min(max(h, 1), height), min(max(w, 1), width)


def _largest_plane(area: int, aspect: tuple[float, float], height: int, width: int) -> tuple[int, int]:
    """The largest ``h x w`` over all aspect ratios in ``aspect``, for a fixed ``area``.

    ``h`` and ``w`` are step functions of ``a`` that change only where ``sqrt(area a)`` or
    ``sqrt(area / a)`` crosses ``k + 1/2``, so evaluating at those points and between them covers every
    reachable size (and possibly a few reached only at single points, which errs on the safe side).
    """
    lo, hi = aspect
    if area == 0 or lo == hi:
        return _plane_size(area, lo, height, width)
    cuts = {lo, hi}
    for k in range(max(height, width) + 1):
        for a in ((k + 0.5) ** 2 / area, area / (k + 0.5) ** 2):
            if lo < a < hi:
                cuts.add(a)
    cuts = sorted(cuts)
    points = cuts + [(x + y) / 2 for x, y in zip(cuts, cuts[1:])]
    return max((_plane_size(area, a, height, width) for a in points), key=lambda hw: hw[0] * hw[1])


def _span(start: torch.Tensor, size: int, length: int) -> torch.Tensor:
    """``[..., length]`` booleans: ``start <= i < start + size``."""
    i = torch.arange(length, device=start.device)
    return (i >= start[..., None]) & (i < start[..., None] + size)


class MultiBlockMask3D:
    """V-JEPA multi-block 3D mask generator (see the module docstring for the rule).

    Args:
        num_blocks: target blocks per sample; the target is their union.
        spatial_scale: range of a block's spatial area as a fraction of ``H x W``, within (0, 1].
        temporal_scale: range of a block's temporal extent as a fraction of ``T``, within (0, 1].
        aspect_ratio: range of a block's aspect ratio h / w, positive.
        min_keep: least number of context tokens per sample.
        max_keep: if given, contexts are cut to at most this many tokens (``>= min_keep``).
        tries: candidate placements drawn per sample before relaxing (dropping blocks).

    Calling it with ``(batch_size, (T, H, W), generator)`` returns :class:`Masks` with
    ``context [B, Kc]`` and ``targets [B, 1, Kt]``, flat row-major indices into the ``T x H x W``
    token grid. All randomness comes from ``generator``; with ``generator=None`` torch's global RNG
    for ``device`` is used.
    """

    def __init__(
        self,
        num_blocks: int = 8,
        spatial_scale: tuple[float, float] = (0.15, 0.15),
        temporal_scale: tuple[float, float] = (1.0, 1.0),
        aspect_ratio: tuple[float, float] = (0.75, 1.5),
        min_keep: int = 1,
        max_keep: int | None = None,
        tries: int = 20,
    ) -> None:
        self.num_blocks = _int_at_least("num_blocks", num_blocks, 1)
        self.min_keep = _int_at_least("min_keep", min_keep, 1)
        self.tries = _int_at_least("tries", tries, 1)
        if max_keep is not None:
            max_keep = _int_at_least("max_keep", max_keep, 1)
            if max_keep < self.min_keep:
                raise ValueError(f"max_keep must be >= min_keep={self.min_keep} or None, got {max_keep!r}")
        self.max_keep = max_keep
        self.spatial_scale = _scale_range("spatial_scale", spatial_scale)
        self.temporal_scale = _scale_range("temporal_scale", temporal_scale)
        self.aspect_ratio = _aspect_range("aspect_ratio", aspect_ratio)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_blocks={self.num_blocks}, spatial_scale={self.spatial_scale}, "
            f"temporal_scale={self.temporal_scale}, aspect_ratio={self.aspect_ratio}, "
            f"min_keep={self.min_keep}, max_keep={self.max_keep}, tries={self.tries})"
        )

    def _block_size(
        self, u: tuple[float, float, float], grid_size: tuple[int, int, int]
    ) -> tuple[int, int, int]:
        """Block size ``(t, h, w)`` for the uniforms ``u = (u_t, u_s, u_a)`` on a validated grid."""
        duration, height, width = grid_size
        u_t, u_s, u_a = u
        t = min(max(1, int(duration * _lerp(self.temporal_scale, u_t))), duration)
        area = int(height * width * _lerp(self.spatial_scale, u_s))
        return (t, *_plane_size(area, _lerp(self.aspect_ratio, u_a), height, width))

    def _check_block(self, size: tuple[int, int, int], grid: tuple[int, int, int], what: str) -> None:
        n, vol = math.prod(grid), math.prod(size)
        if n - vol < self.min_keep:
            raise ValueError(
                f"MultiBlockMask3D: min_keep={self.min_keep} cannot always be met: a single block of the {what} size "
                f"(t x h x w = {size[0]}x{size[1]}x{size[2]} = {vol} tokens) leaves {n - vol} of the "
                f"{grid[0]}x{grid[1]}x{grid[2]}={n} token grid with spatial_scale={self.spatial_scale}, "
                f"temporal_scale={self.temporal_scale}, aspect_ratio={self.aspect_ratio}; "
                f"lower min_keep, spatial_scale or temporal_scale"
            )

    def __call__(
        self,
        batch_size: int,
        grid_size: tuple[int, int, int],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Masks:
        grid = duration, height, width = _grid3(grid_size)
        B = _int_at_least("batch_size", batch_size, 1)
        dev = _resolve_device(generator, device)
        g, C, nb, n = generator, self.tries, self.num_blocks, math.prod(grid)

        # Even the largest reachable block must leave min_keep tokens: a configuration that cannot always
        # be met fails on the first call, never at a random later step.
        t_max = max(1, int(duration * self.temporal_scale[1]))
        area_max = int(height * width * self.spatial_scale[1])
        self._check_block(
            (t_max, *_largest_plane(area_max, self.aspect_ratio, height, width)), grid, "largest reachable"
        )
        u = torch.rand(3, generator=g, device=dev).tolist()
        t, h, w = self._block_size(u, grid)

        # Candidates: block corners [B, C, nb] per axis (start, top, left).
        corners = [
            torch.randint(0, length - size + 1, (B, C, nb), generator=g, device=dev)
            for length, size in ((duration, t), (height, h), (width, w))
        ]

        tubes, u8 = t == duration, torch.uint8

        def boxes(st: torch.Tensor, top: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
            """Blocks with these corners as uint8 ``[..., T or 1, H*W]`` (1 for tubes, t == T).

            A block is a time span x plane rectangle; uint8 products are much faster than broadcast
            bool ops on CPU."""
            plane = _span(top, h, height).to(u8)[..., :, None] * _span(left, w, width).to(u8)[..., None, :]
            plane = plane.flatten(-2)[..., None, :]
            return plane if tubes else _span(st, t, duration).to(u8)[..., :, None] * plane

        blocks = boxes(*(c.permute(2, 0, 1).reshape(nb, B * C) for c in corners))  # [nb, B*C, T|1, H*W]

        def context_sizes(levels: int) -> torch.Tensor:
            """``[B, levels, C]``: context size of every candidate at relaxation levels 0..levels-1."""
            union = torch.zeros_like(blocks[0])
            sizes = []
            for j in range(nb):  # a loop over blocks, not samples
                union |= blocks[j]
                if j >= nb - levels:  # the union of blocks 0..j is relaxation level nb - 1 - j
                    sizes.append(union.view(B, C, -1).sum(-1, dtype=torch.int32))
            return n - torch.stack(sizes[::-1], 1) * (duration if tubes else 1)

        # First valid (level, candidate); level l uses the first nb - l blocks, level nb - 1 (one block)
        # is always valid (checked above). Relaxation is rare: compute its levels only when needed.
        valid = context_sizes(1) >= self.min_keep  # [B, 1, C]
        if not bool(valid.any(2).all()):
            valid = context_sizes(nb) >= self.min_keep  # [B, nb, C]
        first = valid.flatten(1).to(u8).argmax(1)  # [B]
        level, cand = first // C, first % C
        active = torch.arange(nb, device=dev) < (nb - level)[:, None]  # [B, nb]
        chosen = boxes(*(c[torch.arange(B, device=dev), cand] for c in corners))  # [B, nb, T|1, H*W]
        target = (chosen * active[:, :, None, None]).amax(1).bool().expand(B, duration, -1).reshape(B, n)

        # Equal lengths: a uniformly random k-subset of each row (disjoint sets, so shared keys are fine).
        n_target = target.sum(1)
        kt = int(n_target.min())
        kc = int((n - n_target).min())
        if self.max_keep is not None:
            kc = min(kc, self.max_keep)
        keys = torch.rand(B, n, generator=g, device=dev)
        tgt = keys.masked_fill(~target, -1.0).topk(kt, dim=1, sorted=False).indices.sort(dim=1).values
        ctx = keys.masked_fill(target, -1.0).topk(kc, dim=1, sorted=False).indices.sort(dim=1).values
        return Masks(context=ctx, targets=tgt[:, None])
