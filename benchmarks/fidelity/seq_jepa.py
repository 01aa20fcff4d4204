"""seq-JEPA's claims: action conditioning buys equivariance without costing invariance, and longer evaluation
sequences help classification.

    python benchmarks/fidelity/seq_jepa.py [--setting rotations|saccades|transforms] [--seeds 0 1 2 3 4] [--jobs 2]
    python benchmarks/fidelity/seq_jepa.py --quick                                  # smoke test (~1 min)

Settings (each a recipe; `--epochs` defaults to the recipe's):
- rotations: the paper's 3DIEBench protocol on its embedded stand-in (`recipes/seq_jepa/rotations_tiny.yaml`,
  datamodules.RotationSequenceDataModule: procedural 3-D objects rendered under known rotations, the action the
  relative rotation as a quaternion), with poses in +-30 degrees per axis instead of the recipe's +-90: at +-90
  no arm's R^2 rose above 0 (620 steps, 3 seeds: -0.54 .. -0.65 with the 1 -> 2 pair alone) and a random
  encoder's ridge R^2 is ~0, so the claim could not be judged; at +-30 the random init reads ~0.19;
- saccades: the paper's predictive learning across saccades (`recipes/seq_jepa/tiny.yaml`: glimpses of
  scikit-learn's digits, the action the eye movement);
- transforms: views of the whole digit under rotation / scale / translation / brightness / contrast (the earlier
  recipe, kept for comparison).

For each seed the recipe is trained twice, with and without action conditioning (`use_actions`), then frozen and evaluated as in the paper (jepa_lightning/eval/equivariance.py) with the
network the paper evaluates (the online encoder and its aggregator):
- invariance: linear classifier on the aggregate of the first L views (L in --eval-lens) of fixed training
  sequences -> accuracy on validation sequences;
- equivariance: MLP regressing the relative action between consecutive views (every pair i -> i + 1 of the
  first max(--eval-lens) views) from their pair of encoder outputs -> R^2 on validation sequences;
- per-view encoder outputs: linear classifier on one view's encoder output, to tell what the encoder learns from
  what the aggregator keeps.
The randomly initialised network (same architecture, same seed) is the floor.
Claims (paper, 3DIEBench: R^2 0.71 with vs 0.29 without action conditioning, similar top-1):
1. R^2 with actions exceeds R^2 without by more than twice the combined std over seeds; and, paired, the mean of
   the per-seed differences exceeds twice their std (a seed fixes both arms' encoder init, data and sequence order,
   so the arms differ only in the conditioning, and the seeds' common variation cancels);
2. the linear accuracy at the training sequence length differs by <= 5 points with and without actions;
3. with actions, accuracy with the longest evaluation sequence exceeds accuracy with one view (2 x combined std);
and, as for every variant, the trained network beats its random initialisation on both probes.
Audit against the reference code (hafezgh/seq-jepa, src/models.py and src/engine.py), 3 seeds each, R^2 with /
without actions, the action gain (per seed) and the aggregate-3 linear accuracy with / without (points):
- saccades, ours (EMA target with running BatchNorm statistics, pre-norm GELU aggregator, linear EMA schedule):
  0.797 / 0.735, +0.062 (+0.076 +0.087 +0.024), 77.3 / 76.2;
- the reference's target normalisation (`--model.init_args.target_norm=batch`, its target ResNet in train mode):
  0.822 / 0.742, +0.080 (+0.102 +0.051 +0.086), 80.6 / 78.0; on rotations 0.305 / 0.283, +0.022 (+0.026 -0.004
  +0.044) against ours 0.295 / 0.271, +0.024 (+0.024 +0.014 +0.033);
- all three of the reference's details (`target_norm=batch`, `agg_norm=post` with `agg_dropout=0.1`: torch's
  post-norm ReLU encoder layers, and `ema_schedule=cosine`: 1 - (1 - 0.996)(cos(pi t) + 1) / 2, per step here,
  per epoch there): 0.810 / 0.746, +0.064 (+0.089 +0.046 +0.056), 76.0 / 77.9.
On saccades every variant's gain is positive on every seed; none clears the unpaired bar (2 x combined std: 0.072
/ 0.083 / 0.073); paired (2 x the std of the per-seed gains: 0.067 / 0.052 / 0.046) ours narrowly fails, the other
two hold. On rotations batch statistics lift the arm without actions as much (paired: 0.022 against 0.048, fails;
ours 0.024 against 0.019, holds). No detail moves the gain beyond the seed spread in both settings, so the recipes
keep our defaults (the options stay, for parity runs). Longer training does not either: rotations at `--epochs 40`
(1240 steps, ~33 min with 2 jobs, over the budget) lift every probe (aggregate-3 83.7 / 80.7 against 74.8 / 73.3,
R^2 0.337 / 0.306) but the gain stays inside the spread: +0.031 (+0.035 +0.004 +0.053), unpaired bar 0.057, paired
0.050; so the benchmark keeps the recipe's 20 epochs (620 steps).
With 5 seeds (the published results; `make reproduce` runs `--seeds 0 1 2 3 4`, as the spread is large against the
gain): saccades +0.065 (+0.076 +0.087 +0.024 +0.103 +0.036), unpaired bar 0.068, paired 0.067: fails narrowly
(~19 min); rotations +0.014 (+0.024 +0.014 +0.033 +0.009 -0.010), unpaired bar 0.067, paired 0.032: fails (~43 min,
over the 30-min budget). The 3-seed paired verdict on rotations (0.024 against 0.019, holds) did not survive two
more seeds.
The official training loop (main_transformed_views.py) differs from its flags: it pretrains with
`torch.optim.Adam(lr=0.001, weight_decay=0.0)` (the `--optimizer AdamW` / `--weight-decay` flags reach only the
probe stage) and, with a warmup, sets the learning rate back to `--lr` at the start of every epoch after it, so the
`--scheduler` cosine never takes effect (ours: AdamW, weight decay 1e-3, warmup then cosine). Side by side with the
official code, trained as that loop on the same batches at this recipe's size and scored by the same evaluation:
benchmarks/fidelity/seq_jepa_parity.py (the official arms sit above ours: aggregate-3 78.4 vs 74.5 %, one view's
encoder output 74.5 vs 67.4 %, R^2 0.317 / 0.288 vs 0.276 / 0.262, 5 seeds). Ours in the official training
configuration explains that level (2026-12-06, 3 seeds, rotations, not published: the three details above plus
`--model.init_args.weight_decay=0 --model.init_args.final_weight_decay=0 --model.init_args.start_lr=1e-5
--model.init_args.final_lr=5e-4 --model.init_args.ema_average_start=false`, i.e. Adam without weight decay, warmup
then a constant lr, the EMA from its init): R^2 with / without actions 0.335 / 0.324 (gain +0.016 -0.007 +0.026),
aggregate-3 80.7 / 81.9 %, one view's encoder output 76.5 % (with actions): at or above the official arms' level,
with the same small gain. So the training configuration lifts every probe, not the action gain.
Each run is cached as JSON under runs/bench_seq_jepa (reruns resume; --fresh recomputes) and runs in its own
process (`--jobs` at a time, one thread each). Writes benchmarks/results/seq_jepa_<setting>.json
(benchmarks/fidelity/common.py schema) and prints it.
"""

