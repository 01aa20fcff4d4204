"""Invariance and equivariance of a frozen seq-JEPA, as in the paper's evaluation.

- Invariance: a linear classifier on the aggregate representation of a sequence of ``seq_len`` views
  (:func:`linear_accuracy`).
- Per-view encoder features, next to the aggregate (``encoder_views=True``): a linear classifier on the encoder
  output of a single view and on the mean of the encoder outputs of L views. They separate what the encoder
  learns from what the aggregator keeps of it.
- Equivariance: an MLP regressing the relative transformation between two consecutive views (the action
  difference ``rel_actions[:, i]``, view i -> view i + 1, over every consecutive pair of the views encoded) from
  the pair of their encoder outputs ``[z_i; z_{i+1}]``, scored by
  the coefficient of determination R^2 on held-out sequences (:func:`regression_r2`, torchmetrics'
  ``r2_score``, averaged uniformly over the action's entries).

Both fit on features of the training split (views fixed per index) and score on the validation split.
:class:`SeqJEPAEvaluation` runs both at the end of validation and logs ``val/agg_linear_acc`` and
``val/equivariance_r2``. Any model with ``aggregate_views(views, rel_actions, seq_len)`` and
``view_features(views)`` (e.g. :class:`~jepa_lightning.methods.seq_jepa.SeqJEPA`) can be evaluated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.regression import r2_score

from jepa_lightning.eval.frozen_heads import fit_linear


@torch.no_grad()
def collect(model: nn.Module, loader: Iterable[Any], seq_lens: Sequence[int] = (1,), datamodule: Any = None,
            device: torch.device | str | None = None, encoder_views: bool = False) -> dict[str, torch.Tensor]:
    """One pass over ``loader``: ``agg_<L>`` (the aggregate of the first L views, for each L in ``seq_lens``),
    ``pair`` ``[P * N, 2D]`` (encoder outputs of views i and i + 1) and ``rel`` ``[P * N, A]`` (their relative
    action) for every consecutive pair among the views encoded (P = 1 without ``encoder_views``: views 1 and 2;
    P = max(2, *seq_lens) - 1 with it), and ``label``; with ``encoder_views`` also ``view_mean_<L>`` ``[N, D]``,
    the mean of the encoder outputs of the first L views (``view_mean_1``: view 1 alone). ``datamodule.on_before_batch_transfer`` drops unreadable
    samples when given."""
    was_training = model.training
    model.eval()
    device = device or next(model.parameters()).device
    out: dict[str, list[torch.Tensor]] = {}
    for batch in loader:
        if datamodule is not None:
            batch = datamodule.on_before_batch_transfer(batch, 0)
        if batch is None:
            continue
        views, rel = batch["views"].to(device), batch["rel_actions"].to(device)
        if views.shape[1] < max(2, *seq_lens):
            raise ValueError(f"equivariance evaluation needs sequences of at least {max(2, *seq_lens)} views, got "
                             f"{views.shape[1]}; raise the DataModule's val_seq_len")
        z = model.view_features(views[:, :max(2, *seq_lens)] if encoder_views else views[:, :2])
        # every consecutive pair of the views encoded, (1, 2), (2, 3), ...: [B, P, 2D] and [B, P, A]
        pairs = torch.cat([z[:, :-1], z[:, 1:]], dim=-1)
        got = {"pair": pairs, "rel": rel[:, :pairs.shape[1]], "label": batch["label"].to(device)}
        for n in seq_lens:
            got[f"agg_{n}"] = model.aggregate_views(views, rel, n)
            if encoder_views:
                got[f"view_mean_{n}"] = z[:, :n].mean(1)
        for k, v in got.items():
            out.setdefault(k, []).append(v.float().cpu() if k != "label" else v.cpu())
    model.train(was_training)
    got = {k: torch.cat(v) for k, v in out.items()}
    return got | {"pair": got["pair"].flatten(0, 1), "rel": got["rel"].flatten(0, 1)}   # sequence-major


def _standardize(xtr: torch.Tensor, xva: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mu, sd = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
    return (xtr - mu) / sd, (xva - mu) / sd


def _fit(head: nn.Module, x: torch.Tensor, loss_fn, steps: int, lr: float, weight_decay: float,
         batch_size: int, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    head.train()
    with torch.enable_grad(), torch.inference_mode(False):
        for _ in range(steps):
            idx = torch.randint(0, x.shape[0], (min(batch_size, x.shape[0]),), generator=g)
            loss = loss_fn(head, idx)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return head.eval()


def linear_accuracy(xtr: torch.Tensor, ytr: torch.Tensor, xva: torch.Tensor, yva: torch.Tensor,
                    l2: float = 1e-3) -> float:
    """Validation accuracy of a linear (softmax) classifier solved exactly on standardized training features
    (`jepa_lightning.eval.frozen_heads.fit_linear`, L2 strength ``l2``)."""
    num_classes = int(max(ytr.max(), yva.max())) + 1
    with torch.enable_grad(), torch.inference_mode(False):
        return fit_linear(xtr, ytr, xva, yva, "classification", num_classes, l2=l2).val


def regression_r2(xtr: torch.Tensor, ytr: torch.Tensor, xva: torch.Tensor, yva: torch.Tensor, hidden: int = 256,
                  steps: int = 1500, lr: float = 2e-3, weight_decay: float = 1e-4, batch_size: int = 256,
                  seed: int = 0) -> float:
    """R^2 (uniform average over outputs) on the validation set of an MLP (two hidden ReLU layers) regressing
    ``y`` from standardized ``x``; targets are standardized for training."""
    xtr, xva = _standardize(xtr.float(), xva.float())
    mu, sd = ytr.float().mean(0), ytr.float().std(0).clamp_min(1e-6)
    ttr = (ytr.float() - mu) / sd
    torch.manual_seed(seed)
    head = nn.Sequential(nn.Linear(xtr.shape[1], hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, ytr.shape[1]))
    head = _fit(head, xtr, lambda h, i: F.mse_loss(h(xtr[i]), ttr[i]), steps, lr, weight_decay, batch_size, seed)
    with torch.no_grad():
        pred = head(xva) * sd + mu
    return float(r2_score(pred, yva.float(), multioutput="uniform_average"))


def evaluate(model: nn.Module, train_loader: Iterable[Any], val_loader: Iterable[Any],
             seq_lens: Sequence[int] = (1,), datamodule: Any = None, regression_steps: int = 1500,
             seed: int = 0, encoder_views: bool = False) -> dict[str, float]:
    """``agg_linear_acc_<L>`` for each L in ``seq_lens`` and ``equivariance_r2``; with ``encoder_views`` also
    ``encoder_linear_acc_<L>``, the linear accuracy on the mean of the encoder outputs of the first L views
    (L = 1: a single view's encoder output)."""
    tr = collect(model, train_loader, seq_lens, datamodule, encoder_views=encoder_views)
    va = collect(model, val_loader, seq_lens, datamodule, encoder_views=encoder_views)
    out = {f"agg_linear_acc_{n}": linear_accuracy(tr[f"agg_{n}"], tr["label"], va[f"agg_{n}"], va["label"])
           for n in seq_lens}
    if encoder_views:
        out |= {f"encoder_linear_acc_{n}": linear_accuracy(tr[f"view_mean_{n}"], tr["label"], va[f"view_mean_{n}"],
                                                           va["label"]) for n in seq_lens}
    out["equivariance_r2"] = regression_r2(tr["pair"], tr["rel"], va["pair"], va["rel"], steps=regression_steps,
                                           seed=seed)
    return out


class SeqJEPAEvaluation(L.Callback):
    """At the end of validation (every ``every_n_epochs`` epochs of ``fit``, and in ``validate``): fits the
    linear classifier on the aggregate of ``seq_len`` views and the relative-transformation regressor on the
    training split's fixed sequences (``datamodule.train_eval_dataloader()``), scores them on the validation
    dataloader, and logs ``val/agg_linear_acc`` and ``val/equivariance_r2``. It costs one pass over both splits
    with the frozen model plus the fits of two small heads."""

    def __init__(self, seq_len: int = 1, every_n_epochs: int = 1, regression_steps: int = 1000) -> None:
        if seq_len < 1 or every_n_epochs < 1:
            raise ValueError(f"SeqJEPAEvaluation: seq_len and every_n_epochs must be >= 1, got {seq_len}, "
                             f"{every_n_epochs}")
        self.seq_len, self.every_n_epochs, self.regression_steps = seq_len, every_n_epochs, regression_steps

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or (trainer.state.fn == "fit"
                                       and (trainer.current_epoch + 1) % self.every_n_epochs):
            return
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "train_eval_dataloader"):
            raise ValueError("SeqJEPAEvaluation needs a DataModule with train_eval_dataloader() (e.g. "
                             "datamodules.views.ViewSequenceDataModule)")
        with torch.inference_mode(False):  # Lightning validates in inference mode; the heads need autograd
            res = evaluate(pl_module, dm.train_eval_dataloader(), trainer.val_dataloaders, (self.seq_len,), dm,
                           self.regression_steps)
        pl_module.log("val/agg_linear_acc", res[f"agg_linear_acc_{self.seq_len}"])
        pl_module.log("val/equivariance_r2", res["equivariance_r2"])
