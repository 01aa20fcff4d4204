"""A stack of pre-norm transformer blocks (timm's, fused scaled-dot-product attention) and the ViT init."""

from __future__ import annotations

import math
from functools import partial

import torch
from timm.models.vision_transformer import Block
from torch import nn

from jepa_lightning.nn.rope import RopeBlock


class TransformerStack(nn.Module):
    """`depth` timm blocks with linearly increasing drop-path, followed by a final LayerNorm (`norm_eps`: every
    LayerNorm's epsilon; 1e-6 as the official I-JEPA code, 1e-12 in Hugging Face's I-JEPA). `rope=True`: blocks
    whose attention rotates queries and keys by the tokens' grid positions (`nn.rope`, V-JEPA 2), given to
    `forward(x, pos)`."""

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path_rate: float = 0.0, norm_eps: float = 1e-6, rope: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by num_heads {num_heads}")
        norm = partial(nn.LayerNorm, eps=norm_eps)
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # python: meta-safe
        block = RopeBlock if rope else Block
        self.rope = rope
        self.blocks = nn.ModuleList(
            block(dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_path=r, norm_layer=norm)
            for r in rates
        )
        self.norm = norm(dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        if self.rope and pos is None:
            raise ValueError("a RoPE transformer needs the tokens' grid positions: forward(x, pos)")
        for block in self.blocks:
            x = block(x, pos) if self.rope else block(x)
        return self.norm(x)


def init_vit_weights(module: nn.Module, std: float = 0.02) -> None:
    """I-JEPA's initialisation: truncated-normal linear/conv weights, zero biases, unit norms, and the
    residual output projections of block i scaled by 1/sqrt(2 i)."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.Conv3d)):
            nn.init.trunc_normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    for stack in (m for m in module.modules() if isinstance(m, TransformerStack)):
        for i, block in enumerate(stack.blocks, start=1):
            block.attn.proj.weight.data.div_(math.sqrt(2.0 * i))
            block.mlp.fc2.weight.data.div_(math.sqrt(2.0 * i))
