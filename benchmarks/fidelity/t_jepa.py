"""T-JEPA's claims at small scale, on scikit-learn's bundled tables (embedded, no download).

    python benchmarks/fidelity/t_jepa.py [--seeds 0 1 2 3 4 --datasets breast_cancer wine digits diabetes]
    python benchmarks/fidelity/t_jepa.py --quick       # one seed, one dataset, a few epochs: a smoke run
    python benchmarks/fidelity/t_jepa.py --datasets wine --epoch-factor 4 --no-heads   # longer: collapse only

Per dataset and seed, with the tiny recipe `recipes/t_jepa/<dataset>_tiny.yaml` (the seed sets weights, masks
and data order; the DataModule's train/val/test split is fixed):
- T-JEPA pretraining as in the recipe ([REG] tokens: the recipe's count), and the same with `num_reg_tokens=0`;
- during pretraining, every `--probe-every` steps (and before the first), collapse probes on the EMA target
  encoder's FEATURE tokens of (up to 512) training rows, the F tokens both variants have (the [REG] outputs
  are left out so that R > 0 and R = 0 compare like with like):
  `spread`: across-row standard deviation relative to the embeddings' RMS (the reference's
  "intra_feature_variance", made scale-free; 0 = every row embedded identically, i.e. collapse);
  `rankme`: RankMe of the centred, flattened feature tokens [n, F D] (centring removes the per-column constants
  that dominate un-centred tokens); `rankme_token`: RankMe of each feature's centred [n, D] token matrix,
  averaged over features; `loss`: the mean training loss since the previous probe;
- frozen embeddings of every row of each split: the EMA target encoder's R + F output tokens, flattened, as the
  reference's `linear_flatten` probe (`TJEPA.encode`), and the raw features (min-max scaled numeric columns);
- on each input, the same two heads, tuned the same way on the validation split and scored on the TEST split
  (accuracy, or RMSE in target units for diabetes): a linear head solved to convergence (L-BFGS logistic
  regression / closed-form ridge) for each L2 strength in `L2_GRID`, and an MLP (AdamW, early stopping on the
  validation loss) for each configuration of `MLP_GRID` (hidden 64/256 x dropout 0.1/0.5).

Claims (T-JEPA, Thimonier et al., ICLR 2025), mean +- std over seeds, per dataset:
1. an MLP on T-JEPA embeddings beats the same MLP on the raw features (higher accuracy / lower RMSE);
   `holds`: mean improvement > 0; `clear`: mean improvement > 2 standard errors (paired over seeds);
2. [REG] tokens prevent the collapse of the representation during training (the paper: without them training
   can fall into a collapsed regime; the reference tracks the spread of the target encoder's outputs across
   samples during training). A run "collapsed" when its final `spread` is below half of its peak over
   training; `holds` when runs without [REG] collapse more often than runs with them. The final centred
   RankMe and spread gains (R > 0 minus R = 0) are reported alongside.
Prints one JSON object; `holds` says whether each claim holds at this scale (it need not).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
from common import summary

from jepa_lightning.cli import JEPACLI
from jepa_lightning.eval.frozen_heads import L2_GRID, MLP_GRID, raw_features, select_linear, select_mlp
from jepa_lightning.eval.rankme import effective_rank

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ("breast_cancer", "wine", "digits", "diabetes")
HEAD = {"l2_grid": list(L2_GRID), "mlp_grid": list(MLP_GRID), "mlp_epochs": 200, "mlp_patience": 20,
        "mlp_batch_size": 128, "selection": "validation metric, ties by validation loss"}
PROBE_ROWS = 512
COLLAPSE_RATIO = 0.5  # final spread below this fraction of its peak: collapsed


@torch.no_grad()
def collapse_probe(model, rows: dict[str, torch.Tensor]) -> dict[str, float]:
    """Collapse statistics of the EMA target encoder's feature tokens on `rows` (see the module docstring)."""
    was_training = model.training
    model.eval()
    h = model.encode(rows)[:, model.encoder.num_reg_tokens:].double()        # [n, F, D]
    model.train(was_training)
    c = h - h.mean(0)
    spread = float(c.pow(2).mean().sqrt() / h.pow(2).mean().sqrt().clamp_min(1e-12))
    s = torch.linalg.svdvals(c.transpose(0, 1))                             # [F, min(n, D)]
    p = s / s.sum(-1, keepdim=True).clamp_min(1e-300) + 1e-7
    per_token = torch.exp(-(p * p.log()).sum(-1))
    return {"spread": round(spread, 4), "rankme": round(float(effective_rank(c.flatten(1))), 2),
            "rankme_token": round(float(per_token.mean()), 2)}


