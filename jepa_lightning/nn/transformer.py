"""A stack of pre-norm transformer blocks (`nn.block`: fused scaled-dot-product attention), optionally with
activation checkpointing, and the ViT init."""

from __future__ import annotations

import math
from functools import partial
from typing import Literal

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from jepa_lightning.nn.block import Block


def checkpointed_count(checkpoint_blocks: int | Literal["all"], depth: int) -> int:
    """How many of `depth` blocks `checkpoint_blocks` (a count, or "all") checkpoints; a clear error otherwise."""
    if checkpoint_blocks == "all":
        return depth
    if isinstance(checkpoint_blocks, bool) or not isinstance(checkpoint_blocks, int) or checkpoint_blocks < 0:
        raise ValueError(f"checkpoint_blocks must be a number of blocks >= 0 or 'all', got {checkpoint_blocks!r}")
    if checkpoint_blocks > depth:
        raise ValueError(f"checkpoint_blocks={checkpoint_blocks} but the stack has only {depth} blocks "
                         "(use 'all' to checkpoint every block)")
    return checkpoint_blocks


class TransformerStack(nn.Module):
    """`depth` blocks with linearly increasing drop-path, followed by a final LayerNorm (`norm_eps`: every
    LayerNorm's epsilon; 1e-6 as the official I-JEPA code, 1e-12 in Hugging Face's I-JEPA). `rope=True`: blocks
    whose attention rotates queries and keys by the tokens' grid positions (`nn.rope`, V-JEPA 2), given to
    `forward(x, pos)`.

    `checkpoint_blocks` (activation checkpointing; a count of blocks from the first, or "all"): while gradients are
    recorded, those blocks keep only their input for the backward pass and run their forward again there, so a
    block's activations (attention and the 4x-wide MLP: most of a ViT's training memory) exist for one block at a
    time, for about a third more compute (one more forward of those blocks). Gradients are the same (the recomputed
    forward replays drop-path's random draws; `tests/test_checkpoint_blocks.py`), and it composes with FSDP2 (each
    block is its own FSDP unit: the recomputation runs inside the unit's backward all-gather) and bf16 autocast.
    Forward-only passes (an EMA teacher, evaluation) are never checkpointed."""

    def __init__(self, dim: int, depth: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path_rate: float = 0.0, norm_eps: float = 1e-6, rope: bool = False,
                 checkpoint_blocks: int | Literal["all"] = 0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not divisible by num_heads {num_heads}")
        norm = partial(nn.LayerNorm, eps=norm_eps)
        rates = [drop_path_rate * i / max(depth - 1, 1) for i in range(depth)]  # python: meta-safe
        self.rope = rope
        self.checkpoint_blocks = checkpointed_count(checkpoint_blocks, depth)
        self.blocks = nn.ModuleList(
            Block(dim, num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_path=r, norm_layer=norm)
            for r in rates
        )
        self.norm = norm(dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None = None) -> torch.Tensor:
        if self.rope and pos is None:
            raise ValueError("a RoPE transformer needs the tokens' grid positions: forward(x, pos)")
        pos = pos if self.rope else None
        checkpointed = self.checkpoint_blocks if torch.is_grad_enabled() else 0
        for i, block in enumerate(self.blocks):
            x = checkpoint(block, x, pos, use_reentrant=False) if i < checkpointed else block(x, pos)
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


def compile_blocks(module: nn.Module, **options) -> int:
    """`torch.compile` `module` in place, the way FSDP2 wants it: each block of each `TransformerStack` on its own
    (blocks are FSDP units, and every block of a width shares one compiled graph); a network without transformer
    blocks (a CNN) is compiled whole. `options`: `torch.compile`'s (mode, dynamic, backend, ...). Parameter names
    and the state dict do not change (`nn.Module.compile`). Returns the number of modules compiled.

    The masks' token counts change every step; with torch's default (`dynamic=None`) the first change of a
    dimension recompiles once with that dimension symbolic, after which new counts reuse the graph
    (`benchmarks/memory.py` counts the graphs)."""
    units = [block for stack in module.modules() if isinstance(stack, TransformerStack) for block in stack.blocks]
    for unit in units or [module]:
        unit.compile(**options)
    return len(units) or 1

