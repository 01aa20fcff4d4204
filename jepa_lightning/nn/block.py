"""The pre-norm transformer block every ViT here is built from: LayerNorm -> multi-head self-attention ->
residual, LayerNorm -> MLP -> residual, with per-sample drop-path (stochastic depth).

Written out rather than imported from timm so that a run does not load timm's model registry (importing any timm
module registers every timm architecture: ~0.2 s and ~23 MB in every process). It is timm's `Block` computation
for timm's default arguments, op for op, under timm's layer names (`norm1`, `attn.qkv`, `attn.proj`, `norm2`,
`mlp.fc1`, `mlp.fc2`), so official and Hugging Face checkpoints and ours load unchanged and the outputs are
bit-identical (`tests/test_block.py`, with the same random draws for drop-path). Attention is fused
scaled-dot-product attention; with grid positions (`forward(x, pos)`) queries and keys are rotated first (RoPE,
V-JEPA 2: `nn.rope`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from jepa_lightning.nn.rope import apply_rope


def drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Zero whole samples of the residual branch `x` with probability `rate` (scaling the rest by 1/(1-rate))."""
    if rate == 0.0 or not training:
        return x
    keep = 1.0 - rate
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask.div_(keep) if keep > 0.0 else x * mask


class DropPath(nn.Module):
    def __init__(self, rate: float = 0.0) -> None:
        super().__init__()
        self.rate = float(rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.rate, self.training)

    def extra_repr(self) -> str:
        return f"rate={self.rate}"


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int, out_dim: int | None = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out_dim or dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention over [B, N, dim]: one fused `qkv` projection, SDPA, output `proj`; with grid
    positions `pos` [B or 1, N, 3], queries and keys are rotated by them (RoPE) before attending."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by num_heads {num_heads}")
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if pos is not None:
            q, k = apply_rope(q, pos), apply_rope(k, pos)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """x <- x + drop_path(attn(norm1(x), pos)); x <- x + drop_path(mlp(norm2(x))). MLP width: int(dim * mlp_ratio)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path: float = 0.0, norm_layer: Callable[[int], nn.Module] = nn.LayerNorm) -> None:
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.drop_path1 = DropPath(drop_path)
        self.norm2 = norm_layer(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path2 = DropPath(drop_path)

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.drop_path1(self.attn(self.norm1(x), pos))
        return x + self.drop_path2(self.mlp(self.norm2(x)))