class CollapseProbe(L.Callback):
    """Runs `collapse_probe` on fixed training rows before training and every `every` optimizer steps."""

    def __init__(self, rows: dict[str, torch.Tensor], every: int) -> None:
        self.rows, self.every, self.history, self._losses = rows, max(1, every), [], []

    def _record(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loss = round(statistics.mean(self._losses), 5) if self._losses else None  # None before training
        self.history.append({"step": trainer.global_step, "loss": loss,
                             **collapse_probe(pl_module, self.rows)})
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


def cli(recipe: Path, workdir: Path, seed: int, *overrides: str) -> JEPACLI:
    return JEPACLI(run=False, args=[
        "--config", str(recipe), f"--seed_everything={seed}", f"--model.init_args.mask_seed={seed}",
        f"--data.init_args.seed={seed}", "--trainer.limit_val_batches=0", "--trainer.callbacks=[]",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        f"--run_dir={workdir / 'runs'}", f"--checkpoint.dirpath={workdir / 'ckpt'}",
        *overrides])


@torch.no_grad()
def embed(model, split: dict[str, torch.Tensor], batch_size: int = 512) -> torch.Tensor:
    model.eval()
    out = [model.encode({k: v[i:i + batch_size] for k, v in split.items()}).flatten(1)
           for i in range(0, len(split["label"]), batch_size)]
    return torch.cat(out)


def heads(x: dict[str, torch.Tensor], y: dict[str, torch.Tensor], task: str, num_classes: int,
          seed: int) -> dict:
    common = {"x_test": x["test"], "y_test": y["test"]}
    lin = select_linear(x["train"], y["train"], x["val"], y["val"], task, num_classes, **common)
    mlp = select_mlp(x["train"], y["train"], x["val"], y["val"], task, num_classes, seed=seed,
                     epochs=HEAD["mlp_epochs"], patience=HEAD["mlp_patience"], batch_size=HEAD["mlp_batch_size"],
                     **common)
    return {"linear": round(lin.test, 4), "mlp": round(mlp.test, 4), "linear_l2": lin.config["l2"],
            "mlp_config": {k: mlp.config[k] for k in ("hidden", "dropout")}, "mlp_epoch": mlp.epoch}


def run_dataset_seed(dataset: str, seed: int, args: argparse.Namespace, workdir: Path) -> dict:
    recipe = Path(args.recipes) / f"{dataset}_tiny.yaml"
    out: dict = {"dataset": dataset, "seed": seed}
    data = None
    for name, reg in (("tjepa", None), ("tjepa_noreg", 0)):
        over = []
        if reg is not None:
            over += [f"--model.init_args.{m}.init_args.num_reg_tokens={reg}" for m in ("encoder", "predictor")]
        run = cli(recipe, workdir / f"{dataset}_{seed}_{name}", seed, *over)
        epochs = args.epochs or max(1, round(run.trainer.max_epochs * args.epoch_factor))
        run.trainer.fit_loop.max_epochs = epochs
        dm = run.datamodule
        if data is None:
            data = {s: dm.tensors(s) for s in ("train", "val", "test")}
            task, num_classes = dm.task, int(dm.num_classes)
            y = {s: data[s]["label"] for s in data}
            out["task"] = task
            if not args.no_heads:
                raw = {s: raw_features(data[s]["num"], data[s].get("cat"), list(dm.cardinalities)) for s in data}
                out["raw"] = heads(raw, y, task, num_classes, seed)
        steps = epochs * math.ceil(len(data["train"]["label"]) / dm.batch_size)
        probe = CollapseProbe({k: v[:PROBE_ROWS] for k, v in data["train"].items()},
                              max(1, steps // args.probes))
        run.trainer.callbacks.append(probe)
        t0 = time.perf_counter()
        run.trainer.fit(run.model, datamodule=dm)
        seconds = time.perf_counter() - t0
        res = {"steps": run.trainer.global_step, "epochs": epochs, "pretrain_seconds": round(seconds, 1),
               "final": probe.history[-1], "peak_spread": max(h["spread"] for h in probe.history),
               "history": probe.history}
        res["collapsed"] = res["final"]["spread"] < COLLAPSE_RATIO * res["peak_spread"]
        if not args.no_heads:
            x = {s: embed(run.model, data[s]) for s in data}
            res.update(heads(x, y, task, num_classes, seed), dim=x["train"].shape[1])
        out[name] = res
    return out


def _mean_or_none(values: list[float | None]) -> float | None:
    return None if any(v is None for v in values) else round(statistics.mean(values), 4)


def mean_history(runs: list[dict], name: str) -> list[dict]:
    """The probe trajectories averaged over seeds (probes at the same step index)."""
    n = min(len(r[name]["history"]) for r in runs)
    keys = ("loss", "spread", "rankme", "rankme_token")
    return [{"step": runs[0][name]["history"][i]["step"],
             **{k: _mean_or_none([r[name]["history"][i][k] for r in runs]) for k in keys}}
            for i in range(n)]


def summarize(results: dict[str, list[dict]], with_heads: bool) -> tuple[dict, dict]:
    table, claims = {}, {}
    for d, runs in results.items():
        regression = runs[0]["task"] == "regression"
        row: dict = {"metric": "rmse" if regression else "accuracy"}
        if with_heads:
            row.update({f"{enc}_{kind}": summary([r[enc][kind] for r in runs])
                        for enc in ("raw", "tjepa", "tjepa_noreg") for kind in ("linear", "mlp")})
            row["embedding_dim"] = {n: runs[0][n]["dim"] for n in ("tjepa", "tjepa_noreg")}
        for n, tag in (("tjepa", "reg"), ("tjepa_noreg", "noreg")):
            for k in ("spread", "rankme", "rankme_token", "loss"):  # the last probe: after training
                row[f"final_{k}_{tag}"] = summary([r[n]["final"][k] for r in runs])
            row[f"collapsed_runs_{tag}"] = sum(r[n]["collapsed"] for r in runs)
        row["steps"] = runs[0]["tjepa"]["steps"]
        row["pretrain_seconds"] = summary([r["tjepa"]["pretrain_seconds"] for r in runs])
        row["trajectory_reg"], row["trajectory_noreg"] = mean_history(runs, "tjepa"), mean_history(runs, "tjepa_noreg")
        table[d] = row
        claims[d] = {}
        if with_heads:
            gaps = [(r["raw"]["mlp"] - r["tjepa"]["mlp"]) if regression else (r["tjepa"]["mlp"] - r["raw"]["mlp"])
                    for r in runs]
            gap = summary(gaps)
            sem = gap["std"] / math.sqrt(len(gaps))
            claims[d]["1_mlp_on_tjepa_beats_mlp_on_raw"] = {
                "improvement": gap, "note": "RMSE reduction" if regression else "accuracy gain",
                "holds": gap["mean"] > 0, "clear": gap["mean"] > 2 * sem}
        n_reg, n_noreg = row["collapsed_runs_reg"], row["collapsed_runs_noreg"]
        claims[d]["2_reg_tokens_prevent_collapse"] = {
            "collapsed_runs": {"with_reg": n_reg, "without_reg": n_noreg, "of": len(runs)},
            "final_spread_gain": summary([r["tjepa"]["final"]["spread"] - r["tjepa_noreg"]["final"]["spread"]
                                          for r in runs]),
            "final_rankme_gain": summary([r["tjepa"]["final"]["rankme"] - r["tjepa_noreg"]["final"]["rankme"]
                                          for r in runs]),
            "holds": n_noreg > n_reg,
            "note": ("no run collapsed without [REG] tokens at this scale" if n_noreg == 0 else
                     f"{n_noreg} run(s) without and {n_reg} with [REG] tokens collapsed")}
    return table, claims


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    ap.add_argument("--epochs", type=int, default=None, help="pretraining epochs (default: each recipe's)")
    ap.add_argument("--epoch-factor", type=float, default=1.0, help="scale each recipe's epochs (longer runs)")
    ap.add_argument("--probes", type=int, default=8, help="collapse probes per pretraining run (and one before)")
    ap.add_argument("--no-heads", action="store_true", help="collapse probes only, no downstream heads")
    ap.add_argument("--quick", action="store_true", help="smoke run: seed 0, wine, 3 epochs")
    ap.add_argument("--recipes", default=str(ROOT / "recipes" / "t_jepa"), help="folder of <dataset>_tiny.yaml")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.datasets, args.epochs, args.probes = [0], ["wine"], 3, 3
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    results: dict[str, list[dict]] = {d: [] for d in args.datasets}
    with tempfile.TemporaryDirectory() as tmp:
        for d in args.datasets:
            for s in args.seeds:
                results[d].append(run_dataset_seed(d, s, args, Path(tmp)))
                brief = {k: ({kk: vv for kk, vv in v.items() if kk != "history"} if isinstance(v, dict) else v)
                         for k, v in results[d][-1].items()}
                print(f"{d} seed {s} ({time.perf_counter() - t0:.0f}s): " + json.dumps(brief), file=sys.stderr,
                      flush=True)
    table, claims = summarize(results, not args.no_heads)
    out = {"benchmark": "t_jepa_fidelity", "args": vars(args), "head": HEAD,
           "seconds": round(time.perf_counter() - t0), "results": table, "claims": claims, "runs": results}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
