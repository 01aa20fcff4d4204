"""Why did I-JEPA at the paper's EMA (0.996 -> 1) collapse on the tiny digits recipe? One factor at a time.

    python benchmarks/fidelity/ijepa_collapse.py [--seeds 0 1 2] [--steps 880] [--jobs 2]

Variants of `recipes/ijepa/tiny.yaml` (scikit-learn digits, 32 px, 8x8 tokens), each trained `--steps` steps
and probed frozen on centred features next to the random init (`FrozenProbes`: linear, kNN, RankMe):

- paper_ema:     EMA 0.996 -> 1 as the paper schedules it (the teacher keeps prod(momenta) of its init)
- average_start: EMA 0.996 -> 1 starting as the running average of the students (the library default)
- ema_0999:      EMA 0.999 -> 1, paper schedule (the old recipe's value)
- low_lr:        paper_ema at lr 2.5e-4 (start 5e-5): the official lr 1e-3 is for batch 2048, this is 64
Every other arm runs at the official lr 1e-3 (start 2e-4); the recipe itself now uses low_lr's values.
- long_warmup:   paper_ema with 40 % warm-up instead of 10 %
The collapse monitors (target and prediction std) are kept per step, so the report plots when they fall.
Writes benchmarks/results/ijepa_collapse.json (common.py schema: one arm per variant).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import cached, claim_entry, probe_entry, save_result, summary, train_recipe

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "ijepa" / "tiny.yaml"
BASE = ["--model.init_args.lr=1e-3", "--model.init_args.start_lr=2e-4"]  # the official values (the recipe: lr / 4)
CACHE = ROOT / "runs" / "bench_ijepa_collapse"
VARIANTS = {
    "paper_ema": ["--model.init_args.ema=[0.996,1.0]", "--model.init_args.ema_average_start=false"],
    "average_start": ["--model.init_args.ema=[0.996,1.0]", "--model.init_args.ema_average_start=true"],
    "ema_0999": ["--model.init_args.ema=[0.999,1.0]", "--model.init_args.ema_average_start=false"],
    "low_lr": ["--model.init_args.ema=[0.996,1.0]", "--model.init_args.ema_average_start=false",
               "--model.init_args.lr=2.5e-4", "--model.init_args.start_lr=5e-5"],
    "long_warmup": ["--model.init_args.ema=[0.996,1.0]", "--model.init_args.ema_average_start=false",
                    "--model.init_args.warmup=0.4"],
}
# The arms of benchmarks/fidelity/sigreg_guard.py (not of this script's default set): paper_ema and I-JEPA without an
# EMA teacher (no_ema: the encoder predicts its own outputs under stop-gradient), each with LeJEPA's SIGReg guard
# (methods/base.py) at the paper's lambda 0.05 or at 0.01, on the context encoder's pooled output as it is or through
# LeJEPA's projector (the tiny LeJEPA recipe's: 96 -> 512 -> 512 -> 64)
SIGREG_PROJECTOR = "{class_path: jepa_lightning.nn.Projector, init_args: {in_dim: 96, hidden: 512, out_dim: 64}}"
VARIANTS["no_ema"] = ["--model.init_args.ema=null"]
SIGREG_ARMS = {"paper_ema_sigreg": ("paper_ema", 0.05, False), "paper_ema_sigreg_0.01": ("paper_ema", 0.01, False),
               "paper_ema_sigreg_proj": ("paper_ema", 0.05, True),
               "paper_ema_sigreg_proj_0.01": ("paper_ema", 0.01, True),
               "no_ema_sigreg_proj": ("no_ema", 0.05, True)}  # arm: (unguarded arm, weight, projector)
VARIANTS |= {arm: [*VARIANTS[base], f"--model.init_args.sigreg_weight={weight:g}",
                   *([f"--model.init_args.sigreg_projector={SIGREG_PROJECTOR}"] if projector else [])]
             for arm, (base, weight, projector) in SIGREG_ARMS.items()}
GUARD_VARIANTS = ["no_ema", *SIGREG_ARMS]
DEFAULT_VARIANTS = [v for v in VARIANTS if v not in GUARD_VARIANTS]
PROBES = {"linear_acc": "accuracy %", "knn_acc": "accuracy %", "rankme": "RankMe"}


def run(variant: str, seed: int, steps: int) -> dict:
    import tempfile

    from jepa_lightning.eval.frozen_probes import FrozenProbes

    with tempfile.TemporaryDirectory() as tmp:
        cli, _, seconds, curves = train_recipe(RECIPE, seed, steps, [*BASE, *VARIANTS[variant]], tmp, 10)
        share = float(cli.trainer.callback_metrics.get("train/ema_init_share", float("nan")))
        probes = next(cb for cb in cli.trainer.callbacks if isinstance(cb, FrozenProbes))
        cli.trainer.limit_val_batches = 1.0
        cli.trainer.validate(cli.model, datamodule=cli.datamodule, verbose=False)
    return {"variant": variant, "seed": seed, "train_seconds": round(seconds, 1), "ema_init_share": share,
            "curves": curves, **{k: {p: round(v, 4) for p, v in s.items()} for k, s in probes.results.items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=880)
    ap.add_argument("--variants", nargs="+", default=DEFAULT_VARIANTS, choices=list(VARIANTS))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--quick", action="store_true", help="smoke test: 3 steps, seed 0, two variants, not published")
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.steps, args.seeds, args.variants = 3, [0], ["paper_ema", "average_start"]

    def path(variant: str, seed: int) -> Path:
        return CACHE / f"{variant}_s{seed}_{args.steps}.json"

    if args.one:
        CACHE.mkdir(parents=True, exist_ok=True)
        cached(path(args.one[0], int(args.one[1])), run, args.one[0], int(args.one[1]), args.steps, fresh=True)
        return

    def one(job: tuple[str, int]) -> dict:
        if not path(*job).is_file() or args.fresh:
            proc = subprocess.run([sys.executable, __file__, "--one", job[0], str(job[1]), "--steps", str(args.steps)],
                                  capture_output=True, text=True, cwd=ROOT)
            if proc.returncode:
                raise RuntimeError(f"{job} failed:\n{proc.stderr[-3000:]}")
        return json.loads(path(*job).read_text())

    t0 = time.perf_counter()
    jobs = [(v, s) for s in args.seeds for v in args.variants]
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        runs = {(r["variant"], r["seed"]): r for r in pool.map(one, jobs)}
    seeds = args.seeds

    def scores(variant: str, arm: str, probe: str) -> list[float]:
        scale = 100 if probe.endswith("acc") else 1
        return [scale * runs[(variant, s)][arm][probe] for s in seeds]

    first = args.variants[0]
    probes = [probe_entry(p, metric, {"random_init": scores(first, "random_init", p),
                                      "pretrained": scores("average_start", "teacher", p)
                                      if "average_start" in args.variants else scores(first, "teacher", p),
                                      **{v: scores(v, "teacher", p) for v in args.variants},
                                      **{f"{v}_encoder": scores(v, "encoder", p) for v in args.variants}})
              for p, metric in PROBES.items()]
    claims = []
    for v in args.variants:
        final_std = [runs[(v, s)]["curves"]["train/target_std"][-1][1] for s in seeds]
        claims.append(claim_entry(f"{v}: the targets do not collapse (final train/target_std above 0.1)",
                                  summary(final_std)["mean"], "> 0.1", bool(min(final_std) > 0.1)))
    monitors = {f"{v}_s{s}": {"train/target_std": runs[(v, s)]["curves"]["train/target_std"]}
                for v in args.variants for s in seeds}
    save_result("ijepa_collapse", "I-JEPA", "benchmarks/fidelity/ijepa_collapse.py",
                f"digits 32 px (recipes/ijepa/tiny.yaml), {args.steps} steps, one factor changed per arm",
                {"steps": args.steps, "variants": {v: VARIANTS[v] for v in args.variants}}, seeds,
                time.perf_counter() - t0, probes, claims, monitors,
                notes="; ".join(f"{v}: teacher's init share {summary([runs[(v, s)]['ema_init_share'] for s in seeds])['mean']:.3g}"
                                for v in args.variants),
                directory=CACHE if args.quick else None)
    print(json.dumps({f"{v}_s{s}": {k: runs[(v, s)][k] for k in ("teacher", "encoder", "random_init", "ema_init_share")}
                      for v in args.variants for s in seeds}, indent=1))


if __name__ == "__main__":
    main()
