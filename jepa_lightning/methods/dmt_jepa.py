"""DMT-JEPA (Mo & Yun, 2024): I-JEPA whose targets are aggregated from semantically similar neighbouring patches.

I-JEPA regresses each masked patch onto the teacher's latent of that patch alone. DMT-JEPA makes the target
*discriminative* by building it from the patch's semantic neighbourhood:

    for each batch x:
        masks   <- I-JEPA multi-block sampler (context block, 4 target blocks)          [on_after_batch_transfer]
        h       <- LayerNorm(teacher(x))                                   full image, no grad
        # Masked Semantic Neighbouring (MSN), for each target patch i:
        W(i)    <- the patches of the window x window neighbourhood of i on the grid, i itself and patches
                   outside the grid excluded (no wrap-around)
        P(i)    <- the top-k (default 4) j in W(i) by cosine similarity cos(h_i, h_j)
        # Local Aggregation Target (LAT):
        s_i     <- target head(query h_i; keys/values {h_i} U {h_j : j in P(i)})   2 cross-attention blocks
        # Context side, the same operator with the student head on the visible tokens:
        z       <- encoder(x at the context block)
        z'_c    <- head(query z_c; keys/values {z_c} U top-k of its visible grid neighbours), every context c
        pred    <- predictor(z', context positions, target positions)
        loss    <- smooth-L1 (or L2) between pred and s at the target positions
        step AdamW (encoder, head, predictor); teacher <- EMA(encoder), target head <- EMA(head)

Design notes and differences from the reference code (DMTJEPA/DMTJEPA, `src/models/local_agg_head.py`):

- The neighbourhood is an index table [N, window**2 - 1] built once per (grid, window, device) and cached; the
  gather is one batched advanced-indexing op with an explicit batch index (`tokens[arange(B)[:, None, None],
  slots]`), so sample b's target reads only sample b's tokens. The reference tiles its per-image query with
  `repeat` (batch order b-major vs. patch-major: samples get each other's queries; `repeat_interleave` is
  right), hard-codes the token counts (196/256/36) and imports an undefined `Mlp`; none of that here.
- Border patches: the reference wraps the window around the grid (torus), so a patch on the left edge gets
  neighbours from the right edge. Here patches outside the grid are not neighbours; when fewer than k valid
  neighbours exist (corners of a 3x3 window have 3) the missing keys are masked out of the attention.
- Query: the paper aggregates the neighbours *of the masked patch*, so the patch's own latent is the query
  (and a key). The reference queries with the image-mean token instead.
- Context side: the reference passes the context tokens through its head in a "global" mode (every token
  gets the same class-attention summary of all context tokens added). We apply the paper's operator
  symmetrically: the student head aggregates each context token with its top-k most similar *visible* grid
  neighbours (MSN restricted to the context), so predictor inputs and targets are built by the same local
  aggregation; the target head is the EMA of this head, as in the reference.
- Neighbour selection compares LayerNorm-ed (no affine) features on both sides; teacher features are already
  layer-normed, as in I-JEPA.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from jepa_lightning.masks import Masks, MultiBlockMask2D
from jepa_lightning.methods.ijepa import IJEPA
from jepa_lightning.nn import TransformerPredictor, VisionTransformer
from jepa_lightning.nn.pooler import CrossAttentionBlock
from jepa_lightning.nn.transformer import init_vit_weights
from jepa_lightning.targets import EMATeacher


def neighbour_table(grid_size: tuple[int, int], window: int, device: torch.device | str | None = None
                    ) -> torch.Tensor:
    """Flat indices [H*W, window**2 - 1] of each patch's window x window neighbours on an H x W grid, row-major,
    the patch itself excluded; -1 where the neighbour falls outside the grid (no wrap-around)."""
    height, width = (int(s) for s in grid_size)
    if window < 3 or window % 2 == 0:
        raise ValueError(f"window must be an odd integer >= 3, got {window}")
    r = window // 2
    dy, dx = torch.meshgrid(torch.arange(-r, r + 1), torch.arange(-r, r + 1), indexing="ij")
    centre = dy.numel() // 2
    keep = torch.arange(dy.numel()) != centre
    dy, dx = dy.flatten()[keep], dx.flatten()[keep]                        # [W]
    y, x = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    ny, nx = y.flatten()[:, None] + dy, x.flatten()[:, None] + dx          # [N, W]
    inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
    return torch.where(inside, ny * width + nx, -1).to(device)


def _batch_gather(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x [B, M, D], idx [B, ...] (valid slots) -> [B, ..., D]: row b of the result reads x[b] only."""
    b = torch.arange(x.size(0), device=x.device).view(-1, *([1] * (idx.dim() - 1)))
    return x[b, idx]


