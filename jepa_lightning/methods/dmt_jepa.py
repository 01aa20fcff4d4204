"""DMT-JEPA (Mo & Yun, 2024): I-JEPA whose targets are aggregated from semantically similar neighbouring patches.

I-JEPA regresses each masked patch onto the teacher's latent of that patch alone. DMT-JEPA makes the target
*discriminative* by building it from the patch's semantic neighbourhood, not from the patch itself:

    for each batch x:
        masks   <- I-JEPA multi-block sampler (context block, 4 target blocks)          [on_after_batch_transfer]
        h       <- LayerNorm(teacher(x))                                   full image, no grad
        g       <- mean_j h_j                                              one summary token per image
        # Masked Semantic Neighbouring (MSN), for each target patch i:
        W(i)    <- the patches of the window x window neighbourhood of i on the grid, i itself and patches
                   outside the grid excluded (no wrap-around)
        P(i)    <- the top-k (default 4) j in W(i) by cosine similarity cos(h_i, h_j)
        # Local Aggregation Target (LAT), the EMA head, 2 class-attention blocks:
        s_i     <- g
        s_i     <- s_i + attn(query s_i; keys/values {s_i} U {h_j : j in P(i)});  s_i <- s_i + mlp(s_i)   x2
        s_i     <- LayerNorm(s_i)          (h_i enters s_i only through g and the choice of P(i))
        # Context side, the same head's parameters in 'global' mode on the visible tokens:
        z       <- encoder(x at the context block)
        z       <- z + attn(query mean(z); keys/values {mean(z)} U z) (added to every token); z <- z + mlp(z)   x2
        z       <- LayerNorm(z)
        pred    <- predictor(z, context positions, target positions)
        loss    <- smooth-L1 (or L2) between pred and s at the target positions
        step AdamW (encoder, head, predictor); teacher <- EMA(encoder), target head <- EMA(head)

Design notes and differences from the reference code (DMTJEPA/DMTJEPA, `src/models/local_agg_head.py`):

- Targets are computed at the target positions only (the reference aggregates all N patches, then selects).
- The neighbourhood is an index table [N, window**2 - 1] built once per (grid, window, device) and cached; the
  gathers are batched advanced indexing with an explicit batch index, so sample b's targets read only sample
  b's tokens and sample b's summary token. The reference tiles the per-image summary token with `repeat`
  (b-major vs. patch-major order: samples get each other's queries); here every query row of image b starts
  from image b's mean (`repeat_interleave` order). It also hard-codes the token counts (196/256/36) and
  imports an undefined `Mlp`; none of that here.
- Border patches: the reference wraps the window around the grid (torus), so a patch on the left edge gets
  neighbours from the right edge. Here patches outside the grid are not neighbours; when fewer than k exist
  (a corner of a 3x3 window has 3) the missing keys are masked out of the attention.
- Similarities are computed in fp32 (autocast off) so that bf16 rounding does not reorder neighbours; the
  head's residual output projections are scaled by 1/sqrt(2 i) at init, like the encoders'.
- Because every target of an image starts from the same query g (the residual stream), the targets can be mostly
  one code per image: on the embedded object scenes `train/target_sample_share` stays at 0.94-1.0 (I-JEPA's:
  0.4-0.6; benchmarks/fidelity/image_jepa.py). `LocalAggregationHead(query="neighbours")` is an ablation that
  starts each target from the mean of its own neighbours instead (not the paper's or the official code's).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from jepa_lightning.masks.multiblock import MultiBlockMask2D
from jepa_lightning.masks.utils import Masks
from jepa_lightning.methods.base import StepOutput
from jepa_lightning.methods.ijepa import IJEPA
from jepa_lightning.nn.pooler import CrossAttentionBlock
from jepa_lightning.nn.predictor import TransformerPredictor
from jepa_lightning.nn.transformer import init_vit_weights
from jepa_lightning.nn.vit import VisionTransformer
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
    """x [B, M, D], idx [B, ...] -> [B, ..., D]: row b of the result reads x[b] only."""
    b = torch.arange(x.size(0), device=x.device).view(-1, *([1] * (idx.dim() - 1)))
    return x[b, idx]


class ClassAttentionBlock(CrossAttentionBlock):
    """A class-attention block (CaiT) in the reference head's two modes; `forward` (not separate methods) so that
    FSDP2's per-block hooks gather the parameters.

    - `forward(x [R, L, D], query [R, 1, D], key_mask [R, L] bool)`: the query attends to {query} U x (masked
      keys excluded; the query itself always attends); q <- q + attn; q <- q + mlp(norm(q)). Returns [R, 1, D].
    - `forward(x [R, L, D])`: the same with query = mean(x), the attention summary added to every token of x;
      x <- x + mlp(norm(x)). Returns [R, L, D].
    Query and keys are normalised (norm1 on {query} U x).
    """

    def forward(self, x: torch.Tensor, query: torch.Tensor | None = None, key_mask: torch.Tensor | None = None
                ) -> torch.Tensor:
        s = x.mean(1, keepdim=True) if query is None else query
        attn, (r, _, d), h = self.xattn, s.shape, self.xattn.num_heads
        u = self.norm1(torch.cat([s, x], dim=1))                                         # [R, 1 + L, D]
        q = attn.q(u[:, :1]).reshape(r, 1, h, d // h).transpose(1, 2)                    # [R, h, 1, d/h]
        k, v = attn.kv(u).reshape(r, u.size(1), 2, h, d // h).permute(2, 0, 3, 1, 4)    # 2 x [R, h, 1+L, d/h]
        if key_mask is not None:
            key_mask = torch.cat([key_mask.new_ones(r, 1), key_mask], dim=1)[:, None, None, :]
        out = attn.proj(F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask).transpose(1, 2).reshape(r, 1, d))
        y = (x if query is None else query) + out                                        # broadcast in global mode
        return y + self.mlp(self.norm2(y))


class LocalAggregationHead(nn.Module):
    """DMT-JEPA's head: `depth` class-attention blocks and a final LayerNorm, used in two modes.

    - `forward(tokens, grid_size, queries)` (the reference's `loc=True`, on the EMA copy): Masked Semantic
      Neighbouring + Local Aggregation Target. For each query patch i, the image-mean token attends to itself
      and the top-k most cosine-similar of i's window x window grid neighbours (i excluded).
    - `forward(tokens)` (the reference's global mode, on the context tokens): each block adds to every token the
      attention summary of the mean token over (mean, tokens), the mean recomputed before each block.

    Args:
        embed_dim: token width (the encoder's).
        num_heads: attention heads of the blocks.
        depth: class-attention blocks (the paper: 2).
        window: odd side of the neighbourhood window on the patch grid (the paper: 3).
        k: neighbours kept per patch (the paper: 4); at most window**2 - 1.
        mlp_ratio: MLP width of the blocks relative to `embed_dim`.
        init_std: std of the truncated-normal initialisation of the linear layers.
        query: the query that starts each target in target mode: `"image_mean"` (the official code: the image's
            mean token, the same for every patch of the image, so the residual carries a per-image code into every
            target) or `"neighbours"` (an ablation: the mean of the patch's own top-k neighbours, so every part of
            the target is local).
    """

    def __init__(self, embed_dim: int, num_heads: int = 4, depth: int = 2, window: int = 3, k: int = 4,
                 mlp_ratio: float = 4.0, init_std: float = 0.02,
                 query: Literal["image_mean", "neighbours"] = "image_mean") -> None:
        super().__init__()
        if query not in ("image_mean", "neighbours"):
            raise ValueError(f"LocalAggregationHead: query must be 'image_mean' or 'neighbours', got {query!r}")
        self.query = query
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
        self.blocks = nn.ModuleList(ClassAttentionBlock(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
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

    def _check(self, tokens: torch.Tensor) -> None:
        if tokens.dim() != 3 or tokens.size(-1) != self.embed_dim:
            raise ValueError(f"LocalAggregationHead(embed_dim={self.embed_dim}) expects tokens [B, N, "
                             f"{self.embed_dim}], got {list(tokens.shape)}")

    def select(self, tokens: torch.Tensor, grid_size: tuple[int, int], queries: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Masked Semantic Neighbouring. tokens [B, N, D] cover the H x W grid (row-major); `queries` [B, Q] are
        patch indices. For each query, the indices of its top-k most cosine-similar window neighbours, most
        similar first. Returns (idx [B, Q, k], valid [B, Q, k]); invalid entries (fewer than k neighbours inside
        the grid) hold index 0 and must be masked."""
        self._check(tokens)
        B, N, _ = tokens.shape
        if N != int(grid_size[0]) * int(grid_size[1]):
            raise ValueError(f"tokens cover {N} patches, the grid {tuple(grid_size)} has "
                             f"{int(grid_size[0]) * int(grid_size[1])}")
        if queries.dim() != 2 or queries.size(0) != B:
            raise ValueError(f"queries must be [B={B}, Q] patch indices, got {list(queries.shape)}")
        npos = self.table(grid_size, tokens.device)[queries]                             # [B, Q, W]
        valid = npos >= 0
        npos = npos.clamp(min=0)
        with torch.no_grad(), torch.autocast(tokens.device.type, enabled=False):
            f = F.normalize(tokens.detach().float(), dim=-1)
            sim = torch.bmm(_batch_gather(f, queries), f.transpose(1, 2))                 # [B, Q, N]
            sim = sim.gather(-1, npos).masked_fill(~valid, float("-inf"))                 # [B, Q, W]
            top = sim.topk(self.k, dim=-1)
        return npos.gather(-1, top.indices), top.values > float("-inf")

    def forward(self, tokens: torch.Tensor, grid_size: tuple[int, int] | None = None,
                queries: torch.Tensor | None = None) -> torch.Tensor:
        """Global mode (`queries` None): tokens [B, M, D] (e.g. each image's visible context tokens) -> [B, M, D].
        Target mode: the local aggregation targets [B, Q, D] of the patches `queries` [B, Q] from the teacher's
        LayerNorm-ed tokens [B, N, D] over the whole `grid_size` grid."""
        self._check(tokens)
        if queries is None:
            for blk in self.blocks:
                tokens = blk(tokens)
            return self.norm(tokens)
        if grid_size is None:
            raise ValueError("LocalAggregationHead: target mode (queries given) needs grid_size")
        idx, valid = self.select(tokens, grid_size, queries)                             # [B, Q, k]
        (B, Q), D = queries.shape, self.embed_dim
        neighbours = _batch_gather(tokens, idx).reshape(B * Q, self.k, D)
        mask = valid.reshape(B * Q, self.k)
        if self.query == "neighbours":  # the mean of each patch's valid neighbours
            w = mask.unsqueeze(-1).to(neighbours.dtype)
            s = (neighbours * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1)
        else:
            s = tokens.mean(1, keepdim=True).expand(B, Q, D).reshape(B * Q, 1, D)   # row b*Q + q: image b's mean
        for blk in self.blocks:
            s = blk(neighbours, s, mask)
        return self.norm(s).view(B, Q, D)


class DMTJEPA(IJEPA):
    """DMT-JEPA on the I-JEPA machinery (see the module docstring for the algorithm).

    Args:
        encoder, predictor, masks, loss: as :class:`~jepa_lightning.methods.ijepa.IJEPA`.
        head: the student head (global mode on the context tokens); its EMA copy builds the targets. Default:
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

    def forward_loss(self, x: torch.Tensor, m: Masks) -> StepOutput:
        """(loss, targets [B, T, K, D], pooled teacher features [B, D], predictions) on images x, masks m."""
        B, T, K = m.targets.shape
        with torch.no_grad():
            h = self.teacher(x)
            features = h.mean(1)
            h = F.layer_norm(h, h.shape[-1:])
            targets = self.target_head(h, tuple(self.encoder.grid_size), m.targets.reshape(B, T * K)).view(B, T, K, -1)
        z = self.head(self.encoder(x, keep=m.context))                 # [B, Kc, D], global mode
        pred = self.predictor(z, m.context, m.targets)                 # [B, T, K, D]
        return StepOutput(self.loss_fn(pred.float(), targets.float()), targets, features, pred, z.mean(1))

    # ------------------------------------------------------------ the EMA head
    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        self.target_head.update(self.head, self.ema_momentum(self.global_step + 1))  # as the teacher's update
