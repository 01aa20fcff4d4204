"""Does I-JEPA learn? Frozen probes of the pretrained encoder vs a randomly initialised one (same
architecture, same probe), on scikit-learn's bundled digits.

    python benchmarks/fidelity/ijepa_digits.py [--epochs 40 --seeds 0 1 2]

For each seed: build the `recipes/ijepa/tiny.yaml` run, keep a copy of its (random) initial encoder, train
it, then fit the same linear probe (multinomial logistic regression on standardised mean-pooled tokens) and
a weighted kNN on the frozen features of each encoder (un-augmented training split -> validation split).
The claim: the pretrained encoder's probe accuracy beats the random encoder's by at least 10 points
(reported per probe).
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import summary
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from jepa_lightning.cli import JEPACLI
from jepa_lightning.eval.knn import knn_accuracy

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "ijepa" / "tiny.yaml"


@torch.no_grad()
def features(encoder: torch.nn.Module, loader, datamodule) -> tuple[torch.Tensor, torch.Tensor]:
    encoder.eval()
    feats, labels = [], []
    for batch in loader:
        batch = datamodule.on_before_batch_transfer(batch, 0)
        if batch is None:
            continue
        feats.append(encoder(batch["image"]).mean(1))
        labels.append(batch["label"])
    return torch.cat(feats), torch.cat(labels)


def linear_probe(xtr: np.ndarray, ytr: np.ndarray, xva: np.ndarray, yva: np.ndarray) -> float:
    """Multinomial logistic regression on standardised features (statistics from the probe's training set)."""
    scaler = StandardScaler().fit(xtr)
    clf = LogisticRegression(max_iter=3000, C=1.0).fit(scaler.transform(xtr), ytr)
    return float((clf.predict(scaler.transform(xva)) == yva).mean())


def probe(encoder, datamodule, shots: int, draws: int = 5) -> dict[str, float]:
    """Full-label linear probe, low-shot linear probe (`shots` labels per class, mean over `draws` fixed
    draws; I-JEPA's 1%-label protocol at this scale) and weighted kNN (k=20, DINO's protocol)."""
    xtr, ytr = features(encoder, datamodule.train_eval_dataloader(), datamodule)
    xva, yva = features(encoder, datamodule.val_dataloader(), datamodule)
    knn = knn_accuracy(xtr, ytr, xva, yva, k=20, temperature=0.07, num_classes=10)
    xtr, ytr, xva, yva = xtr.numpy(), ytr.numpy(), xva.numpy(), yva.numpy()
    low = []
    for d in range(draws):
        rng = np.random.default_rng(d)
        idx = np.concatenate([rng.choice(np.flatnonzero(ytr == c), shots, replace=False) for c in range(10)])
        low.append(linear_probe(xtr[idx], ytr[idx], xva, yva))
    return {"linear_acc": linear_probe(xtr, ytr, xva, yva), f"linear_{shots}shot_acc": float(np.mean(low)),
            "knn_acc": float(knn)}


def run(seed: int, epochs: int, workdir: Path, overrides: list[str], shots: int) -> dict:
    cli = JEPACLI(run=False, args=[
        "--config", str(RECIPE), f"--seed_everything={seed}", f"--trainer.max_epochs={epochs}",
        f"--model.init_args.mask_seed={seed}", f"--data.init_args.seed={seed}",
        f"--trainer.logger.init_args.save_dir={workdir / 'runs'}", f"--checkpoint.dirpath={workdir / 'ckpt'}",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", *overrides])
    random_encoder = copy.deepcopy(cli.model.teacher.module)
    t0 = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    train_s = time.perf_counter() - t0
    dm = cli.datamodule
    m = cli.trainer.callback_metrics
    return {"seed": seed, "train_seconds": round(train_s, 1), "steps": cli.trainer.global_step,
            "final_target_std": round(float(m.get("train/target_std", float("nan"))), 4),
            "pretrained": probe(cli.model.teacher.module, dm, shots), "random": probe(random_encoder, dm, shots)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--shots", type=int, default=5, help="labels per class for the low-shot probe")
    ap.add_argument("overrides", nargs="*", help="extra CLI overrides, e.g. --model.init_args.lr=5e-4 (after --)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run(s, args.epochs, Path(tmp) / f"seed{s}", args.overrides, args.shots) for s in args.seeds]
    out = {"benchmark": "ijepa_digits_fidelity", "recipe": str(RECIPE.relative_to(ROOT)), "epochs": args.epochs,
           "overrides": args.overrides,
           "runs": runs}
    for probe_name in runs[0]["pretrained"]:
        pre = [r["pretrained"][probe_name] for r in runs]
        rnd = [r["random"][probe_name] for r in runs]
        out[probe_name] = {"pretrained": summary(pre), "random": summary(rnd),
                           "gain_points": summary([100 * (p - r) for p, r in zip(pre, rnd)])}
    out["claim"] = {"statement": "the pretrained encoder beats its random initialisation by >= 10 points",
                    "holds_per_probe": {k: bool(out[k]["gain_points"]["mean"] >= 10.0) for k in runs[0]["pretrained"]}}
    out["claim"]["holds"] = any(out["claim"]["holds_per_probe"].values())
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
