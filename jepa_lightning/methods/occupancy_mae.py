"""Occupancy-MAE-style masked occupancy reconstruction (Min et al., 2023) on a BEV encoder: AD-L-JEPA's baseline.

Reference: chaytonmin/Occupancy-MAE, ``pcdet/models/backbones_3d/voxel_mae.py`` (a sparse 3-D encoder, a dense
3-D transposed-conv decoder back to the voxel grid, ``BCEWithLogitsLoss`` against the binary occupancy of every
voxel). Here the same encoder as :class:`~jepa_lightning.methods.adl_jepa.ADLJEPA` is used, and the decoder
reconstructs the occupancy of the ``nz`` height slices of every BEV input cell (the BEV input's first ``nz``
channels), so both methods are compared on equal terms:

    for each batch of BEV grids x [B, C_in, ny, nx] (C_in = nz + 2; mask cells of p x p input cells, p = the
    encoder stride s unless mask_patch says otherwise):
        occ    <- mask cells with any point under them
        masks  <- per sample: a share r of the non-empty mask cells (masked_nonempty) and the same share r of
                  the empty ones (masked_empty)                  [BEVCellMask, as AD-L-JEPA; on_after_batch_transfer]
        z      <- encoder(x with the input cells under masked_nonempty zeroed)       (their points removed)
        logits <- decoder(z)          log2(s) x [ConvTranspose2d(k4, stride 2), BN, ReLU] + 1x1 -> [B, nz, ny, nx]
        y      <- x[:, :nz] > 0       the occupancy of every (height slice, input cell) of the full grid
        loss   <- mean over the loss cells' nz slices of BCE(logits, y; pos_weight)
                  loss cells (loss_cells): "masked" (default) = input cells under masked_nonempty or
                  masked_empty; "masked_nonempty"; "all" = every input cell (the reference's dense loss)
        step AdamW                                                       (no teacher, no EMA: SALTTeacher-like)

Choices (and why): ``ratio = 0.5`` by default, the released KITTI config's ``MASKED_RATIO`` (the paper also
reports range-aware ratios up to 0.9; set ``masks.init_args.ratio``) and AD-L-JEPA's ratio, so both methods
see the same masks; masking is on the encoder's feature cells as in AD-L-JEPA (``mask_patch=1`` masks single
BEV cells, closer to the reference's voxel masking). The loss is on the masked cells, as an MAE's (and, with
the empty share, it still has to say "empty" where nothing is); the reference's dense loss is
``loss_cells="all"``. No positive weight by default (the reference's plain BCE); ``pos_weight`` up-weights
occupied slices, which are sparse.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from jepa_lightning.masks.bev import BEVCellMask, BEVMasks
from jepa_lightning.methods.adl_jepa import context_input, occupancy, upsample_mask
from jepa_lightning.methods.base import JEPAModule

__all__ = ["OccupancyDecoder", "OccupancyMAE", "loss_cells_mask", "occupancy_bce"]


class OccupancyDecoder(nn.Module):
    """Transposed-conv decoder from the BEV feature grid back to the input grid: ``log2(upsample)`` x
    [ConvTranspose2d(kernel 4, stride 2, padding 1) (exactly doubles h and w), BN, ReLU], then a 1x1 conv to
    ``out_chans`` logits (the reference's decoder is the 3-D analogue: strided ConvTranspose3d + BN + ReLU).

    Args:
        embed_dim: input channels D (the encoder's ``embed_dim``).
        out_chans: output logits per input cell (the ``nz`` height slices).
        upsample: total stride, a power of two (the encoder's ``downsample``).
        widths: channels after each transposed conv (``log2(upsample)`` entries); default halves from
            ``embed_dim`` at each stage (at least 8).
    """

    def __init__(self, embed_dim: int, out_chans: int, upsample: int = 8,
                 widths: Sequence[int] | None = None) -> None:
        super().__init__()
        stages = upsample.bit_length() - 1
        if upsample < 1 or 2 ** stages != upsample:
            raise ValueError(f"OccupancyDecoder: upsample must be a power of two (the encoder's downsample), "
                             f"got {upsample}")
        if widths is None:
            widths = [max(embed_dim // 2 ** (i + 1), 8) for i in range(stages)]
        widths = [int(w) for w in widths]
        if len(widths) != stages:
            raise ValueError(f"OccupancyDecoder: widths needs log2(upsample) = {stages} entries, got {widths}")
        self.embed_dim, self.out_chans, self.upsample = int(embed_dim), int(out_chans), int(upsample)
        blocks, prev = [], int(embed_dim)
        for w in widths:
            blocks += [nn.ConvTranspose2d(prev, w, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(w),
                       nn.ReLU(inplace=True)]
            prev = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Conv2d(prev, out_chans, 1)
        # start from the occupied rate of a sparse grid (~1 %) rather than 50 %, as for any rare-positive BCE
        nn.init.constant_(self.head.bias, -math.log(99.0))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() != 4 or z.size(1) != self.embed_dim:
            raise ValueError(f"OccupancyDecoder: expected features [B, {self.embed_dim}, h, w], got {tuple(z.shape)}")
        return self.head(self.blocks(z))


def loss_cells_mask(masks: BEVMasks, patch: int, cells: Literal["masked", "masked_nonempty", "all"]) -> torch.Tensor:
    """The input cells ``[B, ny, nx]`` (bool) the reconstruction loss covers (see the module docstring)."""
    if cells == "all":
        return upsample_mask(torch.ones_like(masks.occupied), patch)
    chosen = masks.masked_nonempty if cells == "masked_nonempty" else masks.masked_nonempty | masks.masked_empty
    return upsample_mask(chosen, patch)


def occupancy_bce(logits: torch.Tensor, target: torch.Tensor, cells: torch.Tensor,
                  pos_weight: float | None = None) -> torch.Tensor:
    """Mean BCE-with-logits of ``logits`` vs binary ``target`` ``[B, nz, ny, nx]`` over the ``nz`` slices of the
    input cells ``cells [B, ny, nx]`` (bool); occupied slices weighted ``pos_weight`` (1 when None). 0 when no
    cell is selected."""
    if logits.shape != target.shape or cells.shape != (logits.size(0), *logits.shape[2:]):
        raise ValueError(f"occupancy_bce: logits {tuple(logits.shape)}, target {tuple(target.shape)} and cells "
                         f"{tuple(cells.shape)} do not match ([B, nz, ny, nx] x2 and [B, ny, nx])")
    pw = None if pos_weight is None else logits.new_tensor(float(pos_weight))
    bce = F.binary_cross_entropy_with_logits(logits.float(), target.float(), pos_weight=pw, reduction="none")
    m = cells[:, None].expand_as(bce).to(bce.dtype)
    return (bce * m).sum() / m.sum().clamp_min(1.0)


class OccupancyMAE(JEPAModule):
    """Masked BEV occupancy reconstruction (see the module docstring for the algorithm and the defaults' reasons).

    Args:
        encoder: the same encoder as AD-L-JEPA's (``embed_dim``, ``downsample`` attributes), e.g.
            :class:`jepa_lightning.nn.bev.BEVEncoder`; the network this method trains and evaluates.
        decoder: :class:`OccupancyDecoder` from ``embed_dim`` to ``nz`` logits with ``upsample`` = the encoder's
            ``downsample``.
        masks: the mask sampler (``BEVCellMask(0.5)`` by default: non-empty and empty mask cells, same share).
        mask_patch: side of a mask cell in input cells; None = the encoder's ``downsample`` (AD-L-JEPA's cells).
        loss_cells: ``masked`` (input cells under masked non-empty or masked empty mask cells), ``masked_nonempty``
            or ``all``.
        pos_weight: BCE weight of occupied slices (None: plain BCE, as the reference).
        input_key: the batch key of the BEV grid ``[B, nz + 2, ny, nx]``.
        **kwargs: JEPAModule's optimisation arguments (lr, warmup, weight_decay, ...); no ``ema`` /
            ``eval_encoder``: there is no teacher.
    """

    module_arguments = (*JEPAModule.module_arguments, "decoder")

    def __init__(self, encoder: nn.Module, decoder: OccupancyDecoder, masks: BEVCellMask | None = None,
                 mask_patch: int | None = None,
                 loss_cells: Literal["masked", "masked_nonempty", "all"] = "masked",
                 pos_weight: float | None = None, input_key: str = "bev", **kwargs: Any) -> None:
        for name in ("ema", "eval_encoder"):
            if name in kwargs:
                raise ValueError(f"OccupancyMAE has no EMA teacher and evaluates its own encoder: remove "
                                 f"model.init_args.{name} (got {kwargs[name]!r})")
        for attr in ("embed_dim", "downsample"):
            if not hasattr(encoder, attr):
                raise ValueError(f"OccupancyMAE: the encoder ({type(encoder).__name__}) must expose `{attr}`")
        if decoder.embed_dim != encoder.embed_dim or decoder.upsample != encoder.downsample:
            raise ValueError(f"OccupancyMAE: the decoder (embed_dim={decoder.embed_dim}, upsample={decoder.upsample})"
                             f" must match the encoder (embed_dim={encoder.embed_dim}, downsample="
                             f"{encoder.downsample}): set model.init_args.decoder.init_args.embed_dim/upsample")
        in_chans = getattr(encoder, "in_chans", None)
        if in_chans is not None and decoder.out_chans != in_chans - 2:
            raise ValueError(f"OccupancyMAE: the decoder must predict the nz = in_chans - 2 = {in_chans - 2} height"
                             f" slices, got out_chans={decoder.out_chans}: set model.init_args.decoder.init_args.out_chans")
        if loss_cells not in ("masked", "masked_nonempty", "all"):
            raise ValueError(f"OccupancyMAE: loss_cells must be 'masked', 'masked_nonempty' or 'all', got {loss_cells!r}")
        if mask_patch is not None and (mask_patch < 1 or encoder.downsample % mask_patch):
            raise ValueError(f"OccupancyMAE: mask_patch must divide the encoder's downsample ({encoder.downsample}),"
                             f" got {mask_patch}")
        if pos_weight is not None and pos_weight <= 0:
            raise ValueError(f"OccupancyMAE: pos_weight must be > 0 or None, got {pos_weight}")
        super().__init__(encoder, decoder, input_key=input_key, ema=None, eval_encoder="encoder", **kwargs)
        self.masks = masks if masks is not None else BEVCellMask()
        self.mask_patch = int(mask_patch or encoder.downsample)
        self.loss_cells, self.pos_weight = loss_cells, pos_weight
        self.num_slices = decoder.out_chans
        self._parts: dict[str, torch.Tensor] = {}

    @property
    def decoder(self) -> nn.Module:
        return self.predictor

    def sample_masks(self, batch: dict[str, Any], generator: torch.Generator) -> BEVMasks:
        return self.masks(occupancy(batch[self.input_key], self.mask_patch), generator)

    def forward_loss(self, bev: torch.Tensor, m: BEVMasks) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The objective on ``bev`` with masks ``m`` (on the ``mask_patch`` grid): (parts ``loss``,
        ``loss_occupied`` / ``loss_empty`` (BCE over the occupied / empty slices of the loss cells),
        ``accuracy`` (logit > 0 vs occupancy there); tensors ``logits`` ``[B, nz, ny, nx]``, ``target`` (same,
        0/1), ``cells`` ``[B, ny, nx]`` and ``features`` (encoder output ``[B, D, h, w]``))."""
        if bev.size(1) < self.num_slices:
            raise ValueError(f"OccupancyMAE: bev has {bev.size(1)} channels, fewer than nz = {self.num_slices}")
        z = self.encoder(context_input(bev, m.masked_nonempty, self.mask_patch))
        logits = self.decoder(z)
        target = (bev[:, :self.num_slices] != 0).to(logits.dtype)
        if logits.shape != target.shape:
            raise ValueError(f"OccupancyMAE: decoder output {tuple(logits.shape)} does not match the occupancy "
                             f"target {tuple(target.shape)} (input {tuple(bev.shape)})")
        cells = loss_cells_mask(m, self.mask_patch, self.loss_cells)
        parts = {"loss": occupancy_bce(logits, target, cells, self.pos_weight)}
        with torch.no_grad():
            sel = cells[:, None].expand_as(target)
            occ = sel & (target > 0)
            bce = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
            parts["loss_occupied"] = bce[occ].mean() if occ.any() else bce.new_zeros(())
            parts["loss_empty"] = bce[sel & ~occ].mean() if (sel & ~occ).any() else bce.new_zeros(())
            parts["accuracy"] = ((logits > 0) == (target > 0))[sel].float().mean()
        return parts, {"logits": logits, "target": target, "cells": cells, "features": z}

    def objective(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        m: BEVMasks = batch["masks"]
        parts, out = self.forward_loss(batch[self.input_key], m)
        self._parts = {k: v.detach() for k, v in parts.items() if k != "loss"}
        targets = out["target"].detach().permute(0, 2, 3, 1)[out["cells"]]     # [N, nz] reconstruction targets
        return parts["loss"], targets, out["features"].detach().mean((2, 3))

    def log_train(self, loss: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None,
                  predictions: torch.Tensor | None = None) -> None:
        """JEPAModule's logs plus ``train/loss_occupied``, ``train/loss_empty`` and ``train/accuracy``."""
        super().log_train(loss, targets, features)
        bs = features.size(0) if features is not None else 1
        for name, value in self._parts.items():
            self.log(f"train/{name}", value, batch_size=bs)

    @torch.no_grad()
    def encode(self, batch: dict[str, Any]) -> torch.Tensor:
        """Frozen-evaluation tokens ``[B, h*w, D]``: the encoder on the full BEV grid."""
        return self.eval_network(batch[self.input_key]).flatten(2).transpose(1, 2)
