"""The narrow JEPA predictor: context tokens + mask tokens at the target positions -> target latents."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from jepa_lightning.nn.pos_embed import sincos_pos_embed
from jepa_lightning.nn.rope import grid_positions
from jepa_lightning.nn.tokens import gather_tokens
from jepa_lightning.nn.transformer import TransformerStack, init_vit_weights


class TransformerPredictor(nn.Module):
    """Project context tokens to `predictor_dim`, append one learned mask token per target position (plus
    that position's sin-cos embedding), run a transformer, and project the target tokens back to
    `out_dim` (default `embed_dim`: the encoder's own latents; another width to predict a different target, e.g. a
    smaller frozen teacher's latents (SALT) or pixels (a reconstruction decoder)).

    Several target blocks are predicted in ONE batched pass: with `target_idx` [B, T, K] the context is
    projected once, repeated per block, and the T blocks are stacked along the batch, so each block's mask
    tokens see the context and each other but not the other blocks (as in I-JEPA). `mask_token_id`
    chooses among `num_mask_tokens` learned tokens (V-JEPA keeps one per mask generator; it initialises them at
    zero: `zero_init_mask_tokens`).

    `pos_embed="rope"` (V-JEPA 2): no position table; every attention layer rotates queries and keys by the
    context and target tokens' grid positions (`nn.rope`). `"stored"`: the sin-cos table kept in the state dict, so a
    published predictor's own table is loaded. `checkpoint_blocks`: activation checkpointing of the first n blocks or
    "all" (`TransformerStack`). `pretrained`: a published predictor (an official checkpoint file or a
    Hugging Face V-JEPA 2 folder, `jepa_lightning.pretrained.load_predictor_into`) whose weights fill this one.
    """

    def __init__(self, grid_size: Sequence[int] = (14, 14), embed_dim: int = 768, predictor_dim: int = 384,
                 depth: int = 6, num_heads: int = 12, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path_rate: float = 0.0, num_mask_tokens: int = 1, out_dim: int | None = None,
                 zero_init_mask_tokens: bool = False, init_std: float = 0.02,
                 pos_embed: Literal["sincos", "stored", "rope"] = "sincos",
                 checkpoint_blocks: int | Literal["all"] = 0, pretrained: str | None = None) -> None:
        super().__init__()
        if pos_embed not in ("sincos", "stored", "rope"):
            raise ValueError(f"pos_embed must be 'sincos', 'stored' or 'rope', got {pos_embed!r}")
        self.rope = pos_embed == "rope"
        self.grid_size = tuple(int(g) for g in grid_size)
        if num_mask_tokens < 1:
            raise ValueError(f"num_mask_tokens must be >= 1, got {num_mask_tokens}")
        self.embed_dim, self.predictor_dim = embed_dim, predictor_dim
        self.out_dim = embed_dim if out_dim is None else int(out_dim)
        self.num_mask_tokens = num_mask_tokens
        self.embed = nn.Linear(embed_dim, predictor_dim)
        self.mask_tokens = nn.Parameter(torch.zeros(num_mask_tokens, predictor_dim))
        table = torch.zeros(1, math.prod(self.grid_size), predictor_dim) if self.rope else \
            sincos_pos_embed(self.grid_size, predictor_dim)[None]
        self.register_buffer("pos_embed", table, persistent=pos_embed == "stored")  # RoPE: adds 0
        self.transformer = TransformerStack(predictor_dim, depth, num_heads, mlp_ratio, qkv_bias, drop_path_rate,
                                            rope=self.rope, checkpoint_blocks=checkpoint_blocks)
        self.proj = nn.Linear(predictor_dim, self.out_dim)
        init_vit_weights(self, init_std)
        if not zero_init_mask_tokens:
            nn.init.trunc_normal_(self.mask_tokens, std=init_std)
        if pretrained is not None:
            from jepa_lightning.pretrained import load_predictor_into

            load_predictor_into(self, pretrained)

    def forward(self, z: torch.Tensor, context_idx: torch.Tensor, target_idx: torch.Tensor,
                mask_token_id: int = 0) -> torch.Tensor:
        """z [B, Kc, embed_dim] at positions context_idx [B, Kc]; target_idx [B, K] or [B, T, K].
        Returns [B, K, out_dim] or [B, T, K, out_dim]."""
        if z.size(-1) != self.embed_dim:
            raise ValueError(f"predictor expects encoder width {self.embed_dim}, got {z.size(-1)}")
        if not 0 <= mask_token_id < self.num_mask_tokens:
            raise ValueError(f"mask_token_id {mask_token_id} out of range: the predictor has {self.num_mask_tokens} "
                             "mask token(s) (set predictor num_mask_tokens to the number of mask generators)")
        multi = target_idx.dim() == 3
        b = z.size(0)
        t = target_idx.size(1) if multi else 1
        pos = self.pos_embed.expand(b, -1, -1)
        ctx = self.embed(z) + gather_tokens(pos, context_idx)                   # [B, Kc, P]
        tgt = self.mask_tokens[mask_token_id] + gather_tokens(pos, target_idx)  # [B, (T,) K, P]
        index = torch.cat([context_idx[:, None].expand(-1, t, -1), target_idx.view(b, t, -1)], -1)  # [B, T, Kc+K]
        if multi:
            ctx = ctx.repeat_interleave(t, dim=0)                               # [B*T, Kc, P]
            tgt = tgt.flatten(0, 1)                                             # [B*T, K, P]
        k = tgt.size(1)
        tokens = torch.cat([ctx, tgt], dim=1)
        pos = grid_positions(index.flatten(0, 1), self.grid_size) if self.rope else None
        out = (self.transformer(tokens, pos) if self.rope else self.transformer(tokens))[:, -k:]
        # unflatten before the projection: the output is a fresh tensor, not a view (FSDP2 warns on views)
        return self.proj(out.unflatten(0, (b, t)) if multi else out)
