"""What benchmarks/fidelity/t_jepa.py measures on one table: the collapse probes during pretraining, the frozen
embeddings, the linear and MLP heads tuned on the validation split, and the gradient-boosted-trees baseline on the
raw columns (imported from the script's folder, like common.py)."""

from __future__ import annotations

import statistics
import time

import lightning as L
import numpy as np
import torch

from jepa_lightning.eval.frozen_heads import L2_GRID, MLP_GRID, select_linear, select_mlp
from jepa_lightning.eval.rankme import effective_rank

PROBE_ROWS = 512        # training rows the collapse probes embed
COLLAPSE_RATIO = 0.5    # a run whose final spread is below this fraction of its peak collapsed
HEAD = {"l2_grid": list(L2_GRID), "mlp_grid": list(MLP_GRID), "mlp_epochs": 200, "mlp_patience": 20,
        "mlp_batch_size": 128, "selection": "validation metric, ties by validation loss"}
# the official code's downstream protocol (jose-melo/t-jepa src/models/mlp.py and its published MLP runs): each token to a
# scalar (linear_per_feature), then Linear + (depth - 1) x [Linear, ReLU, Dropout, BatchNorm]; AdamW, batch 512,
# early stopping with patience 16 (here on the validation split; theirs used the test split; no cosine schedule here)
REFERENCE_HEAD = {"grid": [{"hidden": 256, "depth": 4, "dropout": 0.1, "weight_decay": 0.01, "lr": 1e-3}],
                  "epochs": 200, "patience": 16, "batch_size": 512}
GBDT = {"grid": [{"learning_rate": lr, "max_leaf_nodes": leaves} for lr in (0.05, 0.1) for leaves in (15, 31)],
        "max_iter": 500, "selection": "iterations by validation loss, then the configuration by validation "
        "metric (ties by validation loss)"}


# ----------------------------------------------------------------------------------------- collapse
@torch.no_grad()
def collapse_probe(model, rows: dict[str, torch.Tensor]) -> dict[str, float]:
    """Collapse statistics of the EMA target encoder's FEATURE tokens on `rows` ([REG] outputs left out):
    `spread` (across-row std relative to the tokens' RMS; 0 = collapse), `rankme` (RankMe of the centred,
    flattened tokens [n, F D]) and `rankme_token` (RankMe of each feature's centred [n, D] tokens, averaged)."""
    was_training = model.training
    model.eval()
    h = model.encode(rows)[:, model.encoder.num_reg_tokens:]                 # [n, F, D]
    model.train(was_training)
    return token_collapse(h)


@torch.no_grad()
def token_collapse(h: torch.Tensor) -> dict[str, float]:
    """`collapse_probe`'s statistics of feature tokens h [n, F, D] (any encoder's)."""
    h = h.double()
    c = h - h.mean(0)
    spread = float(c.pow(2).mean().sqrt() / h.pow(2).mean().sqrt().clamp_min(1e-12))
    s = torch.linalg.svdvals(c.transpose(0, 1))                             # [F, min(n, D)]
    p = s / s.sum(-1, keepdim=True).clamp_min(1e-300) + 1e-7
    per_token = torch.exp(-(p * p.log()).sum(-1))
    return {"spread": round(spread, 4), "rankme": round(float(effective_rank(c.flatten(1))), 2),
            "rankme_token": round(float(per_token.mean()), 2)}


