"""Supervised heads on frozen features: linear and MLP, for classification (accuracy) or regression (RMSE).

T-JEPA's downstream protocol: embed every row once with the frozen encoder, then fit a small head on the
embeddings of the training split and compare with the same head on the raw features (numeric columns + one-hot
categorical columns). Inputs are standardized with the training split's statistics; a regression target is
standardized too (training statistics) and predictions are mapped back, so RMSE is reported in the target's units.

A fair comparison needs every head converged and tuned the same way for every input:
- `fit_linear`: the linear head solved to convergence, full batch (multinomial logistic regression by L-BFGS,
  or ridge least squares in closed form), for each L2 strength of a small grid; the strength is picked on the
  validation split (`select_linear`);
- `fit_head`: an MLP (or linear) head by AdamW on mini-batches with early stopping on the validation loss;
  `select_mlp` fits one per configuration of a small grid (`MLP_GRID`) and picks one on the validation split.
Selection compares the validation metric (accuracy, or RMSE), ties broken by the validation loss; the test
split is only scored. `kind="reference"` is the official T-JEPA code's downstream MLP (each of T tokens to a
scalar, then Linear + BatchNorm'd ReLU layers), for protocol comparisons (benchmarks/fidelity/t_jepa.py
`--reference-head`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanSquaredError, Metric
from torchmetrics.classification import MulticlassAccuracy

from jepa_lightning.eval.rankme import effective_rank

Task = Literal["classification", "regression"]
HeadKind = Literal["linear", "mlp", "reference"]


def raw_features(num: torch.Tensor, cat: torch.Tensor | None, cardinalities: list[int]) -> torch.Tensor:
    """The baseline's input: numeric columns followed by one-hot categorical columns, [B, Fn + sum(card)]."""
    parts = [num.float()]
    if cat is not None and cat.numel():
        parts += [F.one_hot(cat[:, j], c).float() for j, c in enumerate(cardinalities)]
    return torch.cat(parts, dim=1)


def metric_for(task: Task, num_classes: int) -> Metric:
    """Accuracy (micro) for classification, RMSE for regression."""
    if task == "classification":
        return MulticlassAccuracy(num_classes, average="micro")
    if task == "regression":
        return MeanSquaredError(squared=False)
    raise ValueError(f"task must be 'classification' or 'regression', got {task!r}")


