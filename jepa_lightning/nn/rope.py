"""Rotary position embeddings (RoPE) over a (frames, rows, columns) token grid, as V-JEPA 2 applies them.

V-JEPA 2 (facebookresearch/vjepa2 `RoPEAttention`; Hugging Face `VJEPA2RopeAttention`) adds no position table
to the tokens: inside every attention layer it rotates each head's queries and keys by the token's position on
the grid. The head dimension is split into three equal parts of ``2 * ((head_dim // 3) // 2)`` features, rotated
by the frame, the row and the column index; the remaining features (``head_dim`` mod 6 at most) stay as they are.
An image is a one-frame grid (frame index 0: its part is not rotated), which is what V-JEPA 2 does with images.

The rotation is the official one, reproduced exactly because published weights were trained with it: features
are paired as (0, 1), (2, 3), ..., and feature ``j`` of a part of width ``D`` turns by ``pos * 10000^(-(j mod
D/2) / (D/2))``: the two features of a pair use different frequencies once ``D > 2``, unlike the textbook RoPE.
Positions are grid indices of the kept tokens, so a masked context keeps each token's own position. The attention
that applies it is `nn.block.Attention` (given positions).
"""

from __future__ import annotations

import torch


def rope_part(head_dim: int) -> int:
    """Features of a head rotated by each of the three axes (frame, row, column)."""
    return 2 * ((head_dim // 3) // 2)


def grid_positions(index: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
    """(frame, row, column) of flat token indices `index` [..., N] on `grid` ((T, H, W), or (H, W) for images:
    frame 0), as float [..., N, 3]."""
    frames, rows, cols = (1, *grid) if len(grid) == 2 else grid
    index = index.long()
    per_frame = rows * cols
    frame, rest = index // per_frame, index % per_frame
    return torch.stack([frame, rest // cols, rest % cols], -1).float()


def rotate(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """`x` [..., N, D] turned by positions `pos` [..., N] (broadcast against x's leading dims), the official way
    (see the module docstring)."""
    d = x.size(-1)
    omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=x.dtype, device=x.device) / (d / 2.0))
    freq = pos.to(x.dtype).unsqueeze(-1) * omega                      # [..., N, D/2]
    sin, cos = freq.sin(), freq.cos()
    sin, cos = torch.cat([sin, sin], -1), torch.cat([cos, cos], -1)   # feature j uses frequency j mod D/2
    pairs = x.unflatten(-1, (-1, 2))
    turned = torch.stack([-pairs[..., 1], pairs[..., 0]], -1).flatten(-2)
    return x * cos + turned * sin


def apply_rope(qk: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Queries or keys [B, heads, N, head_dim] rotated by grid positions `pos` [B or 1, N, 3]."""
    part, parts, start = rope_part(qk.size(-1)), [], 0
    for axis in range(3):
        parts.append(rotate(qk[..., start:start + part], pos[:, None, :, axis]))
        start += part
    return torch.cat([*parts, qk[..., start:]], -1)


__all__ = ["apply_rope", "grid_positions", "rope_part", "rotate"]
