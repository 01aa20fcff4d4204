"""SALT's claims at small scale, on the embedded moving-digits videos (real h264 files read with PyAV).

    python benchmarks/fidelity/salt.py [--seeds 0 1 2 --teacher-steps 200 --student-steps 800]
    python benchmarks/fidelity/salt.py --canvas 32 --patch-size 8 --digit-size 14     # the first, coarser setting

Each seed's result is cached as JSON under --out (runs/bench_salt, named by the settings): seeds can run in
parallel processes (`--seeds 0` and `--seeds 1`), and a rerun with `--seeds 0 1` merges them (`--fresh` redoes).

Per seed, with the tiny recipes (`recipes/vjepa/tiny.yaml`, `recipes/salt/{teacher,student}_tiny.yaml`):
- SALT teachers (stage 1, pixel reconstruction under V-JEPA masks): `strong` (teacher-steps, the student's
  width), `short` (a quarter of the steps), `narrow` (half the width);
- one SALT student (stage 2) per teacher, `student-steps` each;
- V-JEPA with as many steps as make its training FLOPs equal SALT's (strong teacher + its student); every run's
  FLOPs are counted with `torch.utils.flop_counter` (the `TrainingFLOPs` callback) and reported;
- frozen evaluation of every encoder (and of a random one, the floor): V-JEPA's attentive probe (16 heads, one
  query, LayerNorm + linear) on both label sets, appearance (`digit`, 10 classes) and motion (8 patterns),
  trained on 2 evenly spaced clips of each training video, evaluated with the logits averaged over 2 clips of
  each validation video. The encoders' tokens are computed once, cached and standardized per token position and
  channel with the training split's statistics (the probe trains on them; see `evaluate`).

Claims (SALT, Li et al. 2025), reported per label set with mean and spread over seeds:
1. the SALT student beats its own frozen teacher under the same probe;
2. students of the weak teachers (`short`, `narrow`) land within 3 points of the strong teacher's student;
3. at matched total training FLOPs (teacher included), SALT's probe accuracy is at least V-JEPA's.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import cached, summary
from torch import nn
from video_probes import attentive_probe, cached_tokens

from datamodules import MovingDigitsDataModule
from jepa_lightning.cli import JEPACLI

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"
LABELS = {"digit": 10, "motion": 8}
DATA: dict = {}  # MovingDigitsDataModule arguments for every run and probe (--cache-dir, --num-train, --num-val)
GEOMETRY: dict = {}  # canvas and patch size of every run (--canvas, --patch-size; default: the recipes')


def geometry_overrides(recipe: str) -> list[str]:
    """Size a recipe's encoder(s), predictor grid and (stage 1) pixel decoder to GEOMETRY's canvas and patch."""
    if not GEOMETRY:
        return []
    canvas, patch = GEOMETRY["canvas"], GEOMETRY["patch"]
    parts = ("encoder", "teacher") if recipe.startswith("salt/student") else ("encoder",)
    out = [f"--model.init_args.{part}.init_args.{k}" for part in parts
           for k in (f"img_size={canvas}", f"patch_size={patch}")]
    out.append(f"--model.init_args.predictor.init_args.grid_size=[4,{canvas // patch},{canvas // patch}]")
    if recipe.startswith("salt/teacher"):      # the decoder predicts one tubelet's pixels: 2 x patch^2 x RGB
        out.append(f"--model.init_args.predictor.init_args.out_dim={2 * patch * patch * 3}")
    return out


def cli(recipe: str, workdir: Path, seed: int, steps: int, *overrides: str) -> JEPACLI:
    return JEPACLI(run=False, args=[
        "--config", str(RECIPES / recipe), f"--seed_everything={seed}", f"--model.init_args.mask_seed={seed}",
        f"--data.init_args.seed={seed}", f"--trainer.max_steps={steps}", "--trainer.max_epochs=100000",
        "--trainer.limit_val_batches=0", "--trainer.callbacks=[]", "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false", f"--run_dir={workdir / 'runs'}",
        f"--checkpoint.dirpath={workdir / 'ckpt'}", *[f"--data.init_args.{k}={v}" for k, v in DATA.items()],
        *geometry_overrides(recipe), *overrides])


def train(run: JEPACLI) -> dict:
    t0 = time.perf_counter()
    run.trainer.fit(run.model, datamodule=run.datamodule)
    m = run.trainer.callback_metrics
    return {"steps": run.trainer.global_step, "seconds": round(time.perf_counter() - t0, 1),
            "flops": float(m["train/flops_total"]), "final_loss": round(float(m["train/loss"]), 4)}


# ------------------------------------------------------------------------------------------ frozen probe
def evaluate(encoder: nn.Module, seed: int, epochs: int) -> dict[str, float]:
    dm = MovingDigitsDataModule(eval_clips=2, batch_size=64, num_workers=1, **DATA)
    dm.prepare_data()
    dm.setup("fit")
    train_set = cached_tokens(encoder, dm.train_eval_dataloader(), dm, LABELS)
    val_set = cached_tokens(encoder, dm.val_dataloader(), dm, LABELS)
    # Standardize every (token position, channel) with the training split's statistics, for every encoder alike.
    # On these videos most tokens are black background: a trained encoder maps them to nearly the same vector,
    # so the video-specific part of its tokens is small next to a per-position constant (token std across
    # videos 0.02 vs 0.12 for a random encoder), which the un-normalized attentive probe does not pick up in
    # 40 epochs (trained encoders then read as chance). MAE's linear probe normalizes its input the same way.
    mean = train_set[0].mean((0, 1), keepdim=True)
    std = train_set[0].std((0, 1), keepdim=True) + 1e-6
    train_set = ((train_set[0] - mean) / std, train_set[1])
    val_set = ((val_set[0] - mean) / std, val_set[1])
    return {label: round(attentive_probe(train_set[0], train_set[1][label], val_set[0], val_set[1][label],
                                         LABELS[label], seed, epochs), 4) for label in LABELS}


# ------------------------------------------------------------------------------------------ one seed
def run_seed(seed: int, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        return train_and_probe(seed, args, Path(tmp))


def train_and_probe(seed: int, args: argparse.Namespace, workdir: Path) -> dict:
    ts, ss = args.teacher_steps, args.student_steps
    narrow = [f"--model.init_args.{part}.init_args.{k}" for part in ("encoder", "predictor") for k in ("embed_dim=48",)]
    teachers = {"strong": ("salt/teacher_tiny.yaml", ts, []), "short": ("salt/teacher_tiny.yaml", ts // 4, []),
                "narrow": ("salt/teacher_tiny.yaml", ts, narrow)}
    out: dict = {"seed": seed, "runs": {}, "probe": {}}
    encoders: dict[str, nn.Module] = {}
    random_encoder = None
    for name, (recipe, steps, extra) in teachers.items():
        run = cli(recipe, workdir / f"teacher_{name}", seed, steps, *extra)
        if random_encoder is None:
            random_encoder = cli(recipe, workdir / "random", seed, 0).model.encoder
        out["runs"][f"teacher_{name}"] = train(run)
        encoders[f"teacher_{name}"] = run.model.encoder
        width = 48 if name == "narrow" else 96
        student = cli("salt/student_tiny.yaml", workdir / f"student_{name}", seed, ss,
                      f"--model.init_args.teacher_checkpoint={workdir / f'teacher_{name}' / 'ckpt' / 'last.ckpt'}",
                      f"--model.init_args.teacher.init_args.embed_dim={width}",
                      f"--model.init_args.predictor.init_args.out_dim={width}")
        out["runs"][f"student_{name}"] = train(student)
        encoders[f"student_{name}"] = student.model.encoder

    # V-JEPA at SALT's total FLOPs (strong teacher + its student). A V-JEPA step costs what a student step costs
    # (same encoder, predictor and teacher widths, same masks: same mask seed), so the student's measured
    # FLOPs per step (TrainingFLOPs, torch.utils.flop_counter) set V-JEPA's number of steps.
    salt_flops = out["runs"]["teacher_strong"]["flops"] + out["runs"]["student_strong"]["flops"]
    step_flops = out["runs"]["student_strong"]["flops"] / out["runs"]["student_strong"]["steps"]
    vjepa = cli("vjepa/tiny.yaml", workdir / "vjepa", seed, round(salt_flops / step_flops))
    out["runs"]["vjepa"] = train(vjepa)
    encoders["vjepa"] = vjepa.model.teacher.module          # V-JEPA evaluates its EMA teacher
    out["gflop_per_step"] = {k: round(v["flops"] / v["steps"] / 1e9, 3) for k, v in out["runs"].items()}
    out["salt_total_flops"] = salt_flops

    encoders["random"] = random_encoder
    for name, enc in encoders.items():
        out["probe"][name] = evaluate(enc, seed, args.probe_epochs)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--teacher-steps", type=int, default=200)
    ap.add_argument("--student-steps", type=int, default=800)
    ap.add_argument("--probe-epochs", type=int, default=30)
    ap.add_argument("--tolerance", type=float, default=3.0, help="claim 2: points between students")
    ap.add_argument("--cache-dir", default=None, help="moving-digits cache (default: the DataModule's)")
    ap.add_argument("--num-train", type=int, default=None, help="moving-digits training videos (default 1000)")
    ap.add_argument("--num-val", type=int, default=None, help="moving-digits validation videos (default 300)")
    ap.add_argument("--canvas", type=int, default=None, help="video side in pixels (default: the recipes' 32)")
    ap.add_argument("--digit-size", type=int, default=None, help="digit side in pixels (default: the DataModule's)")
    ap.add_argument("--patch-size", type=int, default=None, help="encoder patch size (default: the recipes' 4)")
    ap.add_argument("--out", default=None, help="per-seed results are cached here (default runs/bench_salt)")
    ap.add_argument("--fresh", action="store_true", help="recompute the chosen seeds instead of reusing them")
    args = ap.parse_args()
    DATA.update({k: v for k, v in (("cache_dir", args.cache_dir), ("num_train", args.num_train),
                                   ("num_val", args.num_val), ("digit_size", args.digit_size)) if v is not None})
    if args.canvas is not None or args.patch_size is not None:
        GEOMETRY.update(canvas=args.canvas or 32, patch=args.patch_size or 4)
        if GEOMETRY["canvas"] % GEOMETRY["patch"]:
            ap.error(f"--canvas {GEOMETRY['canvas']} is not a multiple of --patch-size {GEOMETRY['patch']}")
        DATA.update(canvas=GEOMETRY["canvas"], crop_size=GEOMETRY["canvas"])
    t0 = time.perf_counter()
    out_dir = Path(args.out or ROOT / "runs" / "bench_salt")
    out_dir.mkdir(parents=True, exist_ok=True)
    setting = "_".join(f"{k}{v}" for k, v in (
        ("t", args.teacher_steps), ("s", args.student_steps), ("p", args.probe_epochs), ("c", args.canvas),
        ("d", args.digit_size), ("k", args.patch_size), ("n", args.num_train), ("v", args.num_val)) if v is not None)
    seeds = []
    for s in args.seeds:  # one cached JSON per seed: seeds can run in parallel processes, a rerun merges them
        seeds.append(cached(out_dir / f"{setting}_seed{s}.json", run_seed, s, args, fresh=args.fresh))
        print(f"seed {s}: " + json.dumps(seeds[-1]), file=sys.stderr, flush=True)
    encoders = list(seeds[0]["probe"])
    acc = {label: {e: summary([100 * s["probe"][e][label] for s in seeds]) for e in encoders} for label in LABELS}

    def gap(label: str, a: str, b: str) -> dict[str, float]:
        return summary([100 * (s["probe"][a][label] - s["probe"][b][label]) for s in seeds])

    claims = {}
    for label in LABELS:
        beats = gap(label, "student_strong", "teacher_strong")
        robust = {w: gap(label, f"student_{w}", "student_strong") for w in ("short", "narrow")}
        vs_vjepa = gap(label, "student_strong", "vjepa")
        claims[label] = {
            "1_student_beats_teacher": {"gap_points": beats, "holds": beats["mean"] > 0},
            "2_robust_to_teacher": {"gap_points": robust,
                                    "holds": all(abs(g["mean"]) <= args.tolerance for g in robust.values())},
            "3_salt_at_least_vjepa_at_matched_flops": {"gap_points": vs_vjepa, "holds": vs_vjepa["mean"] >= 0},
        }
    flops = {k: summary([s["runs"][k]["flops"] / 1e12 for s in seeds]) for k in seeds[0]["runs"]}
    out = {"benchmark": "salt_fidelity", "args": vars(args), "seconds": round(time.perf_counter() - t0),
           "accuracy_percent": acc, "training_tflops": flops, "claims": claims, "seeds": seeds}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
