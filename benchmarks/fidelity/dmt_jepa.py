"""Does DMT-JEPA's neighbour-aggregated target help patch-level features? DMT-JEPA vs I-JEPA at equal steps and
seeds on embedded multi-digit scenes with per-pixel labels.

    python benchmarks/fidelity/dmt_jepa.py [--epochs 16 --seeds 0 1 2]    # full (~2-3 min per run and method)
    python benchmarks/fidelity/dmt_jepa.py --quick                         # smoke test (< 60 s)

For each seed, both methods are built from `recipes/dmt_jepa/tiny.yaml` (I-JEPA: the same recipe with
`model.class_path: IJEPA` and no head), so encoder, predictor, masks, data order, schedules and step count are
identical; only the targets (and DMT-JEPA's context-side head) differ. After training, the frozen teacher
encoder (the evaluation network of both) is probed:

- patch level: every 4x4 patch is labelled by majority vote of its pixels (background or digit class, 11
  classes); kNN (k=20, cosine, DINO votes) and linear (logistic regression) classifiers on the frozen patch
  tokens of the training scenes predict the validation scenes' patches; score = mIoU over the classes present.
- image level: the dominant digit of the scene (10 classes) from mean-pooled tokens: linear probe (logistic
  regression on standardised features) and kNN accuracy.

Claims: (1) DMT-JEPA's patch-level mIoU (kNN or linear) beats I-JEPA's on the mean over seeds; (2) its
image-level probe is not worse (mean within one pooled standard deviation of I-JEPA's, or better). The same
architecture at its random initialisation (I-JEPA's initial teacher of each seed) is probed too: the floor a
pretrained encoder must clear before the comparison means anything. Prints one JSON object (mean, std over
seeds and per-seed numbers).
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
import yaml
from common import summary
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from jepa_lightning.cli import JEPACLI
from jepa_lightning.eval.knn import knn_accuracy
from jepa_lightning.eval.segmentation import patch_features, segmentation_miou

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "dmt_jepa" / "tiny.yaml"
METHODS = ("ijepa", "dmt_jepa")
QUICK = ["--data.init_args.num_train=128", "--data.init_args.num_val=64", "--data.init_args.batch_size=32",
         "--model.init_args.encoder.init_args.depth=1", "--model.init_args.predictor.init_args.depth=1"]


def recipe_for(method: str, workdir: Path) -> Path:
    """The DMT-JEPA tiny recipe, or the same recipe as I-JEPA (class_path IJEPA, no head)."""
    if method == "dmt_jepa":
        return RECIPE
    config = yaml.safe_load(RECIPE.read_text())
    config["model"]["class_path"] = "jepa_lightning.methods.IJEPA"
    del config["model"]["init_args"]["head"]
    path = workdir / "ijepa_scenes.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def loader_batches(loader, datamodule):
    for batch in loader:
        yield datamodule.on_before_batch_transfer(batch, 0)


@torch.no_grad()
def evaluate(encoder: torch.nn.Module, dm, patch_size: int, max_train: int, seed: int) -> dict[str, float]:
    encoder.eval()
    nseg = dm.num_segmentation_classes
    xtr, ytr = patch_features(encoder, loader_batches(dm.train_eval_dataloader(), dm), patch_size, nseg)
    xva, yva = patch_features(encoder, loader_batches(dm.val_dataloader(), dm), patch_size, nseg)
    n = encoder.num_patches
    out = {"patch_knn_miou": segmentation_miou(xtr, ytr, xva, yva, nseg, "knn", max_train=max_train, seed=seed),
           "patch_linear_miou": segmentation_miou(xtr, ytr, xva, yva, nseg, "linear", max_train=max_train,
                                                  seed=seed)}
    # image level: mean-pooled tokens of the same forward pass (tokens are [M = images * n, D], row-major)
    itr, iva = xtr.view(-1, n, xtr.size(1)).mean(1), xva.view(-1, n, xva.size(1)).mean(1)
    ltr, lva = dm.train_eval_dataset.labels, dm.val_dataset.labels
    scaler = StandardScaler().fit(itr.numpy())
    clf = LogisticRegression(max_iter=3000).fit(scaler.transform(itr.numpy()), ltr.numpy())
    out["image_linear_acc"] = float((clf.predict(scaler.transform(iva.numpy())) == lva.numpy()).mean())
    out["image_knn_acc"] = knn_accuracy(itr, ltr, iva, lva, k=20, temperature=0.07, num_classes=10)
    return {k: round(v, 4) for k, v in out.items()}


def run(method: str, seed: int, epochs: int, workdir: Path, overrides: list[str], max_train: int,
        with_random: bool = False) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    cli = JEPACLI(run=False, args=[
        "--config", str(recipe_for(method, workdir)), f"--seed_everything={seed}", f"--trainer.max_epochs={epochs}",
        f"--model.init_args.mask_seed={seed}", f"--data.init_args.seed={seed}",
        f"--trainer.logger.init_args.save_dir={workdir / 'runs'}", f"--checkpoint.dirpath={workdir / 'ckpt'}",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0", "--resume=false", *overrides])
    initial = copy.deepcopy(cli.model.teacher.module) if with_random else None
    t0 = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    train_s = time.perf_counter() - t0
    m = cli.trainer.callback_metrics
    encoder = cli.model.teacher.module
    patch = encoder.patch_embed.patch_size
    out = {"method": method, "seed": seed, "steps": cli.trainer.global_step, "train_seconds": round(train_s, 1),
           "final_loss": round(float(m.get("train/loss", float("nan"))), 4),
           "final_target_std": round(float(m.get("train/target_std", float("nan"))), 4),
           **evaluate(encoder, cli.datamodule, patch, max_train, seed)}
    if initial is not None:  # the floor: the same architecture at its random initialisation, same probes
        out["random_init"] = evaluate(initial, cli.datamodule, patch, max_train, seed)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--max-train-patches", type=int, default=20000, help="training patches of the patch probes")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--quick", action="store_true", help="smoke test: tiny data and model, 1 epoch, 2 seeds")
    ap.add_argument("overrides", nargs="*", help="extra CLI overrides for both methods (after --)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    overrides = list(args.overrides)
    if args.quick:
        args.epochs, args.seeds, args.max_train_patches = 1, args.seeds[:2], 2000
        overrides = QUICK + overrides
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run(method, s, args.epochs, Path(tmp) / f"{method}_seed{s}", overrides, args.max_train_patches,
                    with_random=method == METHODS[0]) for s in args.seeds for method in METHODS]
    out: dict = {"benchmark": "dmt_jepa_scenes_fidelity", "recipe": str(RECIPE.relative_to(ROOT)),
                 "epochs": args.epochs, "seeds": args.seeds, "quick": args.quick, "overrides": overrides,
                 "steps": runs[0]["steps"], "runs": runs}
    metrics = ("patch_knn_miou", "patch_linear_miou", "image_linear_acc", "image_knn_acc")
    for metric in metrics:
        per = {meth: [r[metric] for r in runs if r["method"] == meth] for meth in METHODS}
        gain = [d - i for d, i in zip(per["dmt_jepa"], per["ijepa"])]
        floor = [r["random_init"][metric] for r in runs if "random_init" in r]
        out[metric] = {**{meth: summary(v) for meth, v in per.items()}, "random_init": summary(floor),
                       "dmt_minus_ijepa": summary(gain),
                       "dmt_wins": f"{sum(g > 0 for g in gain)}/{len(gain)}"}
    patch = {m: out[m]["dmt_minus_ijepa"]["mean"] > 0 for m in ("patch_knn_miou", "patch_linear_miou")}

    def not_worse(metric: str) -> bool:
        s = out[metric]
        pooled = ((s["ijepa"]["std"] ** 2 + s["dmt_jepa"]["std"] ** 2) / 2) ** 0.5
        return s["dmt_minus_ijepa"]["mean"] >= -pooled

    image = {m: not_worse(m) for m in ("image_linear_acc", "image_knn_acc")}
    out["claims"] = [
        {"statement": "DMT-JEPA's patch-level mIoU (kNN or linear) beats I-JEPA's at equal steps and seeds "
                      "(mean over seeds)", "per_probe": patch, "holds": any(patch.values())},
        {"statement": "DMT-JEPA's image-level probe is not worse than I-JEPA's (mean difference >= -1 pooled "
                      "std over seeds)", "per_probe": image, "holds": all(image.values())},
    ]
    out["holds"] = all(c["holds"] for c in out["claims"])
    out["total_seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
