"""Optimizer parameter groups and step-based schedules (functions of the optimizer step, so resume is exact)."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

_NO_DECAY_NAMES = ("pos_embed", "mask_token", "cls_token", "query_tokens")


def param_groups(modules: nn.Module | Iterable[nn.Module], weight_decay: float) -> list[dict]:
    """AdamW groups: weight decay on weight matrices only; none on biases, norms, position embeddings and
    learned tokens. Each group carries `wd_scale` (1 or 0) so a schedule can move the decay of the first."""
    if isinstance(modules, nn.Module):
        modules = [modules]
    decay, no_decay, seen = [], [], set()
    for module in modules:
        for name, p in module.named_parameters():
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            leaf = name.rsplit(".", 1)[-1]
            (no_decay if p.ndim <= 1 or any(k in leaf for k in _NO_DECAY_NAMES) else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, "wd_scale": 1.0},
              {"params": no_decay, "weight_decay": 0.0, "wd_scale": 0.0}]
    return [g for g in groups if g["params"]]


def linear(step: int, total: int, start: float, end: float) -> float:
    """Linear interpolation from `start` at step 0 to `end` at `total` (held there after)."""
    t = min(max(step / max(total, 1), 0.0), 1.0)
    return start + t * (end - start)


def cosine(step: int, total: int, start: float, end: float) -> float:
    """Half-cosine from `start` at step 0 to `end` at `total` (held there after)."""
    t = min(max(step / max(total, 1), 0.0), 1.0)
    return end + 0.5 * (start - end) * (1.0 + math.cos(math.pi * t))


def warmup_cosine(step: int, total: int, warmup: int, start: float, peak: float, final: float) -> float:
    """Linear warm-up from `start` to `peak` over `warmup` steps, then cosine decay to `final` at `total`."""
    if step < warmup:
        return linear(step, warmup, start, peak)
    return cosine(step - warmup, total - warmup, peak, final)


class WarmupCosineSchedule(torch.optim.lr_scheduler.LRScheduler):
    """Per-step learning rate (warm-up + cosine) and weight decay (cosine), as in I-JEPA / V-JEPA.

    `last_epoch` counts optimizer steps (Lightning steps it with `interval="step"`, so gradient
    accumulation is counted in optimizer steps) and is saved in checkpoints, so a resumed run continues on
    the same curve. Groups with `wd_scale` 0 keep zero weight decay.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int, start_lr: float,
                 lr: float, final_lr: float, weight_decay: float, final_weight_decay: float,
                 last_epoch: int = -1) -> None:
        self.total_steps, self.warmup_steps = int(total_steps), int(warmup_steps)
        self.start_lr, self.peak_lr, self.final_lr = start_lr, lr, final_lr
        self.weight_decay, self.final_weight_decay = weight_decay, final_weight_decay
        super().__init__(optimizer, last_epoch)

    def lr_at(self, step: int) -> float:
        return warmup_cosine(step, self.total_steps, self.warmup_steps, self.start_lr, self.peak_lr, self.final_lr)

    def wd_at(self, step: int) -> float:
        return cosine(step, self.total_steps, self.weight_decay, self.final_weight_decay)

    def get_lr(self) -> list[float]:
        lr = self.lr_at(self.last_epoch)
        return [lr * g.get("lr_scale", 1.0) for g in self.optimizer.param_groups]

    def step(self, epoch: int | None = None) -> None:  # noqa: D102 - torch's signature
        super().step(epoch)
        wd = self.wd_at(self.last_epoch)
        for g in self.optimizer.param_groups:
            g["weight_decay"] = wd * g.get("wd_scale", 1.0)


def run_steps(trainer, owner: str) -> int:
    """The optimizer steps of the whole run (`trainer.estimated_stepping_batches`, at least 1), which step-based
    schedules span; a run without an end (no max_epochs / max_steps) is an error naming `owner`."""
    total = trainer.estimated_stepping_batches
    if not math.isfinite(total):
        raise ValueError(f"{owner}'s schedule needs a finite run: set max_epochs or max_steps")
    return max(int(total), 1)


def adamw_warmup_cosine(trainer, modules: nn.Module | Iterable[nn.Module], *, owner: str, lr: float,
                        start_lr: float, final_lr: float, warmup: float, weight_decay: float,
                        final_weight_decay: float, betas: tuple[float, float] = (0.9, 0.999),
                        fused: bool | None = None) -> dict:
    """What a LightningModule's `configure_optimizers` returns for the JEPA recipe: AdamW over
    `param_groups(modules, weight_decay)` and a `WarmupCosineSchedule` stepped per optimizer step over the whole
    run (`trainer.estimated_stepping_batches`; `warmup` is a fraction of it). `owner` names the module in the
    error a run without an end (no max_epochs / max_steps) gets."""
    total = run_steps(trainer, owner)
    optimizer = torch.optim.AdamW(param_groups(modules, weight_decay), lr=lr, betas=tuple(betas), fused=fused)
    scheduler = WarmupCosineSchedule(optimizer, total, int(warmup * total), start_lr, lr, final_lr, weight_decay,
                                     final_weight_decay)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
