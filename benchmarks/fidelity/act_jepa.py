"""ACT-JEPA vs plain ACT on Push2D (a 2-D pushing task with a scripted expert): task success, and how well the
frozen policy encoder's features predict future states.

    python benchmarks/fidelity/act_jepa.py [--seeds 0 1 2 3 4 --steps 800 --demos 60] [--jobs 2]
    python benchmarks/fidelity/act_jepa.py --quick                       # smoke test (~1 min)

Data: ``--demos`` successful expert demonstrations (layouts seeded 0, 1, ...) for training, ``--probe-episodes``
further ones (layouts from seed 50 000) held out for the probe. For each seed, two runs of
``recipes/act_jepa/tiny.yaml`` with the same steps and data: ACT-JEPA (``jepa_weight=1``, the method) and plain
ACT (``jepa_weight=0``); and the ACT-JEPA network at its random initialisation. Then

1. success rate (%) of the policy (temporal ensembling with ``--decay``) over ``--episodes`` new layouts (seeds
   from 100 000), the same layouts for every run;
2. future-state probe: features = the frozen policy encoder's mean token at step t; a ridge regression (inputs
   standardized, strength picked on the last 20% of the training demonstrations) to the observation at t + k,
   k in ``--horizons``; RMSE (observation units, over all 12 dimensions) on the held-out episodes. Reference arm
   ``raw_state``: the same ridge on the raw state s_t.

Claims (the paper: on par or better success, a better world model), judged by twice the combined std over
seeds: ACT-JEPA's success rate above plain ACT's; its probe RMSE below plain ACT's at every horizon. Each run is
cached as JSON under runs/bench_act_jepa (reruns resume; --fresh recomputes) and runs in its own process
(``--jobs`` at a time, one thread each). Writes benchmarks/results/act_jepa_push.json (benchmarks/fidelity/common.py
schema) and prints it.
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
from common import build_recipe, cached, gain_claim, in_parallel, probe_entry, run_worker, save_result

from datamodules.offline_rl import list_episodes, read_episode
from jepa_lightning.rl.reach2d import Push2D, generate_demos
from jepa_lightning.rl.rollout import rollout

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "act_jepa" / "tiny.yaml"
ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
CACHE = ROOT / "runs" / "bench_act_jepa"
METHODS = {"act_jepa": 1.0, "act": 0.0}  # jepa_weight


def load(folder: str) -> list[np.ndarray]:
    return [read_episode(f)["observation"] for f in list_episodes(folder)]


@torch.no_grad()
def features(model, episodes: list[np.ndarray]) -> list[np.ndarray]:
    model.eval()
    return [model.encode({"obs": torch.from_numpy(obs)}).mean(1).numpy() for obs in episodes]


def pairs(feats: list[np.ndarray], episodes: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """(features at t, observation at t + k) for every t with t + k inside its episode."""
    x = [f[:len(f) - k] for f in feats if len(f) > k]
    y = [obs[k:] for obs in episodes if len(obs) > k]
    return np.concatenate(x), np.concatenate(y)


def ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    mu, sd = x.mean(0), x.std(0) + 1e-6
    z = (x - mu) / sd
    zm, ym = z.mean(0), y.mean(0)
    w = np.linalg.solve((z - zm).T @ (z - zm) + alpha * len(z) * np.eye(z.shape[1]), (z - zm).T @ (y - ym))
    return mu, sd, w, ym - zm @ w


def predict(params, x: np.ndarray) -> np.ndarray:
    mu, sd, w, b = params
    return ((x - mu) / sd) @ w + b


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def probe(train_f, train_obs, test_f, test_obs, k: int) -> float:
    """Ridge from features at t to the observation at t + k: strength chosen on the last 20% of the training
    episodes, refit on all of them, RMSE on the test episodes."""
    cut = int(0.8 * len(train_f))
    xa, ya = pairs(train_f[:cut], train_obs[:cut], k)
    xv, yv = pairs(train_f[cut:], train_obs[cut:], k)
    best = min(ALPHAS, key=lambda a: rmse(predict(ridge(xa, ya, a), xv), yv))
    x, y = pairs(train_f, train_obs, k)
    xt, yt = pairs(test_f, test_obs, k)
    return rmse(predict(ridge(x, y, best), xt), yt)


def demos(args: argparse.Namespace, root: Path) -> tuple[Path, Path]:
    """The training and held-out demonstrations (generated once per setting under ``root``)."""
    train, held_out = root / f"train_{args.demos}", root / f"probe_{args.probe_episodes}"
    for folder, episodes, seed in ((train, args.demos, 0), (held_out, args.probe_episodes, 50_000)):
        if not (folder / "dataset.json").is_file():
            generate_demos(str(folder), episodes=episodes, seed=seed)
    return train, held_out


def evaluate(model, args: argparse.Namespace, train_obs: list[np.ndarray], test_obs: list[np.ndarray]) -> dict:
    """Success rate (%) over the rollout layouts and the future-state probe's RMSE per horizon."""
    result = rollout(Push2D(), model.policy(), args.episodes, seed=100_000)
    tr, te = features(model, train_obs), features(model, test_obs)
    return {"success_rate": 100 * result["success_rate"], "mean_return": round(result["mean_return"], 4),
            **{f"probe_rmse_{k}": probe(tr, train_obs, te, test_obs, k) for k in args.horizons}}


