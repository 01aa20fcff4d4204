"""Tabular blocks for T-JEPA: a per-feature tokenizer, a transformer encoder over feature tokens with
regularization ([REG]) tokens, and the predictor that fills in target feature latents.

A row of F = num_numeric + n_categorical features becomes F tokens of width D (FT-Transformer's feature
tokenizer): numeric feature j -> x_j * W_j + b_j, categorical feature j -> its own embedding row for the code.
Every column has its own weight/bias (or embedding table), so a token already says which column it comes from;
by default the encoder adds no separate position embedding. The reference adds a fixed sin-cos table (base 100,
amplitude 1) to the [CLS] + feature tokens: one more constant per column on top of the learned bias, the same
function class, but not the same training: at init the table is ~5x the size of x * w + b, so the tokens (and
T-JEPA's targets) are mostly position (`TabularEncoder(pos_embed="sincos")` reproduces it; measured in
benchmarks/fidelity/t_jepa_parity.py). R learned [REG] tokens are prepended to the tokens of every row, for the
context encoder and the target encoder alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from jepa_lightning.nn.pos_embed import sincos_1d
from jepa_lightning.nn.tokens import gather_tokens
from jepa_lightning.nn.transformer import TransformerStack, init_vit_weights


def _cardinalities(cardinalities: Sequence[int]) -> list[int]:
    cards = [int(c) for c in cardinalities]
    bad = [c for c in cards if c < 1]
    if bad:
        raise ValueError(f"cardinalities must be >= 1 (index 0 is reserved for unknown/missing), got {cards}")
    return cards


class FeatureTokenizer(nn.Module):
    """num [B, num_numeric] float, cat [B, n_cat] int -> tokens [B, num_numeric + n_cat, dim].

    Numeric token j: `num[:, j] * weight[j] + bias[j]`. Categorical token j: row `offsets[j] + cat[:, j]` of
    one embedding table holding every column's categories (`cardinalities[j]` rows for column j, code 0 being
    the reserved unknown/missing category). Numeric tokens come first, then categorical ones.
    """

    def __init__(self, num_numeric: int, cardinalities: list[int], dim: int) -> None:
        super().__init__()
        if num_numeric < 0:
            raise ValueError(f"num_numeric must be >= 0, got {num_numeric}")
        self.cardinalities = _cardinalities(cardinalities)
        if num_numeric + len(self.cardinalities) == 0:
            raise ValueError("a row needs at least one feature: num_numeric=0 and cardinalities=[]")
        self.num_numeric, self.dim = int(num_numeric), int(dim)
        self.weight = nn.Parameter(torch.empty(num_numeric, dim))
        self.bias = nn.Parameter(torch.empty(num_numeric, dim))
        self.embedding = nn.Embedding(max(sum(self.cardinalities), 1), dim)
        offsets = torch.tensor([0, *self.cardinalities[:-1]], dtype=torch.long).cumsum(0)[:len(self.cardinalities)]
        self.register_buffer("offsets", offsets, persistent=False)
        bound = dim ** -0.5  # as nn.Linear's default (and the reference's kaiming-uniform) for fan-in dim
        for p in (self.weight, self.bias, self.embedding.weight):
            nn.init.uniform_(p, -bound, bound)

    @property
    def num_features(self) -> int:
        return self.num_numeric + len(self.cardinalities)

    def forward(self, num: torch.Tensor, cat: torch.Tensor | None = None) -> torch.Tensor:
        tokens = num.unsqueeze(-1) * self.weight + self.bias                      # [B, Fn, D]
        if self.cardinalities:
            tokens = torch.cat([tokens, self.embedding(cat + self.offsets)], dim=1)  # [B, Fn + Fc, D]
        return tokens


class TabularEncoder(nn.Module):
    """Feature tokenizer -> [REG] tokens prepended -> pre-norm transformer -> final LayerNorm.

    `pos_embed="sincos"` adds the reference's fixed table (`sincos_1d` with base 100, positions 0 .. R + F - 1 over
    the [REG] tokens, then the features) to the tokens before the transformer; "none" (default) adds nothing.

    `forward(num, cat, keep)`: `keep` [B, K] holds feature indices in [0, F) to encode (the JEPA context);
    only those feature tokens enter the transformer, after the R [REG] tokens, which are always kept.
    Returns [B, R + K, embed_dim] ([B, R + F, embed_dim] when `keep` is None). Through the CLI, `num_numeric` and
    `cardinalities` come from the TabularDataModule (`jepa_lightning/links.py`).
    """

    def __init__(self, num_numeric: int = 0, cardinalities: list[int] | None = None, embed_dim: int = 64,
                 depth: int = 4, num_heads: int = 4, num_reg_tokens: int = 1, mlp_ratio: float = 4.0,
                 qkv_bias: bool = True, drop_path_rate: float = 0.0, init_std: float = 0.02,
                 pos_embed: Literal["none", "sincos"] = "none") -> None:
        super().__init__()
        if num_reg_tokens < 0:
            raise ValueError(f"num_reg_tokens must be >= 0, got {num_reg_tokens}")
        if pos_embed not in ("none", "sincos"):
            raise ValueError(f"pos_embed must be 'none' or 'sincos', got {pos_embed!r}")
        self.tokenizer = FeatureTokenizer(num_numeric, list(cardinalities or []), embed_dim)
        self.num_numeric, self.cardinalities = self.tokenizer.num_numeric, self.tokenizer.cardinalities
        self.num_features, self.num_reg_tokens, self.embed_dim = self.tokenizer.num_features, num_reg_tokens, embed_dim
        self.reg_tokens = nn.Parameter(torch.zeros(1, num_reg_tokens, embed_dim))
        self.transformer = TransformerStack(embed_dim, depth, num_heads, mlp_ratio, qkv_bias, drop_path_rate)
        init_vit_weights(self, init_std)
        nn.init.trunc_normal_(self.reg_tokens, std=init_std)
        table = (sincos_1d(torch.arange(num_reg_tokens + self.num_features), embed_dim, base=100.0).float()[None]
                 if pos_embed == "sincos" else None)
        self.register_buffer("pos_table", table, persistent=False)

    def forward(self, num: torch.Tensor, cat: torch.Tensor | None = None, keep: torch.Tensor | None = None,
                keep_over_all: bool = False) -> torch.Tensor:
        """`keep_over_all`: `keep` indexes the R + F tokens ([REG] first), the official code's indexing (see
        `TJEPA(reference_indexing=True)`); only the kept tokens enter, [B, K, embed_dim]."""
        tokens = self.tokenizer(num, cat)
        reg = self.reg_tokens.expand(tokens.size(0), -1, -1)
        if self.pos_table is not None:  # [REG] slots first, then the features
            r = self.num_reg_tokens
            reg, tokens = reg + self.pos_table[:, :r], tokens + self.pos_table[:, r:]
        if keep is not None and not keep_over_all:
            tokens = gather_tokens(tokens, keep)
        tokens = torch.cat([reg, tokens], dim=1)
        if keep is not None and keep_over_all:
            tokens = gather_tokens(tokens, keep)
        return self.transformer(tokens)


class TabularPredictor(nn.Module):
    """T-JEPA's transformer predictor.

    Context latents [B, R + Kc, embed_dim] (the [REG] outputs first, then the context features) are projected to
    `predictor_dim` and get the position embedding of their slot (R [REG] slots, then F feature slots); for each
    of T target masks, Kt mask tokens get the position embeddings of the target features. Context and mask
    tokens go through a transformer together (the T masks batched: each sees the context, not the other masks),
    and the outputs at the mask tokens are projected back to `embed_dim`. Position embeddings are learned
    (`pos_embed="learned"`) or the reference's fixed 1-D sin-cos table (`"sincos"`).
    """

    def __init__(self, num_features: int = 0, embed_dim: int = 64, predictor_dim: int = 32, depth: int = 2,
                 num_heads: int = 4, num_reg_tokens: int = 1, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop_path_rate: float = 0.0, pos_embed: Literal["learned", "sincos"] = "learned", init_std: float = 0.02) -> None:
        super().__init__()
        if pos_embed not in ("learned", "sincos"):
            raise ValueError(f"pos_embed must be 'learned' or 'sincos', got {pos_embed!r}")
        if int(num_features) < 1:
            raise ValueError(f"num_features must be >= 1 (the table's feature count; through the CLI it comes from "
                             f"the TabularDataModule), got {num_features!r}")
        self.num_features, self.num_reg_tokens = int(num_features), int(num_reg_tokens)
        self.embed_dim, self.predictor_dim = embed_dim, predictor_dim
        self.embed = nn.Linear(embed_dim, predictor_dim)
        self.mask_token = nn.Parameter(torch.zeros(predictor_dim))
        slots = self.num_reg_tokens + self.num_features
        if pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.zeros(1, slots, predictor_dim))
        else:
            self.register_buffer("pos_embed", sincos_1d(torch.arange(slots), predictor_dim).float()[None],
                                 persistent=False)
        self.transformer = TransformerStack(predictor_dim, depth, num_heads, mlp_ratio, qkv_bias, drop_path_rate)
        self.proj = nn.Linear(predictor_dim, embed_dim)
        init_vit_weights(self, init_std)
        nn.init.trunc_normal_(self.mask_token, std=init_std)
        if isinstance(self.pos_embed, nn.Parameter):
            nn.init.trunc_normal_(self.pos_embed, std=init_std)

    def forward(self, z: torch.Tensor, context_idx: torch.Tensor, target_idx: torch.Tensor,
                slots_over_all: bool = False) -> torch.Tensor:
        """z [B, R + Kc, embed_dim]; context_idx [B, Kc] and target_idx [B, T, Kt] feature indices.
        Returns [B, T, Kt, embed_dim]. `slots_over_all`: the indices are slots among the R + F ([REG] first) and
        z holds the Kc context tokens alone (the official code's indexing, `TJEPA(reference_indexing=True)`)."""
        r = 0 if slots_over_all else self.num_reg_tokens
        if z.size(-1) != self.embed_dim or z.size(1) != r + context_idx.size(1):
            raise ValueError(f"predictor expects [B, {r} + {context_idx.size(1)}, {self.embed_dim}] context "
                             f"latents ({r} [REG] + context features), got {list(z.shape)}")
        b, t, k = target_idx.shape
        full = self.pos_embed.expand(b, -1, -1)
        pos = full if slots_over_all else full[:, self.num_reg_tokens:]  # feature index i -> slot R + i
        ctx_pos = torch.cat([full[:, :r], gather_tokens(pos, context_idx)], dim=1)
        ctx = (self.embed(z) + ctx_pos).repeat_interleave(t, dim=0)                   # [B*T, R+Kc, P]
        tgt = (self.mask_token + gather_tokens(pos, target_idx)).flatten(0, 1)     # [B*T, Kt, P]
        out = self.transformer(torch.cat([ctx, tgt], dim=1))[:, -k:]
        return self.proj(out.unflatten(0, (b, t)))
