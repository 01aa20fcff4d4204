"""Does LeJEPA learn on the embedded object scenes, against random init and against I-JEPA at the same training
FLOPs, and does its training loss rank runs like their probes do (the paper's model-selection claim)?

    python benchmarks/fidelity/lejepa.py [--seeds 0 1 2] [--steps 1000] [--jobs 2]
    python benchmarks/fidelity/lejepa.py --quick          # smoke test (~2 min)

Arms, each trained from its recipe with `image_jepa.py`'s probes (frozen, centred features; the scene's main object
class from mean-pooled tokens by logistic regression and cosine kNN, and from the whole token map):

- pretrained: LeJEPA (`recipes/lejepa/scenes_tiny.yaml` at `CHEAP`: batch 32, 2 global views of 64 px and 4 local
  of 32 px, `--steps` steps, peak lr 3e-4), its backbone at the end of training;
- random_init: the same backbone at its initialisation (the seed's);
- ijepa_matched_flops: I-JEPA (`recipes/ijepa/scenes_tiny.yaml`, its EMA teacher) trained for as many steps as
  cost the same training FLOPs (`step_flops`, counted on real batches: both methods' forward and backward, the
  SIGReg term included), same seed.

Model selection: every LeJEPA run (the seeds, and at `SWEEP_SEED` the sweep of lambda and lr in `SWEEP`) keeps its
backbone at `--checkpoints` points along training with its training loss there (the mean over the last `WINDOW`
steps); each checkpoint is probed (image linear and kNN, patch linear and kNN). The Spearman correlation between
the loss and each probe in `RANKED` is reported within each run (over its checkpoints, the mean over runs), over all
(run, checkpoint) points, and over the final checkpoints alone (the sweep's runs). The paper reports a 94.5 %
Spearman correlation between training loss and linear-probe accuracy for a ViT-Base/8 on ImageNet-1k (its Fig. 1);
ours is the plain training loss, whose scale moves with lambda ((1 - lambda) x prediction + lambda x SIGReg).
Each run is cached as JSON under runs/bench_lejepa (reruns resume; --fresh recomputes) and runs in its own process.
Writes benchmarks/results/lejepa_scenes.json (common.py schema) and prints it.

What it measured (seeds 0-2; LeJEPA 18.8 GFLOP a step, I-JEPA 11.4, so 1646 I-JEPA steps): at peak lr 3e-4 LeJEPA beats
random init on the mean-pooled linear probe, 18.9 +- 1.3 % against 12.1 +- 1.2 (gain 6.8 > 3.4, twice the combined
spread; per seed 17.5 / 19.5 / 19.8 against 13.4 / 11.2 / 11.7), on the token map (28.9 against 15.9) and on patch
linear (mIoU 0.106 against 0.091), but not on image kNN (9.7 +- 0.8 against 11.5 +- 0.3: chance is 10 %) nor patch kNN
(0.132 against 0.139). I-JEPA at the same FLOPs: image linear 13.5, kNN 11.3, tokens 39.0, patch linear 0.130 (LeJEPA is
ahead on the pooled linear probe, behind on the spatial ones). The lr decides it: at 1e-3 (the recipe's until this run;
the first published run, seeds 0-2) image linear was 13.3 +- 0.6 (the bar failed) with a richer token map (37.0) and
patch linear (0.125): a faster run learns more layout and no identity. Lower lrs keep the pooled gain (1e-4, seed 0:
20.0), and most of it is there early (18.1 at step 250 of that run); the image kNN probe stays at chance in every run
(9.1 to 11.9 % over the 28 probed checkpoints; random init 11.2-11.8).
Loss vs probes: within a run the loss ranks the checkpoints like patch linear (mean rho -0.80) and image linear (-0.69),
not like kNN (+0.22); across runs it does not, and for image linear it ranks them backwards (the 7 final checkpoints rho
+0.96; all points +0.47), as lambda moves the loss's scale (final loss 0.235 at lambda 0.02 with image linear 16.9,
0.712 at lambda 0.2 with 20.7) and a higher lr lowers the loss and the pooled probe together (lr 1e-3: 0.387, 12.6 %).
Runtime on 2 cores: a LeJEPA run is ~9-17 min of training (0.5-1.0 s a step on one thread, by contention) plus ~2-4 min
of probes, an I-JEPA run ~10-14 min; the whole benchmark (10 runs, 2 at a time) is ~70-80 min, over the issue's 30-min
budget; the seeds alone (6 runs) ~35-40 min. With the recipe's batch 64 and 6 local views a step costs 43.6 GFLOP (1.5
s), and 600 such steps at lr 1e-3 learned no more (one seed: token map 36.4 %, image linear 13.8 %). Longer runs do not
reach the objects' identity either (exploratory, one thread each): at lr 1e-3, 3000 steps (seeds 0 and 1) raise the
spatial probes (token map 42.7 and 47.5 %, patch linear 0.139 and 0.141) but image linear stays at 12.5 and 14.6 %
(random init 13.4 and 11.2) and image kNN at 8.6 and 9.7; at lr 3e-4, 3000 steps (seed 0) give image linear 15.3 / 15.2
/ 15.3 % at steps 1000 / 2000 / 3000 (below the 1000-step run's 17.5: the longer cosine schedule keeps the lr high for
longer) and image kNN 9.4 / 9.7 / 9.4, while the token map reaches 37.4 % and patch linear 0.133; at lr 3e-4, 6000 steps
(seeds 0 and 1, 6 epochs, 57 min of training each) give image linear 17.9 and 17.2 % (init 13.4 and 11.2) and image kNN
10.2 and 11.8 (init 11.4 and 11.2; at steps 2000 / 4000: 9.9 / 10.5 and 8.9 / 10.7), with the token map at 46.7 and 44.1
% and patch linear 0.137 and 0.138. I-JEPA needed 6000 steps of batch 64 (`ijepa_scenes`, 0.6x the 6000-step runs'
training FLOPs) to reach 30.3 % image linear and 15.7 % kNN. Nor is it the kNN probe's geometry (a one-off diagnostic,
base arm seed 0, 1000 steps, which reproduced its 17.5 / 9.3): the pooled features stay very anisotropic (the top 5 of
96 eigenvalues hold 97 % of the variance, 99 % at init), but kNN on standardised features is 9.0 %, and on the
projector's output (where SIGReg acts) 8.4 % (linear 10.6). Nor is it the photographs, which every view of a scene
shares: with flat backgrounds (`--data.init_args.background_contrast=0.0`, lr 1e-3, seed 0, 1000 steps) image linear is
15.8 % against 18.2 % at random init and kNN 8.3 against 10.7, while the token map rises to 50.8 % (init 20.8).
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import torch
import yaml
from common import (
    build_recipe,
    cached,
    claim_entry,
    gain_claim,
    in_parallel,
    probe_entry,
    run_worker,
    save_result,
    summary,
    train_recipe,
)
from image_jepa import PROBES, QUICK, evaluate

ROOT = Path(__file__).resolve().parents[2]
RECIPES = {"lejepa": ROOT / "recipes" / "lejepa" / "scenes_tiny.yaml", "ijepa": ROOT / "recipes" / "ijepa" / "scenes_tiny.yaml"}
CACHE = ROOT / "runs" / "bench_lejepa"
CHEAP = ["--data.init_args.batch_size=32", "--data.init_args.views.init_args.num_local=4"]
SWEEP = {"lamb_0.02": ["--model.init_args.lamb=0.02"], "lamb_0.2": ["--model.init_args.lamb=0.2"],
         "lr_1e-4": ["--model.init_args.lr=1e-4"], "lr_1e-3": ["--model.init_args.lr=1e-3"]}
SWEEP_SEED = 0
WINDOW = 50  # training steps the loss at a checkpoint is averaged over
RANKED = ("image_linear", "image_knn", "patch_linear")  # the probes of every checkpoint the loss is ranked against
QUICK_LEJEPA = ["--data.init_args.num_train=256", "--data.init_args.num_train_eval=256",
                "--data.init_args.num_val=128", "--model.init_args.encoder.init_args.depth=1",
                "--model.init_args.sigreg_slices=64"]


def checkpoint_callback(at: set[int]):
    """Keeps a copy of the evaluated network and the mean training loss of the last `WINDOW` steps at the
    global steps `at` (and at the end)."""
    import lightning as L

    class Checkpoints(L.Callback):
        def __init__(self) -> None:
            self.losses: list[float] = []
            self.kept: list[tuple[int, float, torch.nn.Module]] = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if isinstance(outputs, dict) and "loss" in outputs:
                self.losses = [*self.losses[-(WINDOW - 1):], float(outputs["loss"])]
            if trainer.global_step in at:
                self.keep(trainer, pl_module)

        def on_train_end(self, trainer, pl_module) -> None:
            if not self.kept or self.kept[-1][0] != trainer.global_step:
                self.keep(trainer, pl_module)

        def keep(self, trainer, pl_module) -> None:
            net = copy.deepcopy(pl_module.network("teacher")).eval()
            self.kept.append((trainer.global_step, statistics.mean(self.losses), net))

    return Checkpoints()


def overrides_of(method: str, arm: str, quick: bool) -> list[str]:
    if method == "ijepa":
        return QUICK if quick else []
    return [*CHEAP, *SWEEP.get(arm, []), *(QUICK_LEJEPA if quick else [])]


def run(method: str, arm: str, seed: int, steps: int, checkpoints: int, quick: bool, max_patches: int) -> dict:
    """Train one run; probe its final network (and, for LeJEPA, its checkpoints and its random init)."""
    start = time.perf_counter()
    at = {round(steps * (i + 1) / checkpoints) for i in range(checkpoints)} if method == "lejepa" else set()
    keep = checkpoint_callback(at)
    with tempfile.TemporaryDirectory() as tmp:
        cli, initial, seconds, curves = train_recipe(RECIPES[method], seed, steps, overrides_of(method, arm, quick),
                                                     tmp, max(steps // 60, 1), callbacks=[keep])
    dm, model = cli.datamodule, cli.model
    result = {"method": method, "arm": arm, "seed": seed, "steps": cli.trainer.global_step,
              "train_seconds": round(seconds, 1), "curves": curves,
              "pretrained": evaluate(model.network("teacher"), dm, max_patches, seed)}
    if method == "lejepa":  # the last checkpoint is the final network: its probes are the pretrained arm's
        result["checkpoints"] = [
            {"step": s, "loss": round(loss, 5),
             **({k: v for k, v in result["pretrained"].items() if k != "image_linear_tokens"}
                if s == result["steps"] else evaluate(net, dm, max_patches, seed, tokens=False))}
            for s, loss, net in keep.kept]
        if arm == "base":
            result["random_init"] = evaluate(initial, dm, max_patches, seed)
    return result | {"seconds": round(time.perf_counter() - start, 1)}


def step_cost(method: str, quick: bool, draws: int = 4) -> float:
    """Mean training FLOPs of one step of a run (`step_flops` on real batches of its data, masks drawn)."""
    from jepa_lightning.eval.flops import step_flops

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        cli = build_recipe(RECIPES[method], 0, overrides_of(method, "base", quick), tmp)
    model, dm = cli.model, cli.datamodule
    dm.setup("fit")
    counts = []
    for draw, batch in zip(range(draws), dm.train_dataloader()):
        batch = dm.on_before_batch_transfer(batch, 0)
        masks = model.sample_masks(batch, torch.Generator().manual_seed(draw))
        if masks is not None:
            batch["masks"] = masks
        counts.append(step_flops(model, batch))
    return sum(counts) / len(counts)


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    def ranks(v: list[float]) -> list[float]:
        order = sorted(range(len(v)), key=v.__getitem__)
        r = [0.0] * len(v)
        i = 0
        while i < len(v):
            j = i
            while j + 1 < len(v) and v[order[j + 1]] == v[order[i]]:
                j += 1
            for k in range(i, j + 1):
                r[order[k]] = (i + j) / 2
            i = j + 1
        return r
    rx, ry = ranks(x), ranks(y)
    mx, my = statistics.mean(rx), statistics.mean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    var = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return cov / var if var else float("nan")


def cache_path(method: str, arm: str, seed: int, steps: int, quick: bool) -> Path:
    return CACHE / f"{method}_{arm}_s{seed}_{steps}{'_quick' if quick else ''}.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=1000, help="LeJEPA's optimizer steps")
    ap.add_argument("--checkpoints", type=int, default=4, help="probed checkpoints along each LeJEPA run")
    ap.add_argument("--max-patches", type=int, default=20000)
    ap.add_argument("--jobs", type=int, default=2, help="runs in parallel, one thread each")
    ap.add_argument("--no-sweep", action="store_true", help="only the seeds' runs (no lambda / lr sweep)")
    ap.add_argument("--quick", action="store_true", help="smoke test: tiny data and model, 12 steps, 2 seeds")
    ap.add_argument("--fresh", action="store_true", help="recompute cached runs")
    ap.add_argument("--one", nargs=4, metavar=("METHOD", "ARM", "SEED", "STEPS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.steps, args.seeds, args.checkpoints = 12, args.seeds[:2], 2
    if args.one:  # a worker process: one run, cached
        method, arm, seed, steps = args.one[0], args.one[1], int(args.one[2]), int(args.one[3])
        CACHE.mkdir(parents=True, exist_ok=True)
        cached(cache_path(method, arm, seed, steps, args.quick), run, method, arm, seed, steps, args.checkpoints,
               args.quick, args.max_patches, fresh=True)
        return
    t0 = time.perf_counter()
    costs = {m: step_cost(m, args.quick) for m in RECIPES}
    ijepa_steps = round(args.steps * costs["lejepa"] / costs["ijepa"])
    jobs = [("lejepa", "base", s, args.steps) for s in args.seeds]
    jobs += [("ijepa", "matched_flops", s, ijepa_steps) for s in args.seeds]
    if not args.no_sweep:
        jobs += [("lejepa", arm, SWEEP_SEED, args.steps) for arm in SWEEP]

    def one(method: str, arm: str, seed: int, steps: int) -> dict:
        worker = ["--one", method, arm, str(seed), str(steps), "--checkpoints", str(args.checkpoints),
                  "--max-patches", str(args.max_patches), *(["--quick"] if args.quick else [])]
        return run_worker(cache_path(method, arm, seed, steps, args.quick), __file__, worker,
                          f"{method} {arm} seed {seed}", args.fresh)

    runs = in_parallel(one, jobs, args.jobs)
    seconds = max(time.perf_counter() - t0, sum(r["seconds"] for r in runs) / args.jobs)
    write_results(runs, args, costs, ijepa_steps, seconds)


def write_results(runs: list[dict], args: argparse.Namespace, costs: dict[str, float], ijepa_steps: int,
                  seconds: float) -> Path:
    seeds = args.seeds
    base = {r["seed"]: r for r in runs if r["method"] == "lejepa" and r["arm"] == "base"}
    ijepa = {r["seed"]: r for r in runs if r["method"] == "ijepa"}
    sweep = [r for r in runs if r["method"] == "lejepa"]

    def scores(by: dict, arm: str, probe: str) -> list[float]:
        return [by[s][arm][probe] for s in seeds]

    probes = [probe_entry(p, metric, {"random_init": scores(base, "random_init", p),
                                      "pretrained": scores(base, "pretrained", p),
                                      "ijepa_matched_flops": scores(ijepa, "pretrained", p)})
              for p, metric in PROBES.items()]
    claims = [gain_claim(f"LeJEPA's {p.replace('_', ' ')} probe beats random init", scores(base, "pretrained", p),
                         scores(base, "random_init", p)) for p in PROBES]
    for p in PROBES:
        le, ij = scores(base, "pretrained", p), scores(ijepa, "pretrained", p)
        diff = summary(le)["mean"] - summary(ij)["mean"]
        claims.append(claim_entry(f"LeJEPA minus I-JEPA at matched training FLOPs, {p.replace('_', ' ')} "
                                  "(informational)", diff, "not judged", None))
    points = [c for r in sweep for c in r["checkpoints"]]
    finals = [r["checkpoints"][-1] for r in sweep]
    for p in RANKED:
        rho = spearman([c["loss"] for c in points], [c[p] for c in points])
        claims.append(claim_entry(f"the training loss ranks LeJEPA's checkpoints like the {p.replace('_', ' ')} "
                                  f"probe (Spearman rho over {len(points)} runs x checkpoints)", rho,
                                  "rho <= -0.5 (a lower loss, a better probe)", bool(rho <= -0.5)))
        within = [spearman([c["loss"] for c in r["checkpoints"]], [c[p] for c in r["checkpoints"]]) for r in sweep]
        within = [rho for rho in within if rho == rho]  # a run whose probe did not change has no ranking (NaN)
        rho = statistics.mean(within) if within else float("nan")
        claims.append(claim_entry(f"within each LeJEPA run, the training loss ranks its checkpoints like the "
                                  f"{p.replace('_', ' ')} probe (mean Spearman rho over {len(within)} runs)",
                                  rho, "rho <= -0.5", bool(rho <= -0.5)))
        if len(finals) >= 4:
            rho = spearman([c["loss"] for c in finals], [c[p] for c in finals])
            claims.append(claim_entry(f"the final training loss ranks the sweep's {len(finals)} runs (lambda, lr) "
                                      f"like the {p.replace('_', ' ')} probe (Spearman rho)", rho,
                                      "rho <= -0.5", bool(rho <= -0.5)))
    monitors = {f"lejepa_s{s}": base[s]["curves"] for s in seeds} | {f"ijepa_s{s}": ijepa[s]["curves"] for s in seeds}
    config = {"steps": args.steps, "ijepa_steps": ijepa_steps, "step_flops": {k: round(v) for k, v in costs.items()},
              "checkpoints": args.checkpoints, "window": WINDOW, "overrides": CHEAP, "sweep": SWEEP,
              "sweep_seed": SWEEP_SEED, "quick": args.quick,
              "recipes": {k: str(v.relative_to(ROOT)) for k, v in RECIPES.items()},
              "sweep_points": [{"arm": r["arm"], "seed": r["seed"], **c} for r in sweep for c in r["checkpoints"]]}
    lr = yaml.safe_load(RECIPES["lejepa"].read_text())["model"]["init_args"]["lr"]  # the base arm's, the recipe's
    setting = (f"ObjectScenes 64 px, ViT patch 8 (width 96, depth 4), LeJEPA {args.steps} steps (batch 32, peak lr "
               f"{lr:g}, 2x64 + 4x32 px views) vs I-JEPA {ijepa_steps} steps (same training FLOPs)")
    notes = (f"Training FLOPs per step: LeJEPA {costs['lejepa'] / 1e9:.3g} G, I-JEPA {costs['ijepa'] / 1e9:.3g} G. "
             "The loss-vs-probe points are in config.sweep_points.")
    path = save_result(f"lejepa_scenes{'_quick' if args.quick else ''}", "LeJEPA", "benchmarks/fidelity/lejepa.py",
                       setting, config, seeds, seconds, probes, claims, monitors, notes=notes,
                       directory=CACHE if args.quick else None)
    print(path.read_text())
    return path


if __name__ == "__main__":
    main()
