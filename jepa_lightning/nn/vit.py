"""Vision Transformer over tokens that can encode only a subset of them (the JEPA context)."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from jepa_lightning.nn.embed import PatchEmbed2D, TubeletEmbed3D
from jepa_lightning.nn.pos_embed import sincos_pos_embed
from jepa_lightning.nn.rope import grid_positions
from jepa_lightning.nn.tokens import gather_tokens
from jepa_lightning.nn.transformer import TransformerStack, init_vit_weights


class VisionTransformer(nn.Module):
    """ViT for images (`num_frames=1`: 2-D patches) or video (`num_frames>1`: 3-D tubelets).

    `forward(x, keep)` embeds every patch, adds fixed sin-cos positions, then keeps only the token
    indices in `keep` ([B, K], e.g. the context block) before the transformer, so masked tokens cost nothing.
    Returns [B, K, embed_dim] (K = all tokens when `keep` is None).

    `patch_init_std` (None: `init_std`, the official rule) sets the patch embedding's weights apart. With one std
    for every weight, the patch embedding's output scale grows with its fan-in (channels x tubelet x patch area),
    while the sin-cos positions it is added to do not: the paper's ViT-L/16 video tubelets (2x16x16x3 = 1536 inputs)
    get content about as strong as position, a tiny recipe's 2x8x8x3 = 384 half of it (measured on the moving
    objects at 0.02: content std 0.25 against positions' 0.51, and half of the LayerNormed output tokens' variance
    is position, `eval.variance_shares`; at 0.04: 23 %). 0.02 x sqrt(paper's fan-in / fan-in) keeps the paper's
    balance: 0.04 for 2x8x8x3 video tubelets against ViT-L/16's 1536, 0.035 for 8x8x3 image patches against
    I-JEPA's ViT-H/14 (588).

    `pos_embed`: "sincos" (default) computes the fixed sin-cos table at construction and keeps it out of the state
    dict; "stored" starts from the same table but keeps it in the state dict (still fixed, not trained), so a
    published encoder's own table (`jepa_lightning.pretrained.load_encoder`) is loaded and saved with the weights;
    "rope" adds no table and rotates queries and keys in every attention layer by the tokens' (frame, row, column)
    on the grid, V-JEPA 2's positions (`nn.rope`; the kept tokens of a context keep their own positions).
    `norm_eps`: the LayerNorms' epsilon, `checkpoint_blocks`: activation checkpointing of the first n blocks or "all"
    (both: see `TransformerStack`). `pretrained`: a published encoder (path or hub
    id, see `jepa_lightning.pretrained`) whose weights fill this one after initialisation; its architecture must
    match (shapes, epsilon, `pos_embed="stored"`), else the error names what differs.
    """

    def __init__(self, img_size: int | tuple[int, int] = 224, patch_size: int = 16, in_chans: int = 3, num_frames: int = 1,
                 tubelet_size: int = 2, embed_dim: int = 768, depth: int = 12, num_heads: int = 12,
                 mlp_ratio: float = 4.0, qkv_bias: bool = True, drop_path_rate: float = 0.0,
                 init_std: float = 0.02, patch_init_std: float | None = None,
                 pos_embed: Literal["sincos", "stored", "rope"] = "sincos", norm_eps: float = 1e-6,
                 checkpoint_blocks: int | Literal["all"] = 0, pretrained: str | None = None) -> None:
        super().__init__()
        if pos_embed not in ("sincos", "stored", "rope"):
            raise ValueError(f"pos_embed must be 'sincos', 'stored' or 'rope', got {pos_embed!r}")
        self.rope = pos_embed == "rope"
        if num_frames == 1:
            self.patch_embed: nn.Module = PatchEmbed2D(img_size, patch_size, in_chans, embed_dim)
        else:
            self.patch_embed = TubeletEmbed3D(img_size, patch_size, num_frames, tubelet_size, in_chans,
                                              embed_dim)
        self.grid_size: tuple[int, ...] = self.patch_embed.grid_size
        self.num_patches = math.prod(self.grid_size)
        self.embed_dim = embed_dim
        table = torch.zeros(1, 1, embed_dim) if self.rope else sincos_pos_embed(self.grid_size, embed_dim)[None]
        self.register_buffer("pos_embed", table, persistent=pos_embed == "stored")  # RoPE: adds 0
        self.transformer = TransformerStack(embed_dim, depth, num_heads, mlp_ratio, qkv_bias, drop_path_rate,
                                            norm_eps, rope=self.rope, checkpoint_blocks=checkpoint_blocks)
        init_vit_weights(self, init_std)
        if patch_init_std is not None:  # see the class docstring
            nn.init.trunc_normal_(self.patch_embed.proj.weight, std=patch_init_std)
        if pretrained is not None:
            from jepa_lightning.pretrained import load_into

            load_into(self, pretrained)

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        if x.dim() == 4 and tuple(x.shape[2:]) != self.patch_embed.img_size:  # a view of another size
            tokens = self.patch_embed(x, any_size=True) + self.resized_pos_embed(x.shape[2:])
        else:
            tokens = self.patch_embed(x) + self.pos_embed
        if keep is not None:
            tokens = gather_tokens(tokens, keep)
        if not self.rope:
            return self.transformer(tokens)
        index = keep if keep is not None else torch.arange(tokens.size(1), device=tokens.device)[None]
        return self.transformer(tokens, grid_positions(index, self.grid_size))

    def resized_pos_embed(self, size) -> torch.Tensor:
        """The position table for images of `size` (H, W) other than `img_size` (multi-crop views, LeJEPA's local
        crops): resized bicubically to their patch grid (as DINO and timm's dynamic image size do), so a view covers
        the same range of positions whatever its resolution. [1, N', D]."""
        if self.rope or not isinstance(self.patch_embed, PatchEmbed2D):
            raise ValueError(f"images of {list(size)} px: only a 2-D ViT with a position table takes images "
                             f"of another size than its img_size {list(self.patch_embed.img_size)}")
        grid = tuple(int(s) // self.patch_embed.patch_size for s in size)
        table = self.pos_embed.reshape(1, *self.grid_size, -1).permute(0, 3, 1, 2)
        return F.interpolate(table, size=grid, mode="bicubic", align_corners=False).flatten(2).transpose(1, 2)
