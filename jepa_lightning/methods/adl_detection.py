"""AD-L-JEPA downstream: a CenterPoint-style BEV detector fine-tuned from a pretrained encoder (or from scratch).

AD-L-JEPA (Zhu et al., 2025) measures its pretraining by fine-tuning the encoder with a detection head on 5 / 20 /
50 / 100 % of the KITTI labels. Here the head is CenterPoint's (:mod:`jepa_lightning.nn.center_head`)::

    features = encoder(bev)                        [B, D, ny/s, nx/s]   (pretrained: the ADLJEPA EMA teacher)
    maps     = CenterHead(features)                heatmap logits per class + offset, z, log size, sin/cos heading
    loss     = heatmap_weight * focal(heatmap, Gaussian targets) + box_weight * L1(regression at centre cells)
               over the frames whose labels were kept (batch["labelled"]); other frames add nothing
    eval     = decode(maps) (3x3 max-pool peaks, top-K) -> BEVMeanAP (centre-distance BEV mAP)

Optimisation follows OpenPCDet's ``adam_onecycle`` (the reference fine-tuning configs): AdamW with weight decay,
a one-cycle learning rate (cosine warm-up from ``lr / div_factor`` to ``lr`` over ``pct_start`` of the optimizer
steps, cosine decay to ``lr / div_factor / final_div_factor``) with beta1 cycled inversely between 0.95 and
0.85, stepped per optimizer step over ``trainer.estimated_stepping_batches``. Gradient-norm clipping (10) is a
Trainer setting (``gradient_clip_val``) in the recipes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import nn

from jepa_lightning.eval.bev_map import BEVMeanAP
from jepa_lightning.eval.checkpoint import load_encoder_weights
from jepa_lightning.nn.center_head import (
    CenterHead,
    center_targets,
    decode,
    focal_loss,
    gather_regression,
    regression_loss,
)
from jepa_lightning.optim import param_groups, run_steps

__all__ = ["BEVDetector"]


class BEVDetector(L.LightningModule):
    """BEV encoder + :class:`~jepa_lightning.nn.center_head.CenterHead`, trained on centre heatmaps and boxes.

    Args:
        encoder: any module mapping ``bev [B, C_in, ny, nx]`` to ``[B, D, ny/s, nx/s]`` with attributes
            ``embed_dim`` (D) and ``downsample`` (s), e.g. :class:`jepa_lightning.nn.bev.BEVEncoder`.
        checkpoint: a pretraining checkpoint (Lightning ``.ckpt`` of :class:`~jepa_lightning.methods.adl_jepa.ADLJEPA`
            or a safetensors export) whose ``f"{checkpoint_key}."`` weights initialise the encoder; None = from
            scratch. A detector checkpoint holds the whole detector (the encoder included), so resuming or
            evaluating one overrides these initial weights.
        checkpoint_key: ``teacher`` (ADLJEPA's EMA teacher, the paper's choice) or ``encoder`` (the context encoder).
        freeze_encoder: keep the encoder fixed (eval mode, out of the optimizer): a linear-probe-like ablation.
        point_cloud_range, voxel_size: the BEV grid; must equal the DataModule's (checked in ``setup``).
        class_names: detection classes (label ids 0, 1, ...).
        head_dim: channels of the head's convolutions.
        heatmap_weight, box_weight: loss weights (CenterPoint's KITTI config: 1 and 2).
        code_weights: per-channel weights of the L1 box loss (offset x/y, z, log dx/dy/dz, sin, cos).
        min_radius, gaussian_overlap: heatmap Gaussians (CenterPoint: 2 cells, IoU 0.1).
        max_objects, score_threshold: decoding (top-K peaks, minimum score).
        distance_thresholds: centre-distance thresholds (metres) of the BEV mAP.
        lr, weight_decay: AdamW's peak learning rate and weight decay.
        pct_start, div_factor, final_div_factor, moms: the one-cycle schedule (OpenPCDet's adam_onecycle:
            0.4, 10, 1e4, (0.95, 0.85)).
        input_key: the batch key of the BEV grid.
    """

    def __init__(self, encoder: nn.Module, checkpoint: str | None = None, checkpoint_key: str = "teacher",
                 freeze_encoder: bool = False,
                 point_cloud_range: tuple[float, float, float, float, float, float] = (0.0, -20.0, -2.0, 40.0, 20.0,
                                                                                      1.0),
                 voxel_size: tuple[float, float, float] = (0.25, 0.25, 0.5),
                 class_names: tuple[str, ...] = ("Car", "Pedestrian", "Cyclist"), head_dim: int = 64,
                 heatmap_weight: float = 1.0, box_weight: float = 2.0,
                 code_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0),
                 min_radius: int = 2, gaussian_overlap: float = 0.1, max_objects: int = 100,
                 score_threshold: float = 0.1, distance_thresholds: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0),
                 lr: float = 3e-4, weight_decay: float = 0.01, pct_start: float = 0.4, div_factor: float = 10.0,
                 final_div_factor: float = 1e4, moms: tuple[float, float] = (0.95, 0.85),
                 input_key: str = "bev") -> None:
        super().__init__()
        # plain Python values only (tuples/lists of numbers and strings): checkpoints load with weights_only=True
        self.save_hyperparameters(ignore=["encoder"])
        for attr in ("embed_dim", "downsample"):
            if not isinstance(getattr(encoder, attr, None), int):
                raise ValueError(f"BEVDetector: the encoder ({type(encoder).__name__}) must expose an integer "
                                 f"`{attr}`")
        if len(point_cloud_range) != 6 or len(voxel_size) != 3:
            raise ValueError(f"BEVDetector: point_cloud_range must have 6 values and voxel_size 3, got "
                             f"{list(point_cloud_range)} and {list(voxel_size)}")
        if len(code_weights) != 8:
            raise ValueError(f"BEVDetector: code_weights needs 8 values (offset x/y, z, log dx/dy/dz, sin, cos), "
                             f"got {list(code_weights)}")
        if len(moms) != 2:
            raise ValueError(f"BEVDetector: moms must be (max, min) beta1, got {list(moms)}")
        self.point_cloud_range = tuple(float(v) for v in point_cloud_range)
        self.voxel_size = tuple(float(v) for v in voxel_size)
        self.class_names = [str(c) for c in class_names]
        if checkpoint is not None:
            load_encoder_weights(encoder, checkpoint, checkpoint_key)
        self.encoder = encoder
        if freeze_encoder:
            self.encoder.requires_grad_(False).eval()
        self.head = CenterHead(encoder.embed_dim, len(self.class_names), head_dim)
        self.register_buffer("code_weights", torch.tensor([float(c) for c in code_weights]), persistent=False)
        metric = dict(num_classes=len(self.class_names), class_names=self.class_names,
                      distance_thresholds=distance_thresholds)
        self.val_map, self.test_map = BEVMeanAP(**metric), BEVMeanAP(**metric)

    @property
    def downsample(self) -> int:
        return int(self.encoder.downsample)

    def train(self, mode: bool = True) -> BEVDetector:
        super().train(mode)
        if self.hparams.freeze_encoder:
            self.encoder.eval()  # no BatchNorm statistics updates in a frozen encoder
        return self

    # ------------------------------------------------------------------------------------------------ checks
    def setup(self, stage: str) -> None:
        """Checks the grid against the DataModule's (``point_cloud_range``, ``voxel_size``, ``in_channels``)."""
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None:
            return
        for name, mine in (("point_cloud_range", self.point_cloud_range), ("voxel_size", self.voxel_size)):
            theirs = getattr(dm, name, None)
            if theirs is None:
                continue
            theirs = tuple(float(v) for v in theirs)
            if len(theirs) != len(mine) or not all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(mine, theirs)):
                raise ValueError(f"BEVDetector: model.init_args.{name}={list(mine)} does not match the DataModule's "
                                 f"data.init_args.{name}={list(theirs)}: set both to the same values")
        in_chans, theirs = getattr(self.encoder, "in_chans", None), getattr(dm, "in_channels", None)
        if isinstance(in_chans, int) and isinstance(theirs, int) and in_chans != theirs:
            raise ValueError(f"BEVDetector: the encoder takes in_chans={in_chans} BEV channels but the DataModule "
                             f"produces in_channels={theirs} (nz + 2): set model.init_args.encoder.init_args.in_chans")

    # ----------------------------------------------------------------------------------------------- forward
    def forward(self, bev: torch.Tensor) -> dict[str, torch.Tensor]:
        """``bev [B, C_in, ny, nx]`` -> head maps (see :class:`~jepa_lightning.nn.center_head.CenterHead`)."""
        return self.head(self.encoder(bev))

    def decode(self, maps: dict[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        hp = self.hparams
        return decode(maps, self.point_cloud_range, self.voxel_size, self.downsample, hp.max_objects,
                      hp.score_threshold)

    @torch.no_grad()
    def detect(self, bev: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        """Eval-mode detections per frame: dicts with ``boxes`` [K, 7], ``scores``, ``labels``, ``centers``."""
        was_training = self.training
        self.eval()
        try:
            return self.decode(self(bev))
        finally:
            self.train(was_training)

    def losses(self, maps: dict[str, torch.Tensor], boxes: torch.Tensor, labels: torch.Tensor
               ) -> dict[str, torch.Tensor]:
        """``loss_heatmap`` (focal), ``loss_box`` (weighted L1) and their weighted sum ``loss``."""
        hp = self.hparams
        heat = maps["heatmap"]
        t = center_targets(boxes, labels, self.point_cloud_range, self.voxel_size, self.downsample,
                           heat.size(1), heat.shape[2:], hp.min_radius, hp.gaussian_overlap)
        loss_heatmap = focal_loss(heat, t["heatmap"])
        loss_box = regression_loss(gather_regression(maps, t["indices"]), t["targets"], t["mask"], self.code_weights)
        loss = hp.heatmap_weight * loss_heatmap + hp.box_weight * loss_box
        return {"loss": loss, "loss_heatmap": loss_heatmap, "loss_box": loss_box}

    # ------------------------------------------------------------------------------------------------- steps
    def _input(self, batch: Mapping[str, Any]) -> torch.Tensor:
        if not isinstance(batch, Mapping) or self.hparams.input_key not in batch:
            found = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
            raise KeyError(f"BEVDetector: batch has no key '{self.hparams.input_key}'; batch keys: {found}")
        return batch[self.hparams.input_key]

    def training_loss(self, batch: Mapping[str, Any]) -> tuple[dict[str, torch.Tensor], int]:
        """Loss parts (see :meth:`losses`) over the batch's labelled frames (``batch["labelled"]``; all frames when
        the key is absent) and their number. The whole batch goes through the network (BatchNorm statistics and
        DDP see every frame); a batch without labelled frames gives a zero loss that still touches every output,
        so every parameter gets a (zero) gradient."""
        bev = self._input(batch)
        maps = self(bev)
        labelled = batch.get("labelled")
        keep = (torch.ones(bev.size(0), dtype=torch.bool, device=bev.device) if labelled is None
                else torch.as_tensor(labelled, device=bev.device).bool())
        n = int(keep.sum())
        if n:
            return self.losses({k: v[keep] for k, v in maps.items()}, batch["boxes"][keep], batch["labels"][keep]), n
        zero = sum(v.sum() for v in maps.values()) * 0.0
        return {"loss": zero, "loss_heatmap": zero.detach(), "loss_box": zero.detach()}, 0

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        parts, n = self.training_loss(batch)
        b = max(n, 1)
        self.log("train/loss", parts["loss"], prog_bar=True, batch_size=b)
        self.log("train/loss_heatmap", parts["loss_heatmap"], batch_size=b)
        self.log("train/loss_box", parts["loss_box"], batch_size=b)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=b)
        return parts["loss"]

    @staticmethod
    def _targets(batch: Mapping[str, Any]) -> list[dict[str, torch.Tensor]]:
        return [{"centers": boxes[:, :2], "labels": labels} for boxes, labels in zip(batch["boxes"], batch["labels"])]

    def _eval_step(self, batch: dict[str, Any] | None, stage: str, metric: BEVMeanAP) -> None:
        if batch is None:  # every sample unreadable (the DataModule reported them)
            return
        maps = self(self._input(batch))
        parts = self.losses(maps, batch["boxes"], batch["labels"])
        b = maps["heatmap"].size(0)
        self.log(f"{stage}/loss", parts["loss"], sync_dist=True, batch_size=b)
        metric.update(self.decode(maps), self._targets(batch))

    def _log_metric(self, stage: str, metric: BEVMeanAP) -> None:
        for key, value in metric.compute().items():
            self.log(f"{stage}/{key}", value, prog_bar=key == "map")
        metric.reset()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_map)

    def on_validation_epoch_end(self) -> None:
        self._log_metric("val", self.val_map)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_map)

    def on_test_epoch_end(self) -> None:
        self._log_metric("test", self.test_map)

    def predict_step(self, batch: dict[str, Any] | None, batch_idx: int, dataloader_idx: int = 0
                     ) -> list[dict[str, Any]]:
        """Decoded detections per frame (``boxes``, ``scores``, ``labels``, ``centers``; ``frame`` if known)."""
        if batch is None:  # every sample unreadable
            return []
        out = self.decode(self(self._input(batch)))
        for frame, det in zip(batch.get("frame", [None] * len(out)), out):
            if frame is not None:
                det["frame"] = frame
        return out

    # ------------------------------------------------------------------------------------------ optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        total = run_steps(self.trainer, "BEVDetector")
        modules = [self.head] if hp.freeze_encoder else [self.encoder, self.head]
        optimizer = torch.optim.AdamW(param_groups(modules, hp.weight_decay), lr=hp.lr,
                                      betas=(float(hp.moms[0]), 0.999))
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=hp.lr, total_steps=total, pct_start=hp.pct_start,
            div_factor=hp.div_factor, final_div_factor=hp.final_div_factor, anneal_strategy="cos",
            cycle_momentum=True, base_momentum=float(hp.moms[1]), max_momentum=float(hp.moms[0]))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
