"""ACT-JEPA vs plain ACT on Push2D (a 2-D pushing task with a scripted expert): task success, and how well the
frozen policy encoder's features predict future states.

    python benchmarks/fidelity/act_jepa.py [--seeds 0 1 2 3 4 --steps 800 --demos 60]   (--quick: a smoke run)

Data: ``--demos`` successful expert demonstrations (layouts seeded 0, 1, ...) for training, ``--probe-episodes``
further ones (layouts from seed 50 000) held out for the probe. For each seed, two runs of
``recipes/act_jepa/tiny.yaml`` with the same steps, data and initial weights: ACT-JEPA (``jepa_weight=1``) and
plain ACT (``jepa_weight=0``). Then

1. success rate of the policy (temporal ensembling with ``--decay``) over ``--episodes`` new layouts (seeds
   from 100 000), the same layouts for every run;
2. future-state probe: features = the frozen policy encoder's mean token at step t; a ridge regression (inputs
   standardized, strength picked on the last 20% of the training demonstrations) to the observation at t + k,
   k in ``--horizons``; RMSE (observation units, over all 12 dimensions) on the held-out episodes. Reference:
   the same ridge on the raw state s_t.

Claims: ACT-JEPA's success rate is not below plain ACT's (the paper: on par or better) and its probe RMSE is
lower at every horizon (the paper: a better world model). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import summary

from datamodules.offline_rl import list_episodes, read_episode
from jepa_lightning.cli import JEPACLI
from jepa_lightning.rl.reach2d import Push2D, generate_demos
from jepa_lightning.rl.rollout import rollout

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "act_jepa" / "tiny.yaml"
ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


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


def run(seed: int, jepa_weight: float, args, data: str, workdir: Path) -> tuple[object, float]:
    cli = JEPACLI(run=False, args=[
        "--config", str(RECIPE), f"--seed_everything={seed}", f"--trainer.max_steps={args.steps}",
        f"--model.init_args.jepa_weight={jepa_weight}", f"--data.init_args.path={data}",
        "--data.init_args.embedded=null", f"--data.init_args.chunk={args.chunk}", f"--data.init_args.seed={seed}",
        f"--model.init_args.decoder.init_args.num_queries={args.chunk}",
        f"--model.init_args.predictor.init_args.num_queries={args.chunk}",
        f"--model.init_args.ensemble_decay={args.decay}", "--trainer.limit_val_batches=0",
        f"--run_dir={workdir / 'runs'}", f"--checkpoint.dirpath={workdir / 'ckpt'}",
        "--resume=false", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"])
    t0 = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return cli.model, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--demos", type=int, default=60, help="training demonstrations (the data budget)")
    p.add_argument("--probe-episodes", type=int, default=40)
    p.add_argument("--chunk", type=int, default=8)
    p.add_argument("--episodes", type=int, default=40, help="rollout episodes per run")
    p.add_argument("--decay", type=float, default=-1.0, help="temporal-ensembling m of exp(-m i)")
    p.add_argument("--horizons", type=int, nargs="+", default=[5, 10, 20])
    p.add_argument("--quick", action="store_true", help="smoke run: 1 seed, 20 steps, tiny data")
    args = p.parse_args()
    if args.quick:
        args.seeds, args.steps, args.demos, args.probe_episodes, args.episodes = [0], 20, 12, 6, 2
        args.horizons = [5]
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        generate_demos(str(tmp / "train"), episodes=args.demos, seed=0)
        generate_demos(str(tmp / "probe"), episodes=args.probe_episodes, seed=50_000)
        train_obs, test_obs = load(str(tmp / "train")), load(str(tmp / "probe"))
        raw = {k: probe(train_obs, train_obs, test_obs, test_obs, k) for k in args.horizons}
        runs = []
        for seed in args.seeds:
            for name, weight in (("act_jepa", 1.0), ("act", 0.0)):
                model, seconds = run(seed, weight, args, str(tmp / "train"), tmp / f"{name}_{seed}")
                result = rollout(Push2D(), model.policy(), args.episodes, seed=100_000)
                tr, te = features(model, train_obs), features(model, test_obs)
                runs.append({"seed": seed, "method": name, "train_seconds": round(seconds, 1),
                             "success_rate": result["success_rate"],
                             "mean_return": round(result["mean_return"], 4),
                             "probe_rmse": {str(k): round(probe(tr, train_obs, te, test_obs, k), 4)
                                            for k in args.horizons}})
    out: dict = {"config": {k: v for k, v in vars(args).items()}, "runs": runs,
                 "raw_state_probe_rmse": {str(k): round(v, 4) for k, v in raw.items()}}
    for name in ("act_jepa", "act"):
        mine = [r for r in runs if r["method"] == name]
        out[name] = {"success_rate": summary([r["success_rate"] for r in mine]),
                     "probe_rmse": {str(k): summary([r["probe_rmse"][str(k)] for r in mine]) for k in args.horizons}}
    sj, sa = out["act_jepa"]["success_rate"]["mean"], out["act"]["success_rate"]["mean"]
    lower = {str(k): out["act_jepa"]["probe_rmse"][str(k)]["mean"] < out["act"]["probe_rmse"][str(k)]["mean"]
             for k in args.horizons}
    out["claim"] = {"success_not_below_act": sj >= sa, "success_difference": round(sj - sa, 4),
                    "probe_rmse_lower": lower, "holds": bool(sj >= sa and all(lower.values()))}
    out["seconds"] = round(time.perf_counter() - t_start, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
