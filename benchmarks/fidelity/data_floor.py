"""How far below a trained encoder do raw pixels and a random encoder score on the embedded object scenes?

    python benchmarks/fidelity/data_floor.py [--seeds 0 1 2 --steps 1500]   # full (~10 min per seed on 1 thread)
    python benchmarks/fidelity/data_floor.py --quick                         # smoke test (< 1 min)

Data: `datamodules.ObjectScenesDataModule` (textured shapes of 10 classes on photograph crops; image label = the
class of the large main object; per-pixel labels). For each seed (the scene generator's `scene_seed` and the
ViT's initialisation), on the validation scenes:

- raw pixels: logistic regression on the 4x-average-pooled, standardised pixels (16x16x3 at 64 px);
- random ViT: the same architecture the JEPA benchmarks train, at its initialisation: mean-pooled tokens, centred
  and standardised, logistic regression; and cosine kNN (k=20, DINO votes) on the centred features;
- ceiling: `SupervisedClassifier` (that ViT + LayerNorm + linear head) trained `--steps` steps with cross-entropy
  on the labels (the DataModule's training view: joint RandomResizedCrop), validation accuracy;
- patch level: each patch of the ViT's grid gets the majority label of its pixels (11 classes: background + 10);
  logistic regression on raw patch pixels, on the random ViT's tokens and on the supervised ViT's tokens,
  scored by mIoU over the classes present (`jepa_lightning.eval.segmentation`).

The logistic regressions pick their L2 strength on the validation split from a small grid: an optimistic floor,
so "far below" is a conservative statement. Prints one JSON object (per-seed numbers, mean and std over seeds,
render and training times, and whether the floor criterion holds).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from common import summary

from datamodules.object_scenes import ObjectScenesDataModule
from jepa_lightning.eval.frozen_heads import fit_linear
from jepa_lightning.eval.knn import knn_accuracy
from jepa_lightning.eval.segmentation import patch_labels, segmentation_miou
from jepa_lightning.methods.supervised import SupervisedClassifier
from jepa_lightning.nn import VisionTransformer

L2_GRID = (1e-1, 1e-2, 1e-3)
# the floor criterion (10 classes): raw pixels and random features at most this, the supervised ViT at least that
FLOOR_MAX, CEILING_MIN = 0.40, 0.80


def split_tensors(dataset) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalized images [N, 3, H, W], labels [N], segmentation [N, H, W] of an (un-augmented) split."""
    x = (dataset.images.float() / 255 - dataset.mean) / dataset.std
    return x, dataset.labels, dataset.segmentation.long()


def linear_accuracy(train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: torch.Tensor) -> float:
    """Best validation accuracy of logistic regression over `L2_GRID` (inputs standardised by `fit_linear`)."""
    return max(fit_linear(train_x, train_y, val_x, val_y, "classification", 10, l2=l2).val for l2 in L2_GRID)


@torch.no_grad()
def tokens(encoder: torch.nn.Module, x: torch.Tensor, chunk: int = 250) -> torch.Tensor:
    encoder.eval()
    return torch.cat([encoder(x[i:i + chunk]) for i in range(0, len(x), chunk)])


def patch_pixels(x: torch.Tensor, patch: int) -> torch.Tensor:
    """Raw pixels of each patch [N, (H/p)*(W/p), 3*p*p], row-major like the ViT's tokens."""
    return F.unfold(x, patch, stride=patch).transpose(1, 2)


def patch_miou(train_f: torch.Tensor, train_seg: torch.Tensor, val_f: torch.Tensor, val_seg: torch.Tensor,
               patch: int, max_train: int, seed: int) -> float:
    """Linear patch-level mIoU (majority labels, 11 classes) of per-patch features [N, P, D]."""
    ty, vy = patch_labels(train_seg, patch, 11).flatten(), patch_labels(val_seg, patch, 11).flatten()
    return max(segmentation_miou(train_f.flatten(0, 1), ty, val_f.flatten(0, 1), vy, 11, classifier="linear",
                                 max_train=max_train, seed=seed, l2=l2) for l2 in L2_GRID)


def vit(args: argparse.Namespace) -> VisionTransformer:
    return VisionTransformer(img_size=args.image_size, patch_size=args.patch, embed_dim=args.embed_dim,
                             depth=args.depth, num_heads=args.heads)


