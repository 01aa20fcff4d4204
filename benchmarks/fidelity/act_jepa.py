"""ACT-JEPA vs plain ACT on Push2D (a 2-D pushing task with a scripted expert): task success, and how well the
frozen policy encoder's features predict future states.

    python benchmarks/fidelity/act_jepa.py [--seeds 0 1 2 3 4 --steps 800 --demos 60] [--jobs 2]
    python benchmarks/fidelity/act_jepa.py --setting pixels [--steps 4000 --demos 200 --image-size 32] [--jobs 2]
    python benchmarks/fidelity/act_jepa.py [--setting pixels] --quick    # smoke test (< 1 min)

Settings (``--setting``; the policy's inputs; the defaults of --steps, --demos, --image-size per setting in
``SETTINGS``):

- ``state`` (default): the full 12-d state (agent, velocity, block, goal, relative vectors). Result
  ``act_jepa_push``.
- ``pixels``: the paper's setting, image + proprioception. The policy sees a rendered top view
  (``Push2D.render(--image-size)``, the frame of step t) and the agent's own position and velocity only
  (``Push2D(observation_keys=PROPRIOCEPTION)``, 4 floats): the block and the goal are only in the pixels. The
  demonstrations are recorded that way (``generate_demos(pixels=True, observation_keys=PROPRIOCEPTION)``; their
  metadata rebuilds the same env), the rollouts feed the same env's frames to the policy. ACT-JEPA is unchanged:
  its targets are the EMA teacher's embeddings of the future observations, here the future proprioception, as
  the paper predicts future proprioceptive states. The probe's target stays the full 12-d state (recomputed from
  the recorded physics, ``state_observations``). Extra reference arm ``raw_proprio``: the ridge on the policy's
  proprioceptive input alone. Result ``act_jepa_push_pixels``.

Data: ``--demos`` successful expert demonstrations (layouts seeded 0, 1, ...) for training, ``--probe-episodes``
further ones (layouts from seed 50 000) held out for the probe. For each seed, two runs of
``recipes/act_jepa/tiny.yaml`` with the same steps and data: ACT-JEPA (``jepa_weight=1``, the method) and plain
ACT (``jepa_weight=0``); and the ACT-JEPA network at its random initialisation. Then

1. success rate (%) of the policy (temporal ensembling with ``--decay``) over ``--episodes`` new layouts (seeds
   from 100 000), the same layouts for every run;
2. future-state probe: features = the frozen policy encoder's mean token at step t (of its state input, and
   frame in the pixels setting); a ridge regression (inputs standardized, strength picked on the last 20% of the
   training demonstrations) to the full state at t + k, k in ``--horizons``; RMSE (observation units, over all
   12 dimensions) on the held-out episodes. Reference arm ``raw_state``: the same ridge on the full state s_t.

Claims (the paper: on par or better success, a better world model), judged by twice the combined std over
seeds: ACT-JEPA's success rate above plain ACT's; its probe RMSE below plain ACT's at every horizon. Each run is
cached as JSON under runs/bench_act_jepa (the pixels setting's names carry ``_pixels<size>``, its
demonstrations are in ``demos_pixels<size>``; reruns resume; --fresh recomputes) and runs in its own process
(``--jobs`` at a time, one thread each). Writes benchmarks/results/act_jepa_push[_pixels].json
(benchmarks/fidelity/common.py schema) and prints it.

Cost of the pixels setting (one thread, measured on the 2-core machine while three other benchmark processes ran;
32 px, batch 64): a training step 55 ms for ACT-JEPA, 43 ms for plain ACT (48 px: 89 ms for ACT-JEPA; the state
setting: 37 ms); a rollout step 2.6-2.8 ms (render + forward), so 100 layouts <= 22 s (a failing policy runs all 80
steps). ``--quick`` (20 steps, 12 demos, 2 layouts): 17-18 s in all; its 20 steps took 3.1 s (ACT-JEPA) and 2.5 s
(ACT), 155 and 125 ms a step with the first steps' start-up. Full run, 5 seeds, --jobs 2: per seed
0.098 s x steps + ~90 s (ACT-JEPA's and the random init's rollouts and probes, ACT's), i.e. ~20 min at the
default 4000 steps (estimate; <= 30 min up to ~6000 steps). Why these defaults: the frames must be read to
~0.03 (the goal tolerance is 0.05) and with 60 demonstrations the CNN sees only 60 goal positions and overfits
them (a supervised read-out of block + goal from 48-px frames plateaus at RMSE 0.09 on held-out layouts; with 200
demos 0.025 at 48 px, 0.03 at 32 px after 3000 steps), so 200 demos; 32 px (the block a 3-px disk) buys ~1.6x
the steps of 48 px. Not yet measured at the defaults; in short trials (seed 0, 30 layouts) both policies stayed at
0% success at 800 steps (32 px, 60 demos) and at 1200 steps (48 px, 60 or 200 demos), their probes below
``raw_proprio``'s at 1200 steps with 200 demos (RMSE at k = 5: ACT 0.238, ACT-JEPA 0.242, raw_proprio 0.271,
raw_state 0.153): the encoders start to read the scene, the policies not yet; whether 4000 steps lift the
success rate off the floor is what the full run measures.
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

from datamodules.offline_rl import list_episodes, read_episode, read_metadata
from jepa_lightning.rl.reach2d import PROPRIOCEPTION, Push2D, generate_demos, state_observations
from jepa_lightning.rl.rollout import rollout

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "act_jepa" / "tiny.yaml"
ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
CACHE = ROOT / "runs" / "bench_act_jepa"
METHODS = {"act_jepa": 1.0, "act": 0.0}  # jepa_weight
# per setting: the defaults of --steps, --demos (and --image-size), sized to a full run of <= 30 min on 2 cores
SETTINGS = {"state": {"steps": 800, "demos": 60, "image_size": None},
            "pixels": {"steps": 4000, "demos": 200, "image_size": 32}}  # see the docstring


def load(folder: str) -> list[dict[str, np.ndarray]]:
    """The episodes of ``folder``: ``obs`` (what the policy's state input is), ``state`` (the full 12-d
    observation, the probe's target) and, when recorded, ``pixels`` [T+1, C, S, S] uint8."""
    env_kwargs = read_metadata(folder).get("env_kwargs", {})
    out = []
    for f in list_episodes(folder):
        ep = read_episode(f)
        episode = {"obs": ep["observation"], "state": ep["observation"]}
        if "pixels" in ep:  # the policy sees a reduced observation: the full state from the physics
            episode |= {"pixels": ep["pixels"].transpose(0, 3, 1, 2), "state": state_observations(ep["physics"],
                                                                                                  **env_kwargs)}
        out.append(episode)
    return out


@torch.no_grad()
def features(model, episodes: list[dict[str, np.ndarray]]) -> list[np.ndarray]:
    """The frozen policy encoder's mean token of every step (its state input, and frame when it uses pixels)."""
    model.eval()
    return [model.encode({k: torch.from_numpy(ep[k]) for k in ("obs", "pixels") if k in ep}).mean(1).numpy()
            for ep in episodes]


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


def uses_pixels(args: argparse.Namespace) -> bool:
    return args.setting == "pixels"


def demos(args: argparse.Namespace) -> tuple[Path, Path]:
    """The training and held-out demonstrations (generated once per setting; the pixels setting's with the
    proprioceptive observation and the frames)."""
    root = CACHE / (f"demos_pixels{args.image_size}" if uses_pixels(args) else "demos")
    observe = ({"pixels": True, "image_size": args.image_size, "observation_keys": PROPRIOCEPTION}
               if uses_pixels(args) else {})
    train, held_out = root / f"train_{args.demos}", root / f"probe_{args.probe_episodes}"
    for folder, episodes, seed in ((train, args.demos, 0), (held_out, args.probe_episodes, 50_000)):
        if not (folder / "dataset.json").is_file():
            generate_demos(str(folder), episodes=episodes, seed=seed, **observe)
    return train, held_out


def evaluate(model, args: argparse.Namespace, train: list[dict], test: list[dict]) -> dict:
    """Success rate (%) over the rollout layouts and the future-state probe's RMSE per horizon."""
    env = Push2D(observation_keys=PROPRIOCEPTION if uses_pixels(args) else None)
    render = (lambda: env.render(args.image_size)) if uses_pixels(args) else None
    result = rollout(env, model.policy(render=render), args.episodes, seed=100_000)
    return {"success_rate": 100 * result["success_rate"], "mean_return": round(result["mean_return"], 4),
            **state_probe(features(model, train), train, features(model, test), test, args)}


def state_probe(train_f: list[np.ndarray], train: list[dict], test_f: list[np.ndarray], test: list[dict],
              args: argparse.Namespace) -> dict[str, float]:
    """The probe's RMSE per horizon from the features ``*_f`` to the episodes' full state."""
    states = [ep["state"] for ep in train], [ep["state"] for ep in test]
    return {f"probe_rmse_{k}": probe(train_f, states[0], test_f, states[1], k) for k in args.horizons}


def run(seed: int, method: str, args: argparse.Namespace) -> dict:
    """Train one (seed, method) and evaluate it; ACT-JEPA's run also evaluates its initial network."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    train_dir, held_out = demos(args)
    train, test = load(str(train_dir)), load(str(held_out))
    encoder = "--model.init_args.encoder.init_args"
    vision = [f"{encoder}.obs_dim={len(PROPRIOCEPTION) * 2}", f"{encoder}.pixels=true",
              f"{encoder}.image_size={args.image_size}", "--model.init_args.use_pixels=true",
              "--data.init_args.pixels=true"] if uses_pixels(args) else []
    with tempfile.TemporaryDirectory() as tmp:
        cli = build_recipe(RECIPE, seed, [
            f"--trainer.max_steps={args.steps}", f"--model.init_args.jepa_weight={METHODS[method]}",
            f"--data.init_args.path={train_dir}", "--data.init_args.embedded=null",
            f"--data.init_args.chunk={args.chunk}", f"--model.init_args.decoder.init_args.num_queries={args.chunk}",
            f"--model.init_args.predictor.init_args.num_queries={args.chunk}",
            f"--model.init_args.ensemble_decay={args.decay}", *vision], tmp)
        initial = copy.deepcopy(cli.model) if method == "act_jepa" else None
        t0 = time.perf_counter()
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        seconds = time.perf_counter() - t0
    out = {"seed": seed, "method": method, "train_seconds": round(seconds, 1), "steps": cli.trainer.global_step,
           "trained": evaluate(cli.model, args, train, test)}
    if initial is not None:
        out["random_init"] = evaluate(initial, args, train, test)
        arms = {"raw_state": "state", "raw_proprio": "obs"} if uses_pixels(args) else {"raw_state": "state"}
        for arm, key in arms.items():  # raw_proprio: the policy's own state input, what it has without the frames
            out[arm] = state_probe([ep[key] for ep in train], train, [ep[key] for ep in test], test, args)
    return out | {"seconds": round(time.perf_counter() - start, 1)}


def cache_path(seed: int, method: str, args: argparse.Namespace) -> Path:
    """A run's JSON; the state setting's names are those it had before the pixels setting existed."""
    setting = f"_pixels{args.image_size}" if uses_pixels(args) else ""
    tag = f"{setting}_{args.steps}st_{args.demos}d_{args.episodes}ep_c{args.chunk}_m{args.decay:g}"
    return CACHE / f"{method}_s{seed}{tag}{'_quick' if args.quick else ''}.json"


def worker_args(args: argparse.Namespace) -> list[str]:
    return ["--setting", args.setting, "--steps", str(args.steps), "--demos", str(args.demos),
            "--probe-episodes", str(args.probe_episodes), "--chunk", str(args.chunk), "--episodes", str(args.episodes),
            "--decay", str(args.decay), "--horizons", *map(str, args.horizons),
            *(["--image-size", str(args.image_size)] if uses_pixels(args) else []),
            *(["--quick"] if args.quick else [])]


def write_result(runs: list[dict], args: argparse.Namespace, seconds: float) -> Path:
    seeds = sorted({r["seed"] for r in runs})
    by = {(r["seed"], r["method"]): r for r in runs}

    def scores(arm: str, key: str) -> list[float]:
        if arm in ("random_init", "raw_state", "raw_proprio"):
            return [by[(s, "act_jepa")][arm][key] for s in seeds]
        return [by[(s, "act_jepa" if arm == "pretrained" else arm)]["trained"][key] for s in seeds]

    raw = ("raw_state", "raw_proprio") if uses_pixels(args) else ("raw_state",)
    probes = [probe_entry("success_rate", "success %", {a: scores(a, "success_rate")
                                                          for a in ("random_init", "pretrained", "act")})]
    probes += [probe_entry(f"probe_rmse_{k}", f"RMSE of s(t+{k})", {a: scores(a, f"probe_rmse_{k}") for a in
                                                                    ("random_init", "pretrained", "act", *raw)},
                           higher_is_better=False) for k in args.horizons]
    claims = [gain_claim("ACT-JEPA's success rate is above plain ACT's (points)", scores("pretrained", "success_rate"),
                         scores("act", "success_rate"))]
    claims += [gain_claim(f"ACT-JEPA's encoder predicts the state {k} steps ahead better than plain ACT's (RMSE "
                          "reduction)", [-x for x in scores("pretrained", f"probe_rmse_{k}")],
                          [-x for x in scores("act", f"probe_rmse_{k}")]) for k in args.horizons]
    config = {k: v for k, v in vars(args).items() if k not in ("one", "fresh", "jobs", "seeds") and v is not None}
    inputs = (f" from a {args.image_size}x{args.image_size} top view + proprioception (agent position, velocity)"
              if uses_pixels(args) else "")  # the state setting's line as it was
    setting = (f"Push2D{inputs}, {args.demos} expert demos, chunk {args.chunk}, {args.steps} steps, "
               f"{args.episodes} rollout layouts per run")
    notes = ("Arms: pretrained = ACT-JEPA (the method), act = plain ACT (same recipe, jepa_weight 0), random_init = "
             "ACT-JEPA's network before training, raw_state = the probe on the state itself (no encoder).")
    if uses_pixels(args):
        notes += (" The policies see the rendered frame and the agent's own position and velocity only (the block "
                  "and the goal are in the pixels); ACT-JEPA's targets are the embeddings of the future "
                  "proprioception, as in the paper; the probe's target is the full 12-d state. raw_proprio = the "
                  "probe on the policy's proprioceptive input alone (no pixels).")
    name = "act_jepa_push" + ("_pixels" if uses_pixels(args) else "") + ("_quick" if args.quick else "")
    return save_result(name, "ACT-JEPA", f"benchmarks/fidelity/act_jepa.py --setting {args.setting}", setting, config, seeds, seconds, probes,
                       claims, notes=notes, directory=CACHE if args.quick else None)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--setting", choices=sorted(SETTINGS), default="state",
                   help="the policy's inputs: the full state, or pixels + proprioception")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--steps", type=int, help="optimizer steps (default: the setting's, SETTINGS)")
    p.add_argument("--demos", type=int, help="training demonstrations, the data budget (default: the setting's)")
    p.add_argument("--image-size", type=int, help="frame size of the pixels setting (divisible by 8)")
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
    for key, value in SETTINGS[args.setting].items():
        if getattr(args, key) is None or value is None:
            setattr(args, key, value)
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
    demos(args)  # once, before the workers that read them
    jobs = [(s, m) for s in args.seeds for m in METHODS]
    runs = in_parallel(lambda s, m: run_worker(cache_path(s, m, args), __file__, ["--one", str(s), m,
                                                                                   *worker_args(args)],
                                               f"{m} seed {s}", args.fresh), jobs, args.jobs)
    seconds = max(time.perf_counter() - t0, sum(r["seconds"] for r in runs) / args.jobs)
    print(json.dumps(json.loads(write_result(runs, args, seconds).read_text()), indent=1))


if __name__ == "__main__":
    main()