from __future__ import annotations

import argparse
import copy
import json
import tempfile
import time
from pathlib import Path

import torch
from common import (
    build_recipe,
    cached,
    claim_entry,
    gain_claim,
    in_parallel,
    override_tag,
    paired_gain_claim,
    probe_entry,
    record_callback,
    run_worker,
    save_result,
    summary,
)

from jepa_lightning.eval.equivariance import evaluate

ROOT = Path(__file__).resolve().parents[2]
RECIPES = {"saccades": ROOT / "recipes" / "seq_jepa" / "tiny.yaml",
           "transforms": ROOT / "recipes" / "seq_jepa" / "tiny.yaml",
           "rotations": ROOT / "recipes" / "seq_jepa" / "rotations_tiny.yaml"}
# rotations at +-30 degrees per axis, not the recipe's (3DIEBench's) +-90: at +-90 no arm's relative-rotation R^2
# rose above 0 from 32 px renders (random init: ridge R^2 ~0), so the equivariance claim could not be judged there
SETTING_OVERRIDES = {"saccades": [], "rotations": ["--data.init_args.angle_range=30"],
                     "transforms": ["--data.init_args.mode=transforms", "--model.init_args.action_dim=6"]}
DESCRIPTIONS = {
    "rotations": "procedural 3-D objects (10 classes) rendered at 32 px under known rotations (Euler angles in "
                 "+-30 degrees per axis; 3DIEBench: +-90), action = relative rotation (quaternion); a 3DIEBench "
                 "stand-in",
    "saccades": "glimpses (10 px) of scikit-learn's 16 px digits, action = the eye movement",
    "transforms": "whole digits under rotation/scale/translation/brightness/contrast, action = the parameters"}
