"""Index operations on token sequences."""

from __future__ import annotations

import torch


def gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Select tokens by index: x [B, N, D], idx [B, K] -> [B, K, D]; idx [B, T, K] -> [B, T, K, D]."""
    if idx.dim() == 2:
        return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.size(-1)))
    if idx.dim() == 3:
        b, t, k = idx.shape
        return gather_tokens(x, idx.reshape(b, t * k)).reshape(b, t, k, x.size(-1))
    raise ValueError(f"token indices must be [B, K] or [B, T, K], got {list(idx.shape)}")
