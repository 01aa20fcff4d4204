"""Attentive probe on a frozen encoder: V-JEPA's frozen-evaluation protocol, as its own LightningModule."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from jepa_lightning.eval.checkpoint import load_encoder_weights
from jepa_lightning.nn.pooler import AttentivePooler
from jepa_lightning.optim import adamw_warmup_cosine


class AttentiveProbe(L.LightningModule):
    """Frozen encoder -> attentive pooler (one learned query) -> LayerNorm -> Linear(num_classes).

    The encoder (any module mapping `batch[input_key]` to tokens [B, N, D] and exposing `embed_dim`) is loaded
    from `checkpoint` (the `f"{checkpoint_key}."` weights of a training checkpoint, or a safetensors export)
    when given, never trained, and always in eval mode. Its weights are not in the optimizer and are dropped
    from this module's checkpoints; loading a probe checkpoint keeps the encoder weights the module was built
    with (built from the same `checkpoint` argument, which is saved in the hyper-parameters).

    Several views per sample (a list of tensors, or a tensor with a view axis after the batch axis, e.g.
    [B, V, 3, H, W]) run through the encoder as one batch: training takes the cross-entropy of every view (as
    V-JEPA), evaluation averages the logits over views. AdamW with linear warm-up (`warmup` is a fraction of
    the optimizer steps) and cosine decay to `final_lr`, stepped per optimizer step.
    """

    def __init__(self, encoder: nn.Module, checkpoint: str | None = None, checkpoint_key: str = "teacher",
                 num_classes: int = 1000, input_key: str = "image", label_key: str = "label", num_heads: int = 16,
                 depth: int = 1, lr: float = 1e-3, weight_decay: float = 0.01, warmup: float = 0.1,
                 final_lr: float = 0.0) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["encoder"])
        embed_dim = getattr(encoder, "embed_dim", None)
        if not isinstance(embed_dim, int):
            raise ValueError(f"AttentiveProbe needs an encoder with an integer `embed_dim`; "
                             f"{type(encoder).__name__} has {embed_dim!r}")
        if checkpoint is not None:
            load_encoder_weights(encoder, checkpoint, checkpoint_key)
        self.encoder = encoder.requires_grad_(False).eval()
        self.pooler = AttentivePooler(embed_dim, num_queries=1, num_heads=num_heads, depth=depth)
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.linear = nn.Linear(embed_dim, num_classes)
        nn.init.trunc_normal_(self.linear.weight, std=0.02)
        nn.init.zeros_(self.linear.bias)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    # ---------------------------------------------------------------- frozen encoder
    def train(self, mode: bool = True) -> AttentiveProbe:
        super().train(mode)
        self.encoder.eval()  # no dropout / drop-path / BatchNorm updates in the frozen encoder
        return self

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint["state_dict"]
        for key in [k for k in state if k.startswith("encoder.")]:
            del state[key]

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        # probe checkpoints carry no encoder: keep the current (frozen, checkpoint-loaded) encoder weights,
        # and stay strict about everything else
        state_dict = dict(state_dict)
        for key, value in self.encoder.state_dict(prefix="encoder.").items():
            state_dict.setdefault(key, value)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ---------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, ...] encoder input -> logits [B, num_classes]."""
        with torch.no_grad():
            tokens = self.encoder(x)
        return self.linear(self.norm(self.pooler(tokens).squeeze(1)))

    def _views(self, x: Any) -> list[torch.Tensor]:
        if isinstance(x, (list, tuple)):
            return list(x)
        grid = getattr(self.encoder, "grid_size", None)  # 2 axes: images [B, C, H, W]; 3: clips [B, C, T, H, W]
        if grid is not None and x.dim() == len(grid) + 3:
            return list(x.unbind(1))
        return [x]

    def view_logits(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of every view [V, B, C] and the labels [B]."""
        for key in (self.hparams.input_key, self.hparams.label_key):
            if key not in batch:
                raise KeyError(f"AttentiveProbe: batch has no key '{key}'; batch keys: {sorted(batch)}")
        views = self._views(batch[self.hparams.input_key])
        labels = batch[self.hparams.label_key].long()
        if all(v.shape == views[0].shape for v in views):
            logits = self(torch.cat(views)).unflatten(0, (len(views), -1))
        else:
            logits = torch.stack([self(v) for v in views])
        return logits, labels

    # ---------------------------------------------------------------- steps
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        logits, labels = self.view_logits(batch)
        loss = F.cross_entropy(logits.flatten(0, 1), labels.repeat(logits.size(0)))
        acc = (logits.detach().mean(0).argmax(1) == labels).float().mean()
        b = labels.size(0)
        self.log("train/loss", loss, prog_bar=True, batch_size=b)
        self.log("train/acc", acc, batch_size=b)
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=b)
        return loss

    def _eval_step(self, batch: dict[str, Any] | None, stage: str, metric: MulticlassAccuracy) -> None:
        if batch is None:  # every sample unreadable (the DataModule reported them)
            return
        logits, labels = self.view_logits(batch)
        logits = logits.mean(0)
        b = labels.size(0)
        metric.update(logits, labels)
        self.log(f"{stage}/loss", F.cross_entropy(logits, labels), sync_dist=True, batch_size=b)
        self.log(f"{stage}/acc", metric, batch_size=b)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "val", self.val_acc)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "test", self.test_acc)

    # ---------------------------------------------------------------- optimisation
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        heads = [m for name, m in self.named_children() if name != "encoder"]
        return adamw_warmup_cosine(self.trainer, heads, owner="AttentiveProbe", lr=hp.lr, start_lr=0.0,
                                   final_lr=hp.final_lr, warmup=hp.warmup, weight_decay=hp.weight_decay,
                                   final_weight_decay=hp.weight_decay)