ARMS = {"with_actions": True, "no_actions": False}
CACHE = ROOT / "runs" / "bench_seq_jepa"
QUICK = ["--trainer.limit_train_batches=4", "--data.init_args.image_size=12", "--data.init_args.num_workers=0",
         "--model.init_args.encoder.init_args.widths=[8,16]", "--model.init_args.encoder.init_args.depths=[1,1]",
         "--model.init_args.agg_depth=1"]


def run(setting: str, seed: int, use_actions: bool, epochs: int | None, eval_lens: list[int],
        regression_steps: int, overrides: list[str]) -> dict:
    """Train one (setting, seed, arm) and evaluate the trained network and, with actions, its initialisation."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        cli = build_recipe(RECIPES[setting], seed, [
            *SETTING_OVERRIDES[setting], *([f"--trainer.max_epochs={epochs}"] if epochs else []),
            f"--model.init_args.use_actions={str(use_actions).lower()}",
            f"--data.init_args.val_seq_len={max(eval_lens + [2])}", *overrides], tmp)
        initial = copy.deepcopy(cli.model) if use_actions else None
        record = record_callback(10)
        cli.trainer.callbacks.append(record)
        t0 = time.perf_counter()
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        train_s = time.perf_counter() - t0
    dm = cli.datamodule

    def score(model: torch.nn.Module) -> dict[str, float]:
        return evaluate(model, dm.train_eval_dataloader(), dm.val_dataloader(), eval_lens, dm, regression_steps,
                        seed, encoder_views=True)

    out = {"setting": setting, "seed": seed, "use_actions": use_actions, "steps": cli.trainer.global_step,
           "epochs": cli.trainer.current_epoch, "train_seconds": round(train_s, 1), "curves": record.curves,
           "trained": score(cli.model)}
    if initial is not None:
        out["random_init"] = score(initial)
    return out | {"seconds": round(time.perf_counter() - start, 1)}


def cache_path(seed: int, arm: str, args: argparse.Namespace) -> Path:
    epochs = f"_{args.epochs}ep" if args.epochs else ""
    return CACHE / (f"{args.setting}_s{seed}_{arm}{epochs}" + ("_quick" if args.quick else "")
                    + override_tag(args.overrides) + ".json")


def run_cached(seed: int, arm: str, args: argparse.Namespace) -> dict:
    """One run in its own process (so runs go in parallel), cached by its settings."""
    return run_worker(cache_path(seed, arm, args), __file__, [
        "--one", str(seed), arm, "--setting", args.setting, *(["--epochs", str(args.epochs)] if args.epochs else []),
        "--eval-lens", *map(str, args.eval_lens), "--regression-steps", str(args.regression_steps),
        *(["--quick"] if args.quick else []), "--", *args.overrides], f"{args.setting} seed {seed} {arm}", args.fresh)


def write_result(runs: list[dict], args: argparse.Namespace, overrides: list[str], seconds: float) -> Path:
    seeds = sorted({r["seed"] for r in runs})
    by = {(r["seed"], r["use_actions"]): r for r in runs}
    lo, hi = min(args.eval_lens), max(args.eval_lens)
    train_len = args.train_len if args.train_len in args.eval_lens else hi

    def scores(arm: str, key: str, scale: float = 100.0) -> list[float]:
        if arm == "random_init":
            return [scale * by[(s, True)]["random_init"][key] for s in seeds]
        return [scale * by[(s, ARMS[arm])]["trained"][key] for s in seeds]

    probes_spec = {f"aggregate_linear_{train_len}": (f"agg_linear_acc_{train_len}", "accuracy %", 100.0),
                   f"aggregate_linear_{hi}": (f"agg_linear_acc_{hi}", "accuracy %", 100.0),
                   "encoder_linear_1": ("encoder_linear_acc_1", "accuracy %", 100.0),
                   "equivariance_r2": ("equivariance_r2", "R^2", 1.0)}
    probes = [probe_entry(name, metric, {"random_init": scores("random_init", key, scale),
                                         "pretrained": scores("with_actions", key, scale),
                                         "no_actions": scores("no_actions", key, scale)})
              for name, (key, metric, scale) in probes_spec.items()]
    acc = f"agg_linear_acc_{train_len}"
    with_r2, without_r2 = scores("with_actions", "equivariance_r2", 1.0), scores("no_actions", "equivariance_r2", 1.0)
    gap = summary(scores("with_actions", acc))["mean"] - summary(scores("no_actions", acc))["mean"]
    claims = [
        gain_claim("R^2 of the relative action is higher with action conditioning than without (paper, 3DIEBench: "
                   "0.71 vs 0.29)", with_r2, without_r2),
        paired_gain_claim("the same seed's encoder init and sequences: R^2 with action conditioning beats R^2 without "
                          "seed by seed (mean R^2 gain)", with_r2, without_r2),
        claim_entry(f"linear accuracy on the aggregate of {train_len} views is about the same with and without "
                    "action conditioning (points)", gap, "|gap| <= 5 points", bool(abs(gap) <= 5.0)),
        gain_claim(f"with actions, {hi} evaluation views classify better than {lo}",
                   scores("with_actions", f"agg_linear_acc_{hi}"), scores("with_actions", f"agg_linear_acc_{lo}")),
        gain_claim(f"the trained aggregate ({train_len} views) beats random init", scores("with_actions", acc),
                   scores("random_init", acc)),
        gain_claim("the trained encoder's R^2 beats random init", with_r2, scores("random_init", "equivariance_r2", 1.0)),
    ]
    steps = sorted({r["steps"] for r in runs})
    config = {"recipe": str(RECIPES[args.setting].relative_to(ROOT)), "setting": args.setting, "epochs": args.epochs,
              "steps": steps, "eval_lens": args.eval_lens, "train_len": train_len,
              "regression_steps": args.regression_steps, "setting_overrides": SETTING_OVERRIDES[args.setting],
              "overrides": overrides, "quick": args.quick}
    setting = f"{DESCRIPTIONS[args.setting]}; small ResNet, {'/'.join(map(str, steps))} steps"
    monitors = {f"{arm}_s{s}": by[(s, flag)]["curves"] for s in seeds for arm, flag in ARMS.items()}
    notes = ("Arms: pretrained = trained with action conditioning (the method), no_actions = the same recipe "
             "trained without it, random_init = the with-actions network before training. All evaluate the "
             "online encoder and aggregator, as the paper does.")
    r2 = [v for p in probes if p["name"] == "equivariance_r2" for arm in p["scores"].values() for v in arm]
    if max(r2) <= 0:
        notes += (f" Every arm's R^2 is at or below 0 (max {max(r2):.3f}): the regressor reads no relative action "
                  "from these features, so the R^2 claims are not measurable at this size (a verdict of 'no' "
                  "there says nothing about action conditioning).")
    return save_result(f"seq_jepa_{args.setting}" + ("_quick" if args.quick else ""), "seq-JEPA",
                       f"benchmarks/fidelity/seq_jepa.py --setting {args.setting}", setting, config, seeds, seconds, probes, claims, monitors,
                       notes=notes, directory=CACHE if args.quick else None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setting", choices=sorted(RECIPES), default="rotations")
    ap.add_argument("--epochs", type=int, default=None, help="training epochs (default: the recipe's)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--eval-lens", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    ap.add_argument("--train-len", type=int, default=3, help="observed views in training (recipes: seq_len 4)")
    ap.add_argument("--regression-steps", type=int, default=1500)
    ap.add_argument("--jobs", type=int, default=2, help="runs in parallel, one thread each")
    ap.add_argument("--quick", action="store_true", help="smoke test: 1 seed, 1 epoch of 4 batches, tiny network")
    ap.add_argument("--fresh", action="store_true", help="recompute cached runs")
    ap.add_argument("--one", nargs=2, metavar=("SEED", "ARM"), help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*", help="extra CLI overrides, e.g. --model.init_args.lr=1e-3 (after --)")
    args = ap.parse_args()
    overrides = list(args.overrides)
    if args.quick:
        args.epochs, args.seeds, args.eval_lens, args.regression_steps = 1, args.seeds[:1], [1, 3], 100
        overrides = QUICK + overrides
    if args.one:  # a worker process: one run, cached
        seed, arm = int(args.one[0]), args.one[1]
        CACHE.mkdir(parents=True, exist_ok=True)
        cached(cache_path(seed, arm, args), run, args.setting, seed, ARMS[arm], args.epochs, args.eval_lens,
               args.regression_steps, overrides, fresh=True)
        return
    t0 = time.perf_counter()
    jobs = [(s, arm) for s in args.seeds for arm in ARMS]
    runs = in_parallel(lambda seed, arm: run_cached(seed, arm, args), jobs, args.jobs)
    seconds = max(time.perf_counter() - t0, sum(r["seconds"] for r in runs) / args.jobs)
    print(json.dumps(json.loads(write_result(runs, args, overrides, seconds).read_text()), indent=1))


if __name__ == "__main__":
    main()