class CollapseProbe(L.Callback):
    """Runs `collapse_probe` on fixed training rows before training, every `every` optimizer steps and at the end;
    `history`: one dict per probe (step, mean training loss since the previous probe, the statistics)."""

    def __init__(self, rows: dict[str, torch.Tensor], every: int) -> None:
        self.rows, self.every, self.history, self._losses = rows, max(1, every), [], []

    def _record(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loss = round(statistics.mean(self._losses), 5) if self._losses else None  # None before training
        self.history.append({"step": trainer.global_step, "loss": loss, **collapse_probe(pl_module, self.rows)})
        self._losses = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if isinstance(outputs, dict) and "loss" in outputs:
            self._losses.append(float(outputs["loss"]))
        if trainer.global_step % self.every == 0:
            self._record(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.history[-1]["step"] != trainer.global_step:
            self._record(trainer, pl_module)


# ----------------------------------------------------------------------------------------- heads
@torch.no_grad()
def embed(model, split: dict[str, torch.Tensor], batch_size: int = 512) -> torch.Tensor:
    """`TJEPA.encode` (the EMA target encoder's R + F tokens) of every row of `split`, flattened: [n, (R + F) D]."""
    model.eval()
    return torch.cat([model.encode({k: v[i:i + batch_size] for k, v in split.items()}).flatten(1)
                      for i in range(0, len(split["label"]), batch_size)])


def heads(x: dict[str, torch.Tensor], y: dict[str, torch.Tensor], task: str, num_classes: int, seed: int,
          head: dict, tokens: int = 0) -> dict:
    """The linear head (L2 strength) and the MLP (grid, early stopping) tuned on val, scored on TEST; with
    `head["reference"]`, also the official code's downstream MLP ("mlp_reference"; `tokens`: how many tokens x
    flattens, each reduced to a scalar first; 0 for raw features)."""
    t0 = time.perf_counter()
    test = {"x_test": x["test"], "y_test": y["test"]}
    lin = select_linear(x["train"], y["train"], x["val"], y["val"], task, num_classes, l2_grid=tuple(head["l2_grid"]),
                        **test)
    mlp = select_mlp(x["train"], y["train"], x["val"], y["val"], task, num_classes, grid=tuple(head["mlp_grid"]),
                     seed=seed, epochs=head["mlp_epochs"], patience=head["mlp_patience"],
                     batch_size=head["mlp_batch_size"], **test)
    out = {"linear": round(lin.test, 4), "mlp": round(mlp.test, 4), "linear_l2": lin.config["l2"],
           "mlp_config": {k: mlp.config[k] for k in ("hidden", "dropout")}, "mlp_epoch": mlp.epoch,
           "dim": int(x["train"].shape[1])}
    if head.get("reference"):
        ref = head["reference"]
        with torch.random.fork_rng(devices=[]):  # its dropout draws leave the other heads' random stream as it was
            torch.manual_seed(seed)
            r = select_mlp(x["train"], y["train"], x["val"], y["val"], task, num_classes, grid=tuple(ref["grid"]),
                           seed=seed, epochs=ref["epochs"], patience=ref["patience"],
                           batch_size=ref["batch_size"], kind="reference", tokens=tokens, **test)
        out.update(mlp_reference=round(r.test, 4), mlp_reference_epoch=r.epoch)
    return out | {"head_seconds": round(time.perf_counter() - t0, 1)}


def gbdt(data: dict[str, dict[str, torch.Tensor]], task: str, seed: int, grid: list[dict], max_iter: int) -> dict:
    """scikit-learn's histogram gradient-boosted trees on the raw columns: the (scaled) numeric columns as they
    are, the categorical columns' integer codes as categorical features (0: missing / unseen). For each
    configuration of `grid`, `max_iter` boosting iterations, of which the number with the lowest validation loss
    (log loss, or MSE) is kept; then the configuration best on the validation metric (ties by loss); its TEST
    score (accuracy, or RMSE in target units). One thread, seeded by `seed`."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    n_num, n_cat = data["train"]["num"].shape[1], data["train"]["cat"].shape[1]
    xs = {s: np.concatenate([d["num"].double().numpy(), d["cat"].double().numpy()], 1) for s, d in data.items()}
    ys = {s: d["label"].numpy() for s, d in data.items()}
    classification = task == "classification"
    categorical = np.array([False] * n_num + [True] * n_cat) if n_cat else None

    def stages(model, split: str):
        """Per boosting iteration: (metric, loss) on `split`."""
        y = ys[split]
        if classification:
            index = np.searchsorted(model.classes_, y)
            for p in model.staged_predict_proba(xs[split]):
                yield (float((p.argmax(1) == index).mean()),
                       float(-np.log(np.clip(p[np.arange(len(y)), index], 1e-15, None)).mean()))
        else:
            for p in model.staged_predict(xs[split]):
                mse = float(((p - y) ** 2).mean())
                yield mse ** 0.5, mse

    best = None
    with threadpool_limits(1):
        for cfg in grid:
            cls = HistGradientBoostingClassifier if classification else HistGradientBoostingRegressor
            model = cls(max_iter=max_iter, early_stopping=False, categorical_features=categorical,
                        random_state=seed, **cfg).fit(xs["train"], ys["train"])
            val = list(stages(model, "val"))
            it = min(range(len(val)), key=lambda i: val[i][1])
            key = (-val[it][0] if classification else val[it][0], val[it][1])
            if best is None or key < best[0]:
                best = (key, cfg, it, model)
    _, cfg, it, model = best
    with threadpool_limits(1):
        test = next(v for i, v in enumerate(stages(model, "test")) if i == it)[0]
    return {"test": round(test, 4), "config": cfg, "iterations": it + 1,
            "seconds": round(time.perf_counter() - t0, 1)}