class MaskedCrossAttentionBlock(CrossAttentionBlock):
    """The pooler's cross-attention block (q <- q + xattn(q, norm(x)); q <- q + mlp(norm(q))) with a key mask:
    `forward(q [B, Q, D], x [B, L, D], key_mask [B, L] bool, True = attend)`."""

    def forward(self, q: torch.Tensor, x: torch.Tensor, key_mask: torch.Tensor | None = None) -> torch.Tensor:
        if key_mask is None:
            return super().forward(q, x)
        attn, (b, nq, d), h = self.xattn, q.shape, self.xattn.num_heads
        x = self.norm1(x)
        qh = attn.q(q).reshape(b, nq, h, d // h).transpose(1, 2)                           # [B, h, Q, d/h]
        k, v = attn.kv(x).reshape(b, x.size(1), 2, h, d // h).permute(2, 0, 3, 1, 4)      # 2 x [B, h, L, d/h]
        out = F.scaled_dot_product_attention(qh, k, v, attn_mask=key_mask[:, None, None, :])
        q = q + attn.proj(out.transpose(1, 2).reshape(b, nq, d))
        return q + self.mlp(self.norm2(q))


class LocalAggregationHead(nn.Module):
    """DMT-JEPA's Masked Semantic Neighbouring + Local Aggregation: for each query token, its top-k most
    cosine-similar tokens among its window x window grid neighbours, aggregated with the query by `depth`
    cross-attention blocks (the query attends to itself and its k neighbours), then LayerNorm.

    Args:
        embed_dim: token width (the encoder's).
        num_heads: attention heads of the cross-attention blocks.
        depth: cross-attention blocks (the paper: 2).
        window: odd side of the neighbourhood window on the patch grid (the paper: 3).
        k: neighbours kept per token (the paper: 4); at most window**2 - 1.
        mlp_ratio: MLP width of the blocks relative to `embed_dim`.
    """

    def __init__(self, embed_dim: int, num_heads: int = 4, depth: int = 2, window: int = 3, k: int = 4,
                 mlp_ratio: float = 4.0, init_std: float = 0.02) -> None:
        super().__init__()
        if window < 3 or window % 2 == 0:
            raise ValueError(f"LocalAggregationHead: window must be an odd integer >= 3, got {window}")
        if not 1 <= k <= window * window - 1:
            raise ValueError(f"LocalAggregationHead: k must be in [1, {window * window - 1}] for window={window} "
                             f"(the neighbours of a patch, itself excluded), got {k}")
        if depth < 1:
            raise ValueError(f"LocalAggregationHead: depth must be >= 1, got {depth}")
        if embed_dim % num_heads:
            raise ValueError(f"LocalAggregationHead: embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
        self.embed_dim, self.window, self.k = embed_dim, window, k
        self.blocks = nn.ModuleList(MaskedCrossAttentionBlock(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        init_vit_weights(self, init_std)
        with torch.no_grad():  # residual output projections of block i scaled by 1/sqrt(2 i), as the encoders
            for i, blk in enumerate(self.blocks, start=1):
                blk.xattn.proj.weight.div_(math.sqrt(2.0 * i))
                blk.mlp.fc2.weight.div_(math.sqrt(2.0 * i))
        self._tables: dict[tuple[int, int, str], torch.Tensor] = {}

    def table(self, grid_size: tuple[int, int], device: torch.device) -> torch.Tensor:
        """The neighbour index table of `grid_size`, built once per grid and device."""
        key = (int(grid_size[0]), int(grid_size[1]), str(device))
        if key not in self._tables:
            self._tables[key] = neighbour_table(grid_size, self.window, device)
        return self._tables[key]

    def select(self, tokens: torch.Tensor, positions: torch.Tensor, grid_size: tuple[int, int],
               queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Masked Semantic Neighbouring.

        tokens [B, M, D] sit at flat grid positions `positions` [B, M] (distinct per row); `queries` [B, Q] are
        slots into `tokens`. For each query, the slots of its top-k most cosine-similar (LayerNorm-ed features)
        tokens among its window neighbours that are present in `tokens`. Returns (slots [B, Q, k], valid
        [B, Q, k]); invalid entries (fewer than k neighbours present) hold slot 0 and must be masked.
        """
        B, M, _ = tokens.shape
        n = int(grid_size[0]) * int(grid_size[1])
        if positions.shape != (B, M):
            raise ValueError(f"positions must be [B, M] = {[B, M]} like the tokens, got {list(positions.shape)}")
        slot_of = torch.full((B, n), -1, dtype=torch.long, device=tokens.device)            # grid -> slot
        slot_of.scatter_(1, positions, torch.arange(M, device=tokens.device).expand(B, M))
        qpos = positions.gather(1, queries)                                               # [B, Q]
        npos = self.table(grid_size, tokens.device)[qpos]                                 # [B, Q, W]
        nslot = slot_of.gather(1, npos.clamp(min=0).flatten(1)).view_as(npos)
        valid = (npos >= 0) & (nslot >= 0)
        nslot = nslot.clamp(min=0)
        with torch.no_grad():
            f = F.normalize(F.layer_norm(tokens.detach().float(), tokens.shape[-1:]), dim=-1)
            sim = (_batch_gather(f, nslot) * _batch_gather(f, queries)[:, :, None, :]).sum(-1)   # [B, Q, W]
            sim = sim.masked_fill(~valid, float("-inf"))
            top = sim.topk(self.k, dim=-1)
        return nslot.gather(-1, top.indices), top.values > float("-inf")

    def forward(self, tokens: torch.Tensor, positions: torch.Tensor, grid_size: tuple[int, int],
                queries: torch.Tensor | None = None) -> torch.Tensor:
        """Aggregated tokens [B, Q, D] for the query slots `queries` [B, Q] (all slots when None) of `tokens`
        [B, M, D] at flat grid positions `positions` [B, M]."""
        B, M, D = tokens.shape
        if D != self.embed_dim:
            raise ValueError(f"LocalAggregationHead(embed_dim={self.embed_dim}) got tokens of width {D}")
        if queries is None:
            queries = torch.arange(M, device=tokens.device).expand(B, M)
        slots, valid = self.select(tokens, positions, grid_size, queries)                # [B, Q, k]
        Q = queries.size(1)
        q = _batch_gather(tokens, queries).reshape(B * Q, 1, D)
        neighbours = _batch_gather(tokens, slots).reshape(B * Q, self.k, D)
        mask = torch.cat([valid.new_ones(B, Q, 1), valid], dim=-1).reshape(B * Q, 1 + self.k)
        for blk in self.blocks:  # the query attends to (its current self, its k neighbours)
            q = blk(q, torch.cat([q, neighbours], dim=1), mask)
        return self.norm(q).view(B, Q, D)


class DMTJEPA(IJEPA):
    """DMT-JEPA on the I-JEPA machinery (see the module docstring for the algorithm).

    Args:
        encoder, predictor, masks, loss: as :class:`~jepa_lightning.methods.ijepa.IJEPA`.
        head: the student local-aggregation head (context side); its EMA copy builds the targets. Default:
            `LocalAggregationHead(encoder.embed_dim)` (2 blocks, 3x3 window, k=4).
        **kwargs: the schedules etc. of :class:`~jepa_lightning.methods.base.JEPAModule`.
    """

    module_arguments = (*IJEPA.module_arguments, "head")

    def __init__(self, encoder: VisionTransformer, predictor: TransformerPredictor,
                 head: LocalAggregationHead | None = None, masks: MultiBlockMask2D | None = None,
                 loss: Literal["smooth_l1", "l2"] = "smooth_l1", **kwargs: Any) -> None:
        super().__init__(encoder, predictor, masks=masks, loss=loss, **kwargs)
        if self.teacher is None:
            raise ValueError("DMTJEPA needs an EMA teacher: set model.init_args.ema (e.g. [0.996, 1.0])")
        head = head if head is not None else LocalAggregationHead(encoder.embed_dim)
        if head.embed_dim != encoder.embed_dim:
            raise ValueError(f"head embed_dim={head.embed_dim} does not match the encoder's "
                             f"{encoder.embed_dim}: set model.init_args.head.init_args.embed_dim")
        self.head = head
        self.target_head = EMATeacher(head)

    def forward_loss(self, x: torch.Tensor, m: Masks) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss, targets [B, T, K, D], pooled teacher features [B, D]) on images x with masks m."""
        grid = tuple(self.encoder.grid_size)
        B, T, K = m.targets.shape
        with torch.no_grad():
            h = self.teacher(x)
            features = h.mean(1)
            h = F.layer_norm(h, h.shape[-1:])
            every = torch.arange(h.size(1), device=h.device).expand(B, -1)
            targets = self.target_head(h, every, grid, queries=m.targets.reshape(B, T * K)).view(B, T, K, -1)
        z = self.encoder(x, keep=m.context)                            # [B, Kc, D]
        z = self.head(z, m.context, grid)                              # local aggregation over visible tokens
        pred = self.predictor(z, m.context, m.targets)                 # [B, T, K, D]
        return self.loss_fn(pred.float(), targets.float()), targets, features

    # ------------------------------------------------------------ the EMA head
    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        self.target_head.update(self.head, self.ema_momentum(self.global_step))
