"""Online linear probe + kNN + RankMe on the frozen features of the evaluation encoder, during `fit`."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from jepa_lightning.eval.knn import knn_predict
from jepa_lightning.eval.rankme import RankMe


class OnlineProbe(L.Callback):
    """Train a linear classifier on DETACHED features while the method trains, and report it on validation.

    Head: BatchNorm1d(affine=False) + Linear, as MAE's linear probe (the parameter-free BatchNorm whitens the
    features, so one learning rate suits any feature scale). It has its own AdamW, stepped in
    `on_train_batch_end` on `outputs["features"]` (the method's pooled evaluation-encoder features of that
    batch; if absent, `pl_module.encode(batch).mean(1)`) and `batch[label_key]`. Nothing flows back into the
    method. Logs `train/probe_loss`, `train/probe_acc`. Several probes can watch different label keys of the same
    batch (e.g. appearance and motion labels of a video): a probe on a key other than `label` names its metrics
    after it (`train/motion_probe_acc`, `val/motion_probe_acc`, `val/motion_knn_acc`, `val/motion_rankme`).

    Validation features are `pl_module.encode(batch).mean(1)`. At the end of validation it logs
    `val/probe_acc`, `val/knn_acc` (weighted kNN, k=`knn_k`, against a FIFO bank of the last `knn_bank_size`
    training features of this process; skipped while the bank is empty, e.g. `validate` from a checkpoint),
    and `val/rankme`.

    The head, its BatchNorm statistics and its optimizer are saved in the Lightning checkpoint (under this
    callback's `state_key`), so `validate(ckpt_path=...)` reports the trained probe; the kNN bank is not saved.
    Under DDP the head's gradients and BatchNorm running statistics are averaged over processes before each
    step, so every process holds the same head.
    """

    def __init__(self, num_classes: int, lr: float = 1e-3, weight_decay: float = 0.0, label_key: str = "label",
                 knn_k: int = 20, knn_bank_size: int = 8192) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"OnlineProbe needs num_classes >= 2, got {num_classes}")
        self.num_classes, self.lr, self.weight_decay = num_classes, lr, weight_decay
        self.label_key, self.knn_k, self.knn_bank_size = label_key, knn_k, knn_bank_size
        self.prefix = "" if label_key == "label" else f"{label_key}_"
        self.head: nn.Sequential | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._pending_state: dict[str, Any] | None = None
        self._bank: torch.Tensor | None = None
        self._bank_labels: torch.Tensor | None = None
        self._bank_ptr = self._bank_filled = 0
        self._val_acc = MulticlassAccuracy(num_classes, average="micro")
        self._val_knn_acc = MulticlassAccuracy(num_classes, average="micro")
        self._val_rankme = RankMe()

    @property
    def state_key(self) -> str:
        return self._generate_state_key(num_classes=self.num_classes, label_key=self.label_key)

    # ---------------------------------------------------------------- head, lazily built on the module's device
    def _get_head(self, dim: int, device: torch.device) -> nn.Sequential:
        if self.head is None or self.head[1].weight.device != device:
            # parameters made under Lightning's validation inference_mode would be unusable for training
            with torch.inference_mode(False), torch.no_grad():
                state = self.state_dict() if self.head is not None else self._pending_state
                if state is not None and state["in_features"] != dim:
                    raise ValueError(f"OnlineProbe state is for {state['in_features']}-d features, "
                                     f"but the module gives {dim}-d features")
                self.head = nn.Sequential(nn.BatchNorm1d(dim, affine=False), nn.Linear(dim, self.num_classes))
                self.head.to(device)
                self.optimizer = torch.optim.AdamW(self.head.parameters(), lr=self.lr,
                                                   weight_decay=self.weight_decay)
                if state is not None:
                    self.head.load_state_dict(state["head"])
                    self.optimizer.load_state_dict(state["optimizer"])
                self._pending_state = None
        return self.head

    def state_dict(self) -> dict[str, Any]:
        if self.head is None:
            return dict(self._pending_state or {})
        return {"in_features": self.head[1].in_features, "head": self.head.state_dict(),
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # applied on first use, once the device and feature width are known
        self._pending_state = dict(state_dict)
        self.head = self.optimizer = None

    # ---------------------------------------------------------------- batch helpers
    def _labels(self, batch: Any) -> torch.Tensor:
        if not isinstance(batch, dict):
            raise TypeError(f"OnlineProbe expects dict batches, got {type(batch).__name__}")
        if self.label_key not in batch:
            raise KeyError(f"OnlineProbe: batch has no label key '{self.label_key}'; batch keys: {sorted(batch)}")
        return batch[self.label_key].long().reshape(-1)

    @staticmethod
    def _encode(trainer: L.Trainer, pl_module: L.LightningModule, batch: Any) -> torch.Tensor:
        if not hasattr(pl_module, "encode"):
            raise AttributeError(f"OnlineProbe needs {type(pl_module).__name__}.encode(batch) -> [B, N, D]")
        # hooks run outside the step's autocast: encode in the precision the method trains in
        with torch.no_grad(), trainer.precision_plugin.forward_context():
            return pl_module.encode(batch).mean(1)

    @staticmethod
    def _sync_head(head: nn.Module) -> None:
        """Average gradients and BatchNorm running statistics over processes: one all-reduce per step."""
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        tensors = [p.grad for p in head.parameters()] + [b for b in head.buffers() if b.is_floating_point()]
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        chunks = flat.split([t.numel() for t in tensors])
        torch._foreach_copy_(tensors, [c.view_as(t) for c, t in zip(chunks, tensors)])

    def _push_bank(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        if self.knn_bank_size <= 0:
            return
        if self._bank is None or self._bank.shape[1] != features.shape[1] or self._bank.device != features.device:
            self._bank = features.new_zeros(self.knn_bank_size, features.shape[1])
            self._bank_labels = labels.new_zeros(self.knn_bank_size)
            self._bank_ptr = self._bank_filled = 0
        features, labels = features[-self.knn_bank_size:], labels[-self.knn_bank_size:]
        idx = (self._bank_ptr + torch.arange(features.size(0), device=features.device)) % self.knn_bank_size
        self._bank[idx], self._bank_labels[idx] = features, labels
        self._bank_ptr = (self._bank_ptr + features.size(0)) % self.knn_bank_size
        self._bank_filled = min(self._bank_filled + features.size(0), self.knn_bank_size)

    # ---------------------------------------------------------------- training
    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if batch is None:  # no readable sample (the DataModule reported them): Lightning skipped the step
            return
        labels = self._labels(batch)
        features = outputs.get("features") if isinstance(outputs, dict) else None
        if features is None:
            features = self._encode(trainer, pl_module, batch)
        features = features.detach().float().reshape(labels.size(0), -1)
        self._push_bank(features, labels)
        # BatchNorm needs two samples; decided by all ranks together: the step below all-reduces gradients and logs
        if trainer.strategy.reduce_boolean_decision(features.size(0) < 2, all=False):
            return
        head = self._get_head(features.size(1), pl_module.device)
        head.train()
        with torch.enable_grad():
            logits = head(features)
            loss = F.cross_entropy(logits, labels)
            self.optimizer.zero_grad(set_to_none=False)
            loss.backward()
        self._sync_head(head)
        self.optimizer.step()
        acc = (logits.detach().argmax(1) == labels).float().mean()
        b = labels.size(0)
        pl_module.log(f"train/{self.prefix}probe_loss", loss.detach(), on_step=True, on_epoch=False, sync_dist=True, batch_size=b)
        pl_module.log(f"train/{self.prefix}probe_acc", acc, on_step=True, on_epoch=False, sync_dist=True, batch_size=b)

    # ---------------------------------------------------------------- validation
    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for metric in (self._val_acc, self._val_knn_acc, self._val_rankme):
            metric.to(pl_module.device).reset()

    def on_validation_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        labels = self._labels(batch)
        features = self._encode(trainer, pl_module, batch).float()
        head = self._get_head(features.size(1), pl_module.device)
        head.eval()
        with torch.no_grad():
            self._val_acc.update(head(features), labels)
            if self._bank_filled:
                preds = knn_predict(self._bank[:self._bank_filled], self._bank_labels[:self._bank_filled],
                                    features, k=self.knn_k, num_classes=self.num_classes)
                self._val_knn_acc.update(preds, labels)
        self._val_rankme.update(features)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._val_acc.update_called:
            return
        pl_module.log(f"val/{self.prefix}probe_acc", self._val_acc.compute(), sync_dist=True)
        if self._val_knn_acc.update_called:
            pl_module.log(f"val/{self.prefix}knn_acc", self._val_knn_acc.compute(), sync_dist=True)
        pl_module.log(f"val/{self.prefix}rankme", self._val_rankme.compute(), sync_dist=True)
