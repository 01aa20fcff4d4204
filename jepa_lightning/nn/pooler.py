"""Attentive pooling: learned queries cross-attend to a token sequence (V-JEPA's frozen-evaluation pooler)."""

from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from jepa_lightning.nn.block import Block, Mlp
from jepa_lightning.nn.transformer import init_vit_weights


class CrossAttention(nn.Module):
    """Multi-head attention of queries q [B, Q, D] over tokens x [B, N, D] (fused SDPA)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        b, nq, d = q.shape
        h = self.num_heads
        q = self.q(q).reshape(b, nq, h, d // h).transpose(1, 2)                       # [B, h, Q, d/h]
        k, v = self.kv(x).reshape(b, x.size(1), 2, h, d // h).permute(2, 0, 3, 1, 4)  # 2 x [B, h, N, d/h]
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, nq, d))


class CrossAttentionBlock(nn.Module):
    """q <- q + xattn(q, norm(x)); q <- q + mlp(norm(q)). The queries are not normalised before attending,
    as in V-JEPA's pooler."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True) -> None:
        super().__init__()
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.norm1 = norm(dim)
        self.xattn = CrossAttention(dim, num_heads, qkv_bias)
        self.norm2 = norm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        q = q + self.xattn(q, self.norm1(x))
        return q + self.mlp(self.norm2(q))


class AttentivePooler(nn.Module):
    """[B, N, D] tokens -> [B, num_queries, D]: `depth - 1` self-attention blocks over the tokens (`nn.block`,
    no position information added), then `num_queries` learned query tokens cross-attend to them.

    Without position information the result does not depend on the order of the tokens, so the same pooler
    serves images, clips, and any subset of tokens. Initialised like the encoders (truncated normal, residual
    output projections of block i scaled by 1/sqrt(2 i)).
    """

    def __init__(self, embed_dim: int, num_queries: int = 1, num_heads: int = 16, mlp_ratio: float = 4.0,
                 depth: int = 1, qkv_bias: bool = True, init_std: float = 0.02) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"AttentivePooler depth counts the cross-attention block, so must be >= 1, got {depth}")
        if num_queries < 1:
            raise ValueError(f"num_queries must be >= 1, got {num_queries}")
        self.embed_dim, self.num_queries = embed_dim, num_queries
        self.query_tokens = nn.Parameter(torch.zeros(1, num_queries, embed_dim))
        norm = partial(nn.LayerNorm, eps=1e-6)
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, norm_layer=norm)
            for _ in range(depth - 1)
        )
        self.cross_attention_block = CrossAttentionBlock(embed_dim, num_heads, mlp_ratio, qkv_bias)
        init_vit_weights(self, init_std)
        nn.init.trunc_normal_(self.query_tokens, std=init_std)
        residual_outputs = [(b.attn.proj, b.mlp.fc2) for b in self.blocks]
        residual_outputs.append((self.cross_attention_block.xattn.proj, self.cross_attention_block.mlp.fc2))
        with torch.no_grad():
            for i, layers in enumerate(residual_outputs, start=1):
                for layer in layers:
                    layer.weight.div_(math.sqrt(2.0 * i))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.size(-1) != self.embed_dim:
            raise ValueError(f"AttentivePooler expects tokens [B, N, {self.embed_dim}], got {list(x.shape)}")
        for block in self.blocks:
            x = block(x)
        q = self.query_tokens.expand(x.size(0), -1, -1)
        return self.cross_attention_block(q, x)