class Head(nn.Module):
    """Standardize the input (buffers), apply a linear map, an MLP or the reference MLP, un-standardize a
    regression output."""

    def __init__(self, in_dim: int, out_dim: int, kind: HeadKind = "linear", hidden: int = 256,
                 depth: int = 2, dropout: float = 0.1, tokens: int = 0) -> None:
        super().__init__()
        if kind == "linear":
            self.net: nn.Module = nn.Linear(in_dim, out_dim)
        elif kind == "mlp":
            layers: list[nn.Module] = []
            for i in range(depth):
                layers += [nn.Linear(in_dim if i == 0 else hidden, hidden), nn.ReLU(), nn.Dropout(dropout)]
            self.net = nn.Sequential(*layers, nn.Linear(hidden, out_dim))
        elif kind == "reference":  # T-JEPA's downstream MLP (jose-melo/t-jepa src/models/mlp.py)
            if tokens < 0 or (tokens and in_dim % tokens):
                raise ValueError(f"a reference head on {tokens} tokens needs in_dim divisible by them, got {in_dim}")
            first: list[nn.Module] = [TokenScalars(tokens, in_dim // tokens)] if tokens else []
            layers = [*first, nn.Linear(tokens or in_dim, hidden)]
            for _ in range(depth - 1):
                layers += [nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout), nn.BatchNorm1d(hidden)]
            self.net = nn.Sequential(*layers, nn.Linear(hidden, out_dim))
        else:
            raise ValueError(f"head kind must be 'linear', 'mlp' or 'reference', got {kind!r}")
        for name, size in (("x_mean", in_dim), ("x_std", in_dim), ("y_mean", 1), ("y_std", 1)):
            self.register_buffer(name, torch.zeros(size) if "mean" in name else torch.ones(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits [B, C] (classification) or predictions in target units [B] (regression, out_dim 1)."""
        out = self.net((x - self.x_mean) / self.x_std)
        return out.squeeze(-1) * self.y_std + self.y_mean if out.size(-1) == 1 else out


class TokenScalars(nn.Module):
    """[B, T * D] flattened tokens -> [B, T]: one learned linear map to a scalar per token (T-JEPA's
    `linear_per_feature` reduction before its downstream MLP)."""

    def __init__(self, tokens: int, dim: int) -> None:
        super().__init__()
        if tokens < 1 or dim < 1:
            raise ValueError(f"TokenScalars needs tokens >= 1 and dim >= 1, got {tokens}, {dim}")
        self.tokens, self.dim = tokens, dim
        self.weight = nn.Parameter(torch.empty(tokens, dim).uniform_(-dim ** -0.5, dim ** -0.5))
        self.bias = nn.Parameter(torch.zeros(tokens))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.view(x.size(0), self.tokens, self.dim) * self.weight).sum(-1) + self.bias


@dataclass
class HeadResult:
    head: Head
    val: float          # accuracy or RMSE on the validation split at the chosen epoch
    epoch: int          # the chosen epoch (lowest validation loss; the last one without selection)
    test: float | None  # the same metric on the test split, when given
    val_loss: float = math.nan  # cross-entropy, or MSE on the standardized target, on the validation split
    config: dict[str, Any] = field(default_factory=dict)  # the hyper-parameters that produced this head


@torch.no_grad()
def evaluate(head: Head, x: torch.Tensor, y: torch.Tensor, task: Task, num_classes: int,
             batch_size: int = 4096) -> float:
    """Accuracy or RMSE (target units) of `head` on (x, y)."""
    head.eval()
    metric = metric_for(task, num_classes).to(x.device)
    for i in range(0, len(x), batch_size):
        out = head(x[i:i + batch_size])
        metric.update(out if task == "classification" else out.float(), y[i:i + batch_size])
    return float(metric.compute())


def _new_head(x_train: torch.Tensor, y_train: torch.Tensor, task: Task, num_classes: int,
              kind: HeadKind, hidden: int, dropout: float, seed: int, depth: int = 2, tokens: int = 0) -> Head:
    """A head whose standardization buffers hold the training split's statistics (seeded initialisation)."""
    if task == "classification" and num_classes < 2:
        raise ValueError(f"classification needs num_classes >= 2, got {num_classes}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = Head(x_train.size(1), num_classes if task == "classification" else 1, kind, hidden, depth=depth,
                    dropout=dropout, tokens=tokens).to(x_train.device)
    head.x_mean.copy_(x_train.mean(0))
    head.x_std.copy_(x_train.std(0).nan_to_num(1.0).clamp_min(1e-6))
    if task == "regression":
        head.y_mean.fill_(float(y_train.float().mean()))
        head.y_std.fill_(float(y_train.float().std().nan_to_num(1.0).clamp_min(1e-6)))
    return head


def head_loss(head: Head, out: torch.Tensor, y: torch.Tensor, task: Task) -> torch.Tensor:
    """Cross-entropy (classification) or MSE on the standardized target (regression)."""
    if task == "classification":
        return F.cross_entropy(out, y)
    return F.mse_loss((out - head.y_mean) / head.y_std, (y.float() - head.y_mean) / head.y_std)


def _finish(head: Head, x_val: torch.Tensor, y_val: torch.Tensor, task: Task, num_classes: int, epoch: int,
            x_test: torch.Tensor | None, y_test: torch.Tensor | None, config: dict[str, Any]) -> HeadResult:
    head.eval()
    with torch.no_grad():
        val_loss = float(head_loss(head, head(x_val), y_val, task))
    test = None
    if x_test is not None and y_test is not None:
        test = evaluate(head, x_test.detach().float().flatten(1), y_test, task, num_classes)
    return HeadResult(head=head, val=evaluate(head, x_val, y_val, task, num_classes), epoch=epoch, test=test,
                      val_loss=val_loss, config=config)


def fit_head(x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
             task: Task, num_classes: int = 0, kind: HeadKind = "linear", *,
             epochs: int = 200, patience: int | None = 30, lr: float = 1e-3, weight_decay: float = 1e-4,
             batch_size: int = 128, hidden: int = 256, dropout: float = 0.1, seed: int = 0, depth: int = 2,
             tokens: int = 0,
             select_best: bool = True, x_test: torch.Tensor | None = None, y_test: torch.Tensor | None = None) -> HeadResult:
    """Fit a head with AdamW on mini-batches of the training split for at most `epochs` epochs, keep the weights
    of the epoch with the lowest validation loss (cross-entropy, or MSE on the standardized target), stop after
    `patience` epochs without improvement (None: the full budget). With `select_best=False` the last epoch's
    weights are kept (a fixed budget, when the validation split is the one reported). Deterministic given
    `seed`."""
    x_train, x_val = x_train.detach().float().flatten(1), x_val.detach().float().flatten(1)
    if task == "regression":
        y_train, y_val = y_train.float(), y_val.float()
    head = _new_head(x_train, y_train, task, num_classes, kind, hidden, dropout, seed, depth, tokens)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    best, best_state, best_epoch, n = math.inf, copy.deepcopy(head.state_dict()), 0, len(x_train)
    for epoch in range(1, epochs + 1):
        head.train()
        for idx in torch.randperm(n, generator=gen).to(x_train.device).split(batch_size):
            if len(idx) < 2 and n >= 2:  # a single-row last batch adds only noise
                continue
            loss = head_loss(head, head(x_train[idx]), y_train[idx], task)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        head.eval()
        with torch.no_grad():
            val_loss = float(head_loss(head, head(x_val), y_val, task))
        if val_loss < best:
            best, best_state, best_epoch = val_loss, copy.deepcopy(head.state_dict()), epoch
        elif patience is not None and epoch - best_epoch >= patience:
            break
    if select_best:
        head.load_state_dict(best_state)
    else:
        best_epoch = epoch
    config = {"kind": kind, "lr": lr, "weight_decay": weight_decay, "hidden": hidden, "dropout": dropout,
              "batch_size": batch_size} | ({"depth": depth, "tokens": tokens} if kind == "reference" else {})
    return _finish(head, x_val, y_val, task, num_classes, best_epoch, x_test, y_test, config)


def fit_linear(x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
               task: Task, num_classes: int = 0, *, l2: float = 1e-2, max_iter: int = 500,
               init: Head | None = None, x_test: torch.Tensor | None = None,
               y_test: torch.Tensor | None = None) -> HeadResult:
    """The linear head solved to convergence on the whole training split (standardized inputs).

    Classification: multinomial logistic regression, mean cross-entropy + l2/2 ||W||^2 (bias not penalized),
    minimised by full-batch L-BFGS with a strong-Wolfe line search (`max_iter` iterations at most; convex, so
    the optimum does not depend on the start: `init`, a head of the same shape, only warm-starts it).
    Regression: ridge least squares on the standardized target, mean squared error + l2 ||W||^2, in closed
    form (the n x n dual system when there are more features than rows)."""
    x_train, x_val = x_train.detach().float().flatten(1), x_val.detach().float().flatten(1)
    if l2 < 0:
        raise ValueError(f"l2 must be >= 0, got {l2}")
    if task == "regression":
        y_train, y_val = y_train.float(), y_val.float()
    head = _new_head(x_train, y_train, task, num_classes, "linear", 0, 0.0, 0)
    lin: nn.Linear = head.net  # type: ignore[assignment]
    z = ((x_train - head.x_mean) / head.x_std).double()
    if task == "regression":
        t = ((y_train - head.y_mean) / head.y_std).double()
        n, d = z.shape
        zc, tc = z - z.mean(0), t - t.mean()
        reg = max(l2, 1e-10) * n
        if d <= n:
            w = torch.linalg.solve(zc.T @ zc + reg * torch.eye(d, dtype=z.dtype, device=z.device), zc.T @ tc)
        else:
            w = zc.T @ torch.linalg.solve(zc @ zc.T + reg * torch.eye(n, dtype=z.dtype, device=z.device), tc)
        with torch.no_grad():
            lin.weight.copy_(w.float()[None])
            lin.bias.fill_(float(t.mean() - z.mean(0) @ w))
    else:
        z = z.float()
        if init is not None:
            lin.load_state_dict(init.net.state_dict())
        else:
            with torch.no_grad():
                lin.weight.zero_()
                lin.bias.zero_()
        opt = torch.optim.LBFGS(lin.parameters(), lr=1.0, max_iter=max_iter, history_size=20,
                                tolerance_grad=1e-6, tolerance_change=1e-10, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(lin(z), y_train) + 0.5 * l2 * lin.weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
    return _finish(head, x_val, y_val, task, num_classes, 0, x_test, y_test, {"kind": "linear", "l2": l2})


L2_GRID: tuple[float, ...] = (1.0, 1e-1, 1e-2, 1e-3, 1e-4)
MLP_GRID: tuple[dict[str, Any], ...] = tuple(
    {"hidden": h, "dropout": p, "weight_decay": 1e-4, "lr": 1e-3} for h in (64, 256) for p in (0.1, 0.5))


def _better(a: HeadResult, b: HeadResult | None, task: Task) -> bool:
    """Is `a` better than `b` on the validation split: metric first (accuracy up, RMSE down), then loss."""
    if b is None:
        return True
    key = (lambda r: (-r.val, r.val_loss)) if task == "classification" else (lambda r: (r.val, r.val_loss))
    return key(a) < key(b)


def select_linear(x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
                  task: Task, num_classes: int = 0, *, l2_grid: tuple[float, ...] = L2_GRID,
                  x_test: torch.Tensor | None = None, y_test: torch.Tensor | None = None) -> HeadResult:
    """`fit_linear` for every L2 strength of `l2_grid` (strongest first, each warm-starting the next), the one
    best on the validation split (see `_better`), with its test score."""
    if not l2_grid:
        raise ValueError("l2_grid is empty: give at least one L2 strength")
    best, prev = None, None
    for l2 in sorted(l2_grid, reverse=True):
        res = fit_linear(x_train, y_train, x_val, y_val, task, num_classes, l2=l2, init=prev, x_test=x_test,
                         y_test=y_test)
        prev = res.head
        if _better(res, best, task):
            best = res
    return best  # type: ignore[return-value]


def select_mlp(x_train: torch.Tensor, y_train: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor,
               task: Task, num_classes: int = 0, *, grid: tuple[dict[str, Any], ...] = MLP_GRID,
               epochs: int = 200, patience: int = 20, batch_size: int = 128, seed: int = 0,
               kind: HeadKind = "mlp", tokens: int = 0,
               x_test: torch.Tensor | None = None, y_test: torch.Tensor | None = None) -> HeadResult:
    """`fit_head(kind)` with early stopping for every configuration of `grid` (keys among hidden, depth,
    dropout, lr, weight_decay), the one best on the validation split (see `_better`), with its test score.
    `kind="reference"` with `tokens` = T: T-JEPA's downstream MLP on T flattened tokens."""
    if not grid:
        raise ValueError("grid is empty: give at least one MLP configuration")
    best = None
    for cfg in grid:
        unknown = set(cfg) - {"hidden", "depth", "dropout", "lr", "weight_decay"}
        if unknown:
            raise ValueError(f"MLP grid entry {cfg} has unknown keys {sorted(unknown)}; expected hidden, depth, "
                             "dropout, lr, weight_decay")
        res = fit_head(x_train, y_train, x_val, y_val, task, num_classes, kind, epochs=epochs, patience=patience,
                       batch_size=batch_size, seed=seed, tokens=tokens, x_test=x_test, y_test=y_test, **cfg)
        if _better(res, best, task):
            best = res
    return best  # type: ignore[return-value]


@torch.no_grad()
def embed_loader(pl_module: L.LightningModule, loader, datamodule: Any = None,
                 encode: Callable[[dict[str, Any]], torch.Tensor] | None = None,
                 label_key: str = "label") -> tuple[torch.Tensor, torch.Tensor]:
    """(features [n, F], labels [n]) over a DataLoader, batches moved to the module's device and unreadable ones
    skipped. Features: `encode(batch)` (default: `pl_module.encode(batch)` flattened to [n, N D])."""
    feats, labels = [], []
    for batch in loader:
        if datamodule is not None:
            batch = datamodule.on_before_batch_transfer(batch, 0)
        if batch is None:
            continue
        batch = {k: v.to(pl_module.device) if torch.is_tensor(v) else v for k, v in batch.items()}
        feats.append(encode(batch) if encode is not None else pl_module.encode(batch).float().flatten(1))
        labels.append(batch[label_key])
    if not feats:
        raise ValueError("embed_loader: the DataLoader gave no readable batch")
    return torch.cat(feats), torch.cat(labels)


class FrozenHeads(L.Callback):
    """At the end of validation (in `fit` every `every_n_epochs` epochs, and in `validate`): embed the
    training split (`datamodule.train_eval_dataloader()`) and the validation split with `pl_module.encode`,
    fit on the training embeddings a linear head to convergence (`fit_linear`, L2 strength `l2`) and an MLP
    head for a fixed budget of `epochs` (no selection on the validation split, which is the one reported), and
    log `val/linear_acc`, `val/mlp_acc` (or `_rmse` for regression; task and classes from the DataModule's
    `task` / `num_classes`) and `val/rankme` (effective rank of the centred training+validation embeddings).
    For a tuned comparison on a held-out test split use `select_linear` / `select_mlp`."""

    def __init__(self, every_n_epochs: int = 1, epochs: int = 100, lr: float = 1e-3, weight_decay: float = 1e-4,
                 hidden: int = 256, seed: int = 0, l2: float = 1e-2) -> None:
        super().__init__()
        if every_n_epochs < 1 or epochs < 1:
            raise ValueError(f"every_n_epochs and epochs must be >= 1, got {every_n_epochs}, {epochs}")
        if l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {l2}")
        self.every_n_epochs, self.epochs, self.lr, self.weight_decay = every_n_epochs, epochs, lr, weight_decay
        self.hidden, self.seed, self.l2 = hidden, seed, l2

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if trainer.training and (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "task") or not hasattr(dm, "train_eval_dataloader"):
            raise AttributeError("FrozenHeads needs a DataModule with `task`, `num_classes` and "
                                 "`train_eval_dataloader()` (e.g. datamodules.tabular.TabularDataModule)")
        task, num_classes = dm.task, int(getattr(dm, "num_classes", 0))
        xtr, ytr = embed_loader(pl_module, dm.train_eval_dataloader(), dm)
        xva, yva = embed_loader(pl_module, dm.val_dataloader(), dm)
        suffix = "acc" if task == "classification" else "rmse"
        # validation runs under inference mode: the heads train on ordinary copies of the embeddings
        with torch.inference_mode(False), torch.enable_grad():
            xtr, ytr, xva, yva = (t.clone() for t in (xtr, ytr, xva, yva))
            linear = fit_linear(xtr, ytr, xva, yva, task, num_classes, l2=self.l2)
            mlp = fit_head(xtr, ytr, xva, yva, task, num_classes, "mlp", epochs=self.epochs, patience=None,
                           lr=self.lr, weight_decay=self.weight_decay, hidden=self.hidden, seed=self.seed,
                           select_best=False)
        pl_module.log(f"val/linear_{suffix}", linear.val)
        pl_module.log(f"val/mlp_{suffix}", mlp.val)
        x = torch.cat([xtr, xva])
        pl_module.log("val/rankme", effective_rank(x - x.mean(0)))
