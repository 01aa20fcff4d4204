"""Index operations on token sequences."""

from __future__ import annotations

import torch


def gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Select tokens by index (one gather): x [B, N, D], idx [B, K] -> [B, K, D]; idx [B, T, K] -> [B, T, K, D]."""
    if x.dim() != 3:
        raise ValueError(f"tokens must be [B, N, D], got {list(x.shape)}")
    if idx.dim() not in (2, 3):
        raise ValueError(f"token indices must be [B, K] or [B, T, K], got {list(idx.shape)}")
    if idx.size(0) != x.size(0):
        raise ValueError(f"batch sizes differ: tokens {x.size(0)}, indices {idx.size(0)}")
    flat = idx.reshape(idx.size(0), -1, 1).expand(-1, -1, x.size(-1))
    return torch.gather(x, 1, flat).reshape(*idx.shape, x.size(-1))
