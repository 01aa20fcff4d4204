"""Reward-free data collection from dm_control (``jepa-lightning collect``) into the offline RL episode format
of :mod:`datamodules.offline_rl`, and the embedded walker dataset.

    jepa-lightning collect --domain walker --episodes 100 --policy noisy --out data/walker [--pixels]
                           [--seed 0] [--task stand] [--time-limit N] [--image-size 64]
                           [--rnd-warmup 5000] [--rnd-update-every 2]

Exploration policies (actions in ``[-1, 1]``, what the environment clips to its spec):

- ``random``: i.i.d. uniform actions. Cheap and unbiased, but white noise averages out in the joints, so a
  walker mostly twitches on the ground.
- ``noisy``: temporally correlated noise, a discretised Ornstein-Uhlenbeck process per action dimension,
  ``x_{t+1} = rho x_t + sigma sqrt(1 - rho^2) eps_t`` with ``rho = 0.9`` (correlation time ~10 steps,
  0.25 s of walker control at 40 Hz) and ``sigma = 0.6`` (stationary std; ~10% of actions saturate at the
  bounds after clipping); ``x_0`` is drawn from the stationary distribution. Sustained pushes move the body
  through far more of the state space (falls, kneeling, getting up, hops) than white noise.
- ``mixed``: even episodes ``random``, odd episodes ``noisy``.
- ``rnd``: an online Random Network Distillation explorer (:mod:`jepa_lightning.rl.rnd`), the kind of agent
  behind ExORL's RND datasets that TD-JEPA trains on: TD3 maximising the RND novelty bonus of the next state
  (no task reward), learning as the episodes are collected (``--rnd-warmup`` steps of uniform random actions
  first, then one update every ``--rnd-update-every`` env steps). Its episodes store the bonus as
  ``intrinsic_reward``. It is learned, so its episodes depend on every earlier one, and it costs far more than
  the noise policies (the updates, on the CPU).

Every episode ``i`` is written to ``episode_{i:06d}.npz`` (atomically, see ``write_episode``) from the seed
sequence ``(seed, i)``, which seeds both the environment's initial state and the policy's noise. A collection
is therefore reproducible and resumable: rerunning an interrupted command skips the episodes already written
and produces exactly the missing ones. ``dataset.json`` records the settings; rerunning into a folder collected
with other settings is an error rather than a mixed dataset.

With ``rnd`` the agent's state (networks, optimisers, normaliser statistics, step counter, the generator of its
minibatches; :meth:`~jepa_lightning.rl.rnd.RNDExplorer.state_dict`) is saved atomically to ``rnd_state.pt``
after every written episode. A rerun loads it, refills the replay buffer from the episodes it learned from, and
first learns from any episode on disk it has not seen (one written just before an interruption, or all of
them without ``rnd_state.pt``: that replays their updates), so an interrupted and resumed collection writes
the same episodes, bit for bit, as an uninterrupted one on the same machine and torch build with the same
number of threads (matrix products may round differently otherwise). The episodes must be collected in index
order for that: an episode deleted from the middle and collected again is a new one (valid, not identical).

Each episode stores ``observation``, ``action``, ``terminal``, ``physics`` (for relabeling any task of the
domain with :func:`jepa_lightning.rl.relabel.relabel`), ``reward`` of the collection task (the domain's first
task unless ``task`` is given), ``pixels`` (every observation rendered) when asked, and with ``rnd`` the
``intrinsic_reward`` of each step's next state under the agent at the end of the episode.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from jepa_lightning.rl.envs import DMCEnv, domain_tasks, make_env
from jepa_lightning.rl.episodes import read_episode, read_metadata, write_episode, write_metadata
from jepa_lightning.rl.rnd import RNDConfig, RNDExplorer

POLICIES = ("random", "noisy", "mixed", "rnd")
RND_STATE = "rnd_state.pt"
NOISY_RHO, NOISY_SIGMA = 0.9, 0.6
# settings that must match for a folder to be resumed ("rnd": the RND explorer's settings, policy rnd only)
_SETTINGS = ("domain", "task", "policy", "seed", "pixels", "image_size", "time_limit", "rnd")


class RandomPolicy:
    """Uniform i.i.d. actions in ``[-1, 1]``."""

    def __init__(self, action_dim: int, rng: np.random.Generator) -> None:
        self.action_dim, self.rng = action_dim, rng

    def reset(self) -> None:
        pass

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, self.action_dim)


class OrnsteinUhlenbeckPolicy:
    """Temporally correlated actions: a discretised Ornstein-Uhlenbeck (AR(1)) process per dimension with
    stationary std ``sigma`` and one-step correlation ``rho``, clipped to ``[-1, 1]``."""

    def __init__(self, action_dim: int, rng: np.random.Generator, rho: float = NOISY_RHO,
                 sigma: float = NOISY_SIGMA) -> None:
        if not 0.0 <= rho < 1.0 or sigma <= 0.0:
            raise ValueError(f"need 0 <= rho < 1 and sigma > 0, got rho={rho}, sigma={sigma}")
        self.action_dim, self.rng, self.rho, self.sigma = action_dim, rng, rho, sigma
        self.x = np.zeros(action_dim)

    def reset(self) -> None:
        self.x = self.sigma * self.rng.standard_normal(self.action_dim)  # stationary start

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        action = np.clip(self.x, -1.0, 1.0)
        self.x = self.rho * self.x + self.sigma * np.sqrt(1.0 - self.rho ** 2) * self.rng.standard_normal(
            self.action_dim)
        return action


def make_policy(name: str, episode: int, action_dim: int, rng: np.random.Generator) -> Callable:
    if name == "mixed":
        name = "random" if episode % 2 == 0 else "noisy"
    if name == "random":
        return RandomPolicy(action_dim, rng)
    if name == "noisy":
        return OrnsteinUhlenbeckPolicy(action_dim, rng)
    if name == "rnd":
        raise ValueError("the rnd policy is one agent for the whole collection: see collect()")
    raise ValueError(f"unknown collection policy {name!r}; available: {', '.join(POLICIES)}")


def episode_path(folder: str, index: int) -> str:
    return os.path.join(folder, f"episode_{index:06d}.npz")


def _complete(path: str) -> bool:
    """An episode file written by a finished ``write_episode`` (atomic) that is a readable archive."""
    if not os.path.isfile(path):
        return False
    try:
        with np.load(path, allow_pickle=False) as f:
            return {"observation", "action", "physics"} <= set(f.files)
    except Exception:  # truncated or not an archive: collect it again
        return False


def run_episode(env: DMCEnv, policy: Callable, seed: int, pixels: bool,
                on_step: Callable[[], None] | None = None) -> dict[str, np.ndarray]:
    """One episode of ``policy`` in ``env`` (reset with ``seed``) in the episode format. A policy with an
    ``observe(obs, action, next_obs, terminal)`` method (a learning agent) is shown every transition."""
    if callable(getattr(policy, "reset", None)):
        policy.reset()
    observe = getattr(policy, "observe", None)
    obs = env.reset(seed=seed)
    observations, physics, actions, rewards = [obs], [env.physics_state()], [], []
    frames = [env.render()] if pixels else []
    done = False
    while not done:
        action = np.clip(np.asarray(policy(obs), dtype=np.float64), env.action_low, env.action_high)
        last = obs
        obs, reward, done = env.step(action)
        if observe is not None:
            observe(last, action, obs, env.terminated)
        observations.append(obs)
        physics.append(env.physics_state())
        actions.append(action)
        rewards.append(reward)
        if pixels:
            frames.append(env.render())
        if on_step is not None:
            on_step()
    terminal = np.zeros(len(actions), dtype=np.bool_)
    terminal[-1] = env.terminated
    episode = {"observation": np.stack(observations).astype(np.float32),
               "action": np.stack(actions).astype(np.float32), "terminal": terminal,
               "physics": np.stack(physics), "reward": np.asarray(rewards, dtype=np.float32)}
    if pixels:
        episode["pixels"] = np.stack(frames)
    return episode


def _progress(enabled: bool, total: int | None, description: str) -> Any:
    """A rich progress bar over env steps with the rate in steps/s (``None`` when disabled)."""
    if not enabled:
        return None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class StepsPerSecond(ProgressColumn):
        def render(self, task: Any) -> Text:
            return Text("" if task.speed is None else f"{task.speed:,.0f} steps/s")

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), StepsPerSecond(),
                   TimeRemainingColumn(), transient=False)
    bar.add_task(description, total=total)
    return bar


def collect(folder: str, domain: str, task: str | None = None, policy: str = "noisy", episodes: int = 100,
            seed: int = 0, pixels: bool = False, image_size: int = 64, time_limit: int | None = None,
            progress: bool = True, rnd: RNDConfig | None = None) -> dict[str, Any]:
    """Collect ``episodes`` reward-free episodes of ``policy`` in ``domain`` into ``folder`` (see the module
    docstring); episodes already there are kept. ``rnd``: the RND explorer's settings (default
    :class:`~jepa_lightning.rl.rnd.RNDConfig()`; ``policy="rnd"`` only). Returns ``{"folder", "episodes",
    "transitions", "collected", "skipped", "seconds", "steps_per_second"}`` (rates over the newly collected
    steps, including the agent's updates) and with ``rnd`` the agent's ``"rnd_steps"`` and ``"rnd_updates"``."""
    tasks = domain_tasks(domain)
    task = tasks[0] if task is None else task
    if policy not in POLICIES:
        raise ValueError(f"unknown collection policy {policy!r}; available: {', '.join(POLICIES)}")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")

    if rnd is not None and policy != "rnd":
        raise ValueError(f"RND settings given for policy {policy!r}; they are for policy 'rnd'")
    settings = {"domain": domain, "task": task, "policy": policy, "seed": seed, "pixels": pixels,
                "image_size": image_size if pixels else None, "time_limit": time_limit}
    if policy == "rnd":
        rnd = rnd or RNDConfig()
        settings["rnd"] = asdict(rnd)
    old = read_metadata(folder) if os.path.isdir(folder) else {}
    clash = {k: (old[k], v) for k, v in settings.items() if k in old and old[k] != v}
    if clash:
        diff = ", ".join(f"{k}: {a!r} there, {b!r} asked" for k, (a, b) in clash.items())
        raise ValueError(f"'{folder}' holds a collection with other settings ({diff}); use another --out folder")
    env = make_env(domain, task, seed=seed, pixels=pixels, image_size=image_size, time_limit=time_limit)
    todo = [i for i in range(episodes) if not _complete(episode_path(folder, i))]
    write_metadata(folder, **settings, tasks=tasks, source="dm_control suite",
                   observation_keys=env.observation_keys, observation_dim=env.observation_dim,
                   action_dim=env.action_dim, noisy={"rho": NOISY_RHO, "sigma": NOISY_SIGMA},
                   episodes=max(episodes, int(old.get("episodes", 0))))
    total = None if env.max_steps is None else len(todo) * env.max_steps
    explorer = None
    if policy == "rnd" and todo:
        pending = set(todo)
        written = [i for i in range(max(episodes, int(old.get("episodes", 0)))) if i not in pending]
        explorer = _rnd_explorer(folder, env, rnd, seed, written)
    bar = _progress(progress and bool(todo), total, f"{domain}/{task} {policy}")
    steps, start = 0, time.perf_counter()
    try:
        if bar is not None:
            bar.start()
        for i in todo:
            seq = np.random.SeedSequence([seed, i])
            env_seed = int(seq.generate_state(1)[0])
            rng = np.random.default_rng(seq.spawn(1)[0])
            if explorer is not None:
                explorer.rng = rng
            pol = explorer if explorer is not None else make_policy(policy, i, env.action_dim, rng)
            on_step = (lambda: bar.advance(bar.task_ids[0])) if bar is not None else None
            episode = run_episode(env, pol, env_seed, pixels, on_step)
            if explorer is not None:
                episode["intrinsic_reward"] = explorer.intrinsic_reward(episode["observation"][1:])
            episode_steps = len(episode["action"])
            write_episode(episode_path(folder, i), **episode)
            if explorer is not None:
                explorer.episodes.append(i)
                explorer.save(os.path.join(folder, RND_STATE))
            steps += episode_steps
    finally:
        if bar is not None:
            bar.stop()
    seconds = time.perf_counter() - start
    transitions = sum(_steps(episode_path(folder, i)) for i in range(episodes))
    out = {"folder": folder, "episodes": episodes, "transitions": transitions, "collected": len(todo),
           "skipped": episodes - len(todo), "seconds": seconds,
           "steps_per_second": steps / seconds if steps else None}
    if explorer is not None:
        out |= {"rnd_steps": explorer.step, "rnd_updates": explorer.updates}
    return out


def _rnd_explorer(folder: str, env: DMCEnv, config: RNDConfig, seed: int, written: list[int]) -> RNDExplorer:
    """The RND explorer of ``folder``: from ``rnd_state.pt`` if there (its replay buffer refilled from the episodes
    it learned from), then taught every complete episode of ``written`` it has not learned from, in order."""
    explorer = RNDExplorer(env.observation_dim, env.action_dim, config, seed=seed)
    state = os.path.join(folder, RND_STATE)
    if os.path.isfile(state):
        explorer.load(state)
    seen = set(explorer.episodes)
    for i in explorer.episodes:
        if _complete(episode_path(folder, i)):
            explorer.add_episode(read_episode(episode_path(folder, i)))
    for i in written:
        if i not in seen and _complete(episode_path(folder, i)):
            explorer.absorb(read_episode(episode_path(folder, i)))
            explorer.episodes.append(i)
    return explorer


def _steps(path: str) -> int:
    with np.load(path, allow_pickle=False) as f:
        return int(f["action"].shape[0])


def generate_embedded_walker(folder: str) -> None:
    """The embedded default dataset (``OfflineRLDataModule(embedded="walker")``): 50 walker episodes of 1000
    steps (50k transitions), alternating uniform-random and Ornstein-Uhlenbeck exploration, states only, seed
    0, ``reward`` of ``stand`` stored and physics for relabeling walk/run. About 15 s on a laptop CPU core."""
    collect(folder, "walker", task="stand", policy="mixed", episodes=50, seed=0, progress=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="jepa-lightning collect",
        description="Collect reward-free exploration episodes from a dm_control suite domain into a folder of "
                    ".npz episodes (the offline RL format of datamodules/offline_rl.py). Resumable: rerun the same "
                    "command to finish an interrupted collection.")
    parser.add_argument("--domain", required=True, help="dm_control suite domain, e.g. walker, cheetah, point_mass")
    parser.add_argument("--task", default=None, help="task whose reward is stored (default: the domain's first)")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--policy", default="noisy", help=f"exploration policy: {', '.join(POLICIES)}")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pixels", action="store_true", help="also store rendered frames (camera 0)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--time-limit", type=int, default=None, help="env steps per episode (default: suite's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    defaults = RNDConfig()
    parser.add_argument("--rnd-warmup", type=int, default=defaults.warmup,
                        help="rnd: env steps of uniform random actions before the agent acts and learns")
    parser.add_argument("--rnd-update-every", type=int, default=defaults.update_every,
                        help="rnd: env steps per agent update")
    args = parser.parse_args(argv)
    try:
        rnd = None
        if args.policy == "rnd":
            rnd = replace(defaults, warmup=args.rnd_warmup, update_every=args.rnd_update_every)
        out = collect(args.out, args.domain, task=args.task, policy=args.policy, episodes=args.episodes,
                      seed=args.seed, pixels=args.pixels, image_size=args.image_size, time_limit=args.time_limit,
                      progress=not args.no_progress, rnd=rnd)
    except (ValueError, RuntimeError, ImportError, FileNotFoundError) as err:
        print(f"jepa-lightning collect: error: {err}", file=sys.stderr)
        return 2
    rate = f", {out['steps_per_second']:,.0f} steps/s" if out["steps_per_second"] else ""
    print(f"wrote {out['collected']} episodes to {out['folder']} ({out['skipped']} already there): "
          f"{out['episodes']} episodes, {out['transitions']} transitions{rate}")
    return 0
