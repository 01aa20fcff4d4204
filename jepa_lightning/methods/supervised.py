"""Supervised ceiling: the same encoder a JEPA method pretrains, trained end to end on the image labels.

    for each batch (x, y):
        z      <- encoder(x)                                 all tokens [B, N, D]
        logits <- Linear(LayerNorm(mean over tokens of z))
        loss   <- cross-entropy(logits, y)  (optional label smoothing)
        step AdamW (warm-up + cosine learning rate, cosine weight decay: `optim.adamw_warmup_cosine`)

What a self-supervised encoder's frozen probe is read against: the accuracy the architecture reaches when it is
told the labels. Logs `train/loss`, `train/acc`, `train/lr`, `train/wd`, `val/loss`, `val/acc` (and `test/...`).
`encode(batch)` returns the encoder's tokens, so the frozen-evaluation callbacks (online probe, kNN, RankMe) and
the patch-level evaluation read it as they read a JEPA method.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning import LightningModule
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from jepa_lightning.optim import adamw_warmup_cosine


class SupervisedClassifier(LightningModule):
    """Encoder + mean-pool + LayerNorm + Linear head, cross-entropy on ``batch[label_key]``.

    Args:
        encoder: a token encoder (e.g. ``jepa_lightning.nn.VisionTransformer``) with an ``embed_dim`` attribute;
            ``encoder(x)`` returns [B, N, embed_dim].
        num_classes: classes of ``batch[label_key]``.
        input_key, label_key: batch keys of the input and of the int64 labels [B].
        lr, start_lr, final_lr, warmup: learning rate warms up linearly from ``start_lr`` to ``lr`` over the first
            ``warmup`` fraction of optimizer steps, then follows a cosine to ``final_lr``.
        weight_decay, final_weight_decay: cosine schedule of AdamW's decay (weight matrices only).
        betas: AdamW betas.
        label_smoothing: of the cross-entropy.
    """

    def __init__(self, encoder: nn.Module, num_classes: int = 10, input_key: str = "image", label_key: str = "label",
                 lr: float = 1e-3, start_lr: float = 1e-4, final_lr: float = 1e-6, warmup: float = 0.05,
                 weight_decay: float = 0.05, final_weight_decay: float = 0.05,
                 betas: tuple[float, float] = (0.9, 0.999), label_smoothing: float = 0.0) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        if not 0.0 <= warmup < 1.0:
            raise ValueError(f"warmup is a fraction of training in [0, 1), got {warmup}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        dim = getattr(encoder, "embed_dim", None)
        if not isinstance(dim, int):
            raise ValueError(f"encoder {type(encoder).__name__} has no integer `embed_dim` attribute (the width of "
                             "its tokens), which the head needs")
        self.save_hyperparameters(ignore=["encoder"])  # module arguments stay out: checkpoints load weights_only
        self.encoder = encoder
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))
        nn.init.trunc_normal_(self.head[1].weight, std=0.02)
        nn.init.zeros_(self.head[1].bias)
        self.num_classes, self.input_key, self.label_key = num_classes, input_key, label_key
        self.lr, self.start_lr, self.final_lr, self.warmup = lr, start_lr, final_lr, warmup
        self.weight_decay, self.final_weight_decay, self.betas = weight_decay, final_weight_decay, tuple(betas)
        self.label_smoothing = label_smoothing
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, num_classes]."""
        return self.head(self.encoder(x).mean(1))

    @torch.no_grad()
    def encode(self, batch: dict[str, Any]) -> torch.Tensor:
        """The encoder's tokens [B, N, D] in eval mode (frozen evaluation)."""
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            return self.encoder(batch[self.input_key])
        finally:
            self.encoder.train(was_training)

    def _labels(self, batch: dict[str, Any]) -> torch.Tensor:
        y = batch.get(self.label_key)
        if y is None:
            raise KeyError(f"batch has no '{self.label_key}' key (label_key); keys: {sorted(batch)}")
        return y.long()

    def training_step(self, batch: dict[str, Any] | None, batch_idx: int):
        if batch is None:  # every sample unreadable (reported by the DataModule)
            return None
        y = self._labels(batch)
        logits = self(batch[self.input_key])
        loss = F.cross_entropy(logits, y, label_smoothing=self.label_smoothing)
        bs = y.size(0)
        self.train_acc(logits.detach(), y)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=bs)
        opt = self.optimizers(use_pl_optimizer=False)
        self.log("train/lr", opt.param_groups[0]["lr"], batch_size=bs)
        self.log("train/wd", opt.param_groups[0]["weight_decay"], batch_size=bs)
        return loss

    def _evaluate(self, batch: dict[str, Any] | None, stage: str, metric: MulticlassAccuracy) -> None:
        if batch is None:
            return
        y = self._labels(batch)
        logits = self(batch[self.input_key])
        self.log(f"{stage}/loss", F.cross_entropy(logits, y), batch_size=y.size(0), sync_dist=True)
        metric(logits, y)
        self.log(f"{stage}/acc", metric, prog_bar=stage == "val", batch_size=y.size(0))

    def validation_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        self._evaluate(batch, "val", self.val_acc)

    def test_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        self._evaluate(batch, "test", self.test_acc)

    def configure_optimizers(self):
        return adamw_warmup_cosine(self.trainer, [self.encoder, self.head], owner=type(self).__name__, lr=self.lr,
                                   start_lr=self.start_lr, final_lr=self.final_lr, warmup=self.warmup,
                                   weight_decay=self.weight_decay, final_weight_decay=self.final_weight_decay,
                                   betas=self.betas, fused=self.device.type in ("cpu", "cuda"))