def run(seed: int, method: str, args: argparse.Namespace) -> dict:
    """Train one (seed, method) and evaluate it; ACT-JEPA's run also evaluates its initial network."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    train, held_out = demos(args, CACHE / "demos")
    train_obs, test_obs = load(str(train)), load(str(held_out))
    with tempfile.TemporaryDirectory() as tmp:
        cli = build_recipe(RECIPE, seed, [
            f"--trainer.max_steps={args.steps}", f"--model.init_args.jepa_weight={METHODS[method]}",
            f"--data.init_args.path={train}", "--data.init_args.embedded=null", f"--data.init_args.chunk={args.chunk}",
            f"--model.init_args.decoder.init_args.num_queries={args.chunk}",
            f"--model.init_args.predictor.init_args.num_queries={args.chunk}",
            f"--model.init_args.ensemble_decay={args.decay}"], tmp)
        initial = copy.deepcopy(cli.model) if method == "act_jepa" else None
        t0 = time.perf_counter()
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        seconds = time.perf_counter() - t0
    out = {"seed": seed, "method": method, "train_seconds": round(seconds, 1), "steps": cli.trainer.global_step,
           "trained": evaluate(cli.model, args, train_obs, test_obs)}
    if initial is not None:
        out["random_init"] = evaluate(initial, args, train_obs, test_obs)
        out["raw_state"] = {f"probe_rmse_{k}": probe(train_obs, train_obs, test_obs, test_obs, k)
                            for k in args.horizons}
    return out | {"seconds": round(time.perf_counter() - start, 1)}


def cache_path(seed: int, method: str, args: argparse.Namespace) -> Path:
    tag = f"_{args.steps}st_{args.demos}d_{args.episodes}ep_c{args.chunk}_m{args.decay:g}"
    return CACHE / f"{method}_s{seed}{tag}{'_quick' if args.quick else ''}.json"


def worker_args(args: argparse.Namespace) -> list[str]:
    return ["--steps", str(args.steps), "--demos", str(args.demos), "--probe-episodes", str(args.probe_episodes),
            "--chunk", str(args.chunk), "--episodes", str(args.episodes), "--decay", str(args.decay),
            "--horizons", *map(str, args.horizons), *(["--quick"] if args.quick else [])]


def write_result(runs: list[dict], args: argparse.Namespace, seconds: float) -> Path:
    seeds = sorted({r["seed"] for r in runs})
    by = {(r["seed"], r["method"]): r for r in runs}

    def scores(arm: str, key: str) -> list[float]:
        if arm in ("random_init", "raw_state"):
            return [by[(s, "act_jepa")][arm][key] for s in seeds]
        return [by[(s, "act_jepa" if arm == "pretrained" else arm)]["trained"][key] for s in seeds]

    probes = [probe_entry("success_rate", "success %", {a: scores(a, "success_rate")
                                                          for a in ("random_init", "pretrained", "act")})]
    probes += [probe_entry(f"probe_rmse_{k}", f"RMSE of s(t+{k})", {a: scores(a, f"probe_rmse_{k}") for a in
                                                                    ("random_init", "pretrained", "act", "raw_state")},
                           higher_is_better=False) for k in args.horizons]
    claims = [gain_claim("ACT-JEPA's success rate is above plain ACT's (points)", scores("pretrained", "success_rate"),
                         scores("act", "success_rate"))]
    claims += [gain_claim(f"ACT-JEPA's encoder predicts the state {k} steps ahead better than plain ACT's (RMSE "
                          "reduction)", [-x for x in scores("pretrained", f"probe_rmse_{k}")],
                          [-x for x in scores("act", f"probe_rmse_{k}")]) for k in args.horizons]
    config = {k: v for k, v in vars(args).items() if k not in ("one", "fresh", "jobs", "seeds")}
    setting = (f"Push2D, {args.demos} expert demos, chunk {args.chunk}, {args.steps} steps, {args.episodes} rollout "
               "layouts per run")
    notes = ("Arms: pretrained = ACT-JEPA (the method), act = plain ACT (same recipe, jepa_weight 0), random_init = "
             "ACT-JEPA's network before training, raw_state = the probe on the state itself (no encoder).")
    return save_result("act_jepa_push" + ("_quick" if args.quick else ""), "ACT-JEPA", "benchmarks/fidelity/act_jepa.py",
                       setting, config, seeds, seconds, probes, claims, notes=notes,
                       directory=CACHE if args.quick else None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--demos", type=int, default=60, help="training demonstrations (the data budget)")
    p.add_argument("--probe-episodes", type=int, default=40)
    p.add_argument("--chunk", type=int, default=8)
    p.add_argument("--episodes", type=int, default=100, help="rollout episodes per run (binomial std <= 5 points)")
    p.add_argument("--decay", type=float, default=-1.0, help="temporal-ensembling m of exp(-m i)")
    p.add_argument("--horizons", type=int, nargs="+", default=[5, 10, 20])
    p.add_argument("--jobs", type=int, default=2, help="runs in parallel, one thread each")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 20 steps, tiny data")
    p.add_argument("--fresh", action="store_true", help="recompute cached runs")
    p.add_argument("--one", nargs=2, metavar=("SEED", "METHOD"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.quick:
        args.seeds, args.steps, args.demos, args.probe_episodes, args.episodes = args.seeds[:1], 20, 12, 6, 2
        args.horizons = [5]
    if args.one:  # a worker process: one run, cached
        seed, method = int(args.one[0]), args.one[1]
        CACHE.mkdir(parents=True, exist_ok=True)
        cached(cache_path(seed, method, args), run, seed, method, args, fresh=True)
        return
    t0 = time.perf_counter()
    CACHE.mkdir(parents=True, exist_ok=True)
    demos(args, CACHE / "demos")  # once, before the workers that read them
    jobs = [(s, m) for s in args.seeds for m in METHODS]
    runs = in_parallel(lambda s, m: run_worker(cache_path(s, m, args), __file__, ["--one", str(s), m,
                                                                                   *worker_args(args)],
                                               f"{m} seed {s}", args.fresh), jobs, args.jobs)
    seconds = max(time.perf_counter() - t0, sum(r["seconds"] for r in runs) / args.jobs)
    print(json.dumps(json.loads(write_result(runs, args, seconds).read_text()), indent=1))


if __name__ == "__main__":
    main()