def run_seed(seed: int, args: argparse.Namespace, cache: str) -> dict:
    dm = ObjectScenesDataModule(image_size=args.image_size, num_train=args.num_train, num_val=args.num_val,
                                scene_seed=seed, batch_size=args.batch_size, cache_dir=cache, seed=seed)
    t0 = time.perf_counter()
    dm.setup()
    render = dm.generation_seconds if dm.generation_seconds is not None else time.perf_counter() - t0
    tx, ty, tseg = split_tensors(dm.train_eval_dataset)
    vx, vy, vseg = split_tensors(dm.val_dataset)
    out: dict = {"seed": seed, "render_seconds": round(render, 2)}
    pooled = (4 * args.image_size) // 64 or 1
    out["raw_pixels_linear"] = linear_accuracy(F.avg_pool2d(tx, pooled).flatten(1), ty,
                                               F.avg_pool2d(vx, pooled).flatten(1), vy)
    torch.manual_seed(seed)
    encoder = vit(args)
    ttok, vtok = tokens(encoder, tx), tokens(encoder, vx)
    tf, vf = ttok.mean(1), vtok.mean(1)
    mu, sd = tf.mean(0), tf.std(0) + 1e-6
    out["random_vit_linear"] = linear_accuracy((tf - mu) / sd, ty, (vf - mu) / sd, vy)
    out["random_vit_knn"] = knn_accuracy(tf - mu, ty, vf - mu, vy, k=20, num_classes=10)
    out["patch_raw_linear_miou"] = patch_miou(patch_pixels(tx, args.patch), tseg, patch_pixels(vx, args.patch), vseg,
                                              args.patch, args.max_patches, seed)
    out["patch_random_vit_linear_miou"] = patch_miou(ttok, tseg, vtok, vseg, args.patch, args.max_patches, seed)
    # ---- ceiling: the same initialisation, trained on the labels
    L.seed_everything(seed, verbose=False)
    model = SupervisedClassifier(encoder, num_classes=10, lr=args.lr, warmup=0.05, weight_decay=0.05).train()
    trainer = L.Trainer(max_steps=args.steps, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        num_sanity_val_steps=0, limit_val_batches=0)
    t0 = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    out["supervised_seconds"] = round(time.perf_counter() - t0, 1)
    out["supervised_step_seconds"] = round(out["supervised_seconds"] / max(args.steps, 1), 4)
    stok, svtok = tokens(model.encoder, tx), tokens(model.encoder, vx)
    head = model.head.eval()
    with torch.no_grad():
        out["supervised_val_acc"] = float((head(svtok.mean(1)).argmax(1) == vy).float().mean())
    out["patch_supervised_vit_linear_miou"] = patch_miou(stok, tseg, svtok, vseg, args.patch, args.max_patches, seed)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=1500, help="supervised training steps")
    p.add_argument("--num-train", type=int, default=4000)
    p.add_argument("--num-val", type=int, default=1000)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--patch", type=int, default=8)
    p.add_argument("--embed-dim", type=int, default=96)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-patches", type=int, default=20000, help="training patches of the patch-level probes")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache-dir", default=None, help="scene cache (default: a temporary folder)")
    p.add_argument("--out", default=None, help="also write the JSON here")
    p.add_argument("--quick", action="store_true", help="smoke test: tiny data, model and training")
    args = p.parse_args()
    if args.quick:
        args.seeds, args.steps, args.num_train, args.num_val = args.seeds[:1], 10, 128, 64
        args.embed_dim, args.depth, args.heads, args.batch_size, args.max_patches = 32, 1, 2, 32, 2000
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run_seed(s, args, args.cache_dir or tmp) for s in args.seeds]
    metrics = [k for k in runs[0] if k not in ("seed",)]
    result = {
        "benchmark": "benchmarks/fidelity/data_floor.py",
        "data": "ObjectScenesDataModule (defaults)", "num_train": args.num_train, "num_val": args.num_val,
        "vit": {"img_size": args.image_size, "patch_size": args.patch, "embed_dim": args.embed_dim,
                "depth": args.depth, "num_heads": args.heads},
        "supervised": {"steps": args.steps, "batch_size": args.batch_size, "lr": args.lr},
        "seeds": args.seeds, "per_seed": runs,
        "summary": {k: summary([r[k] for r in runs]) for k in metrics},
        "seconds": round(time.perf_counter() - start, 1),
    }
    s = result["summary"]
    floor = max(s["raw_pixels_linear"]["mean"], s["random_vit_linear"]["mean"], s["random_vit_knn"]["mean"])
    result["criterion"] = {"floor": floor, "ceiling": s["supervised_val_acc"]["mean"],
                           "statement": f"raw pixels and random ViT <= {FLOOR_MAX}, supervised >= {CEILING_MIN}",
                           "holds": bool(floor <= FLOOR_MAX and s["supervised_val_acc"]["mean"] >= CEILING_MIN)}
    text = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
