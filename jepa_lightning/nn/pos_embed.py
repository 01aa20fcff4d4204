"""Fixed sine-cosine position embeddings over 1-D, 2-D and 3-D token grids."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def sincos_1d(positions: torch.Tensor, dim: int, base: float = 10000.0) -> torch.Tensor:
    """[N] positions -> [N, dim]: sin on the first half of the channels, cos on the second half; channel pair k
    turns at frequency base ** (-k / (dim / 2))."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding needs an even dimension, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0)
    omega = 1.0 / base**omega
    angles = positions.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def _axis_dims(dim: int, ndim: int) -> list[int]:
    """Channels per axis. 2-D: half each (MAE / I-JEPA). 3-D: V-JEPA's split, the two spatial axes get
    ceil(dim/6)*2 channels each and time gets the rest."""
    if ndim == 1:
        return [dim]
    if ndim == 2:
        if dim % 4:
            raise ValueError(f"2-D sin-cos embedding needs a dimension divisible by 4, got {dim}")
        return [dim // 2, dim // 2]
    if ndim == 3:
        spatial = int(math.ceil(dim / 6) * 2)
        temporal = dim - 2 * spatial
        if temporal <= 0 or temporal % 2:
            raise ValueError(f"3-D sin-cos embedding cannot split dimension {dim} into even parts")
        return [temporal, spatial, spatial]
    raise ValueError(f"grid must have 1, 2 or 3 axes, got {ndim}")


def sincos_pos_embed(grid_size: Sequence[int], dim: int) -> torch.Tensor:
    """Embedding of every cell of a (T,) H, W grid, flattened in row-major order: [prod(grid), dim] float32.

    Each axis gets its own 1-D embedding of its coordinate; the per-axis embeddings are concatenated.
    """
    grid_size = tuple(int(g) for g in grid_size)
    coords = torch.meshgrid(*[torch.arange(g) for g in grid_size], indexing="ij")
    parts = [sincos_1d(c.reshape(-1), d) for c, d in zip(coords, _axis_dims(dim, len(grid_size)))]
    return torch.cat(parts, dim=1).float()
