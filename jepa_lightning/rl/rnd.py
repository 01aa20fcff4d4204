"""An online Random Network Distillation (RND) explorer: the reward-free agent behind ExORL's datasets (Yarats et
al. 2022), which TD-JEPA trains on, as the ``rnd`` policy of :mod:`jepa_lightning.rl.collect`.

Algorithm (Burda et al. 2019 as used by URLB/ExORL for states):

- a fixed, randomly initialised target network ``f*`` and a trained predictor ``f`` (both
  ``Linear -> ReLU -> Linear -> ReLU -> Linear``, ``hidden`` wide, ``rep_dim`` outputs) read the observation
  normalised by its running mean and std (over every observed state) and clipped to ``[-obs_clip, obs_clip]``;
- the prediction error ``e(s) = mean_k (f(s)_k - f*(s)_k)^2`` (``||f(s) - f*(s)||^2 / rep_dim``) is low on states
  like those the predictor was trained on and high on novel ones; the intrinsic reward of a transition is
  ``r_int = e(s') / std(e)``, ``std(e)`` a running std of the errors of the training minibatches;
- every ``update_every`` env steps after ``warmup`` steps of uniform random actions, one minibatch of
  ``batch_size`` transitions from the replay buffer trains the predictor (MSE, i.e. ``mean e(s')``) and an
  off-policy actor-critic on ``r_int`` only (no task reward), recomputed on the batch at every update, so the
  reward follows the predictor: TD3 (:func:`jepa_lightning.rl.td3.td3_update`, the update of the TD-JEPA
  benchmark's offline TD3 too: twin critics, clipped double Q, target smoothing noise 0.2 clipped at 0.5, actor
  updated every ``actor_every`` updates, Polyak averaging 0.995, actor and critics
  :class:`jepa_lightning.nn.rl.MLP`\\ s on the raw observation);
- acting: ``clip(mu(s) + N(0, expl_std^2), -1, 1)``.

Deviations from ExORL (its URLB agent configuration): TD3 instead of DDPG (DDPG's actor noise 0.2 kept for
acting); one update per ``update_every = 2`` env steps as there, but with a ``warmup`` of 5000 random steps
(URLB: 4000 seed frames); batch 256 (1024), networks 256 wide (1024), learning rate 3e-4 (1e-4: our collections
are much shorter than the 5000 walker episodes TD-JEPA trains on), Polyak 0.995 (0.99), 1-step TD targets
(3-step); the observation normaliser is a running mean/std of the env stream (a BatchNorm over each minibatch
there); the reward uses ``s'`` (URLB's code uses ``s``) and the batch's error before the predictor's step (no
second forward). The RND networks are plain ReLU MLPs, not :class:`~jepa_lightning.nn.rl.MLP`: its LayerNorm after
the first layer would make the fixed target blind to the scale of a normalised state.

Everything the agent's future depends on is in :meth:`RNDExplorer.state_dict` except the replay buffer, which
is rebuilt from the episodes written so far (:meth:`RNDExplorer.add_episode`); :meth:`RNDExplorer.absorb`
replays an episode's transitions through :meth:`RNDExplorer.observe` (its updates included), which recreates
the agent exactly because acting never changes the agent (its noise comes from the caller's generator).
"""

from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from jepa_lightning.nn.rl import MLP
from jepa_lightning.rl.td3 import TD3Networks, td3_update


@dataclass(frozen=True)
class RNDConfig:
    hidden: int = 256
    rep_dim: int = 512
    batch_size: int = 256
    lr: float = 3e-4
    discount: float = 0.99
    polyak: float = 0.995
    expl_std: float = 0.2
    target_noise: float = 0.2
    noise_clip: float = 0.5
    actor_every: int = 2
    warmup: int = 5000
    update_every: int = 2
    capacity: int = 1_000_000
    obs_clip: float = 5.0

    def __post_init__(self) -> None:
        positive = ("hidden", "rep_dim", "batch_size", "lr", "expl_std", "actor_every", "update_every", "capacity",
                    "obs_clip")
        bad = [f"{k}={getattr(self, k)}" for k in positive if not getattr(self, k) > 0]
        bad += [f"{k}={getattr(self, k)}" for k in ("discount", "polyak") if not 0 <= getattr(self, k) < 1]
        bad += [f"{k}={getattr(self, k)}" for k in ("warmup", "target_noise", "noise_clip") if getattr(self, k) < 0]
        if bad:
            raise ValueError(f"invalid RND settings: {', '.join(bad)}")


class RunningMeanStd:
    """Mean and (population) variance of a stream of batches ``[N, *shape]`` (Chan et al.'s parallel update,
    float64)."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.count = 0
        self.mean, self.m2 = torch.zeros(shape, dtype=torch.float64), torch.zeros(shape, dtype=torch.float64)

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().to(torch.float64)
        n, mean = len(x), x.mean(0)
        delta, total = mean - self.mean, self.count + len(x)
        self.m2 = self.m2 + (x - mean).pow(2).sum(0) + delta.pow(2) * self.count * n / total
        self.mean, self.count = self.mean + delta * n / total, total

    @property
    def std(self) -> torch.Tensor:
        """The standard deviation so far (1 before any data: a unit scale)."""
        return (self.m2 / self.count).sqrt() if self.count else torch.ones_like(self.m2)

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count, self.mean, self.m2 = int(state["count"]), state["mean"].clone(), state["m2"].clone()


def _relu_mlp(in_dim: int, out_dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, out_dim))


class RND(nn.Module):
    """Predictor ``f`` and fixed target ``f*`` on normalised, clipped observations (see the module docstring)."""

    def __init__(self, obs_dim: int, hidden: int = 256, rep_dim: int = 512, obs_clip: float = 5.0) -> None:
        super().__init__()
        self.predictor, self.target = _relu_mlp(obs_dim, rep_dim, hidden), _relu_mlp(obs_dim, rep_dim, hidden)
        self.target.requires_grad_(False)
        self.obs_clip, self.obs_rms, self.err_rms = obs_clip, RunningMeanStd((obs_dim,)), RunningMeanStd(())

    def error(self, obs: torch.Tensor) -> torch.Tensor:
        """Prediction error ``e(s)`` per observation: ``[B, obs_dim] -> [B]``."""
        x = ((obs - self.obs_rms.mean) / (self.obs_rms.std + 1e-8)).float().clamp(-self.obs_clip, self.obs_clip)
        return (self.predictor(x) - self.target(x)).pow(2).mean(-1)

    def reward(self, error: torch.Tensor) -> torch.Tensor:
        """The intrinsic reward of errors: ``e / std(e)`` with the running std of the training errors."""
        return error / (self.err_rms.std.float() + 1e-8)


class Replay:
    """A ring buffer of transitions ``(obs, action, next_obs, not_done)`` (float32 tensors, allocated lazily)."""

    def __init__(self, obs_dim: int, action_dim: int, capacity: int) -> None:
        self.capacity, self.size, self.next = capacity, 0, 0
        self.obs, self.next_obs = torch.empty(capacity, obs_dim), torch.empty(capacity, obs_dim)
        self.action, self.not_done = torch.empty(capacity, action_dim), torch.empty(capacity)

    def add(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, terminal: np.ndarray) -> None:
        """Add ``[N, ...]`` transitions."""
        for start in range(0, len(obs), self.capacity):
            stop = min(start + self.capacity, len(obs))
            rows = (self.next + torch.arange(stop - start)) % self.capacity
            for buffer, x in ((self.obs, obs), (self.next_obs, next_obs), (self.action, action)):
                buffer[rows] = torch.as_tensor(x[start:stop])
            self.not_done[rows] = 1.0 - torch.as_tensor(terminal[start:stop], dtype=torch.float32)
            self.next, self.size = int(rows[-1] + 1) % self.capacity, min(self.size + stop - start, self.capacity)

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        idx = torch.randint(self.size, (batch,), generator=generator)
        return self.obs[idx], self.action[idx], self.next_obs[idx], self.not_done[idx]


class RNDExplorer:
    """The online RND agent as a collection policy: ``explorer(obs) -> action`` (``rng``, the caller's numpy
    generator, draws warm-up actions and exploration noise), ``observe(obs, action, next_obs)`` after every env
    step (stores the transition, updates the normaliser, trains every ``update_every`` steps)."""

    def __init__(self, obs_dim: int, action_dim: int, config: RNDConfig | None = None, seed: int = 0) -> None:
        self.config = c = config or RNDConfig()
        self.obs_dim, self.action_dim = obs_dim, action_dim
        with torch.random.fork_rng():  # initialisation from `seed` without touching the global RNG
            torch.manual_seed(seed)
            self.rnd = RND(obs_dim, c.hidden, c.rep_dim, c.obs_clip)
            self.actor = MLP(obs_dim, action_dim, c.hidden, 2)
            self.critic = MLP(obs_dim + action_dim, 1, c.hidden, 2, ensemble=2)
        self.actor_t = copy.deepcopy(self.actor).requires_grad_(False)
        self.critic_t = copy.deepcopy(self.critic).requires_grad_(False)
        self.opts = {"rnd": torch.optim.Adam(self.rnd.predictor.parameters(), lr=c.lr),
                     "actor": torch.optim.Adam(self.actor.parameters(), lr=c.lr),
                     "critic": torch.optim.Adam(self.critic.parameters(), lr=c.lr)}
        self.td3 = TD3Networks(self.actor, self.critic, self.actor_t, self.critic_t, self.opts["actor"],
                               self.opts["critic"])
        self.generator = torch.Generator().manual_seed(seed)  # minibatches and target smoothing noise
        self.replay = Replay(obs_dim, action_dim, c.capacity)
        self.rng = np.random.default_rng(seed)
        self.step, self.updates = 0, 0
        self.episodes: list[int] = []  # indices of the episodes the agent has learned from, in order
        self.metrics: dict[str, float] = {}  # of the last update

    def reset(self) -> None:
        pass

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        if self.step < self.config.warmup:
            return self.rng.uniform(-1.0, 1.0, self.action_dim)
        with torch.no_grad():
            mu = torch.tanh(self.actor(torch.as_tensor(obs, dtype=torch.float32)[None]))[0].double().numpy()
        return np.clip(mu + self.config.expl_std * self.rng.standard_normal(self.action_dim), -1.0, 1.0)

    def observe(self, obs: np.ndarray, action: np.ndarray, next_obs: np.ndarray, terminal: bool = False) -> None:
        obs, next_obs = np.asarray(obs, np.float32)[None], np.asarray(next_obs, np.float32)[None]
        self.replay.add(obs, np.asarray(action, np.float32)[None], next_obs, np.array([terminal]))
        self.rnd.obs_rms.update(torch.from_numpy(next_obs))
        self.step += 1
        c = self.config
        if self.step >= c.warmup and self.step % c.update_every == 0 and self.replay.size >= c.batch_size:
            self.metrics = self.update()

    def update(self) -> dict[str, float]:
        """One minibatch: the predictor's MSE step, then TD3's critic (and, delayed, actor) step on ``r_int``."""
        c, g = self.config, self.generator
        obs, action, next_obs, not_done = self.replay.sample(c.batch_size, g)
        error = self.rnd.error(next_obs)
        self.opts["rnd"].zero_grad(set_to_none=True)
        error.mean().backward()
        self.opts["rnd"].step()
        error = error.detach()
        self.rnd.err_rms.update(error)
        reward = self.rnd.reward(error)
        out = {"rnd_error": float(error.mean()), "intrinsic_reward": float(reward.mean())}
        out |= td3_update(self.td3, obs, action, reward, next_obs, not_done, g, discount=c.discount,
                          update_actor=self.updates % c.actor_every == 0,  # delayed policy update
                          target_noise=c.target_noise, noise_clip=c.noise_clip, polyak=c.polyak)
        self.updates += 1
        return out

    def intrinsic_reward(self, next_obs: np.ndarray) -> np.ndarray:
        """``r_int`` of states ``[N, obs_dim]`` under the current predictor and statistics (changes nothing)."""
        with torch.no_grad():
            x = torch.as_tensor(np.asarray(next_obs, np.float32))
            return self.rnd.reward(self.rnd.error(x)).numpy()

    def add_episode(self, episode: dict[str, np.ndarray]) -> None:
        """Put an episode's transitions (as :func:`~jepa_lightning.rl.episodes.read_episode` returns it) in the
        replay buffer only (the agent already learned from them)."""
        obs = episode["observation"]
        self.replay.add(obs[:-1], episode["action"], obs[1:], episode["terminal"])

    def absorb(self, episode: dict[str, np.ndarray]) -> None:
        """Learn from an episode collected elsewhere (as ``read_episode`` returns it): its transitions through
        :meth:`observe`, updates included."""
        obs, action, terminal = episode["observation"], episode["action"], episode["terminal"]
        for t in range(len(action)):
            self.observe(obs[t], action[t], obs[t + 1], bool(terminal[t]))

    def _networks(self) -> dict[str, nn.Module]:
        return {"rnd": self.rnd, "actor": self.actor, "critic": self.critic, "actor_t": self.actor_t,
                "critic_t": self.critic_t}

    def state_dict(self) -> dict[str, Any]:
        return {"config": asdict(self.config), "dims": [self.obs_dim, self.action_dim], "step": self.step,
                "updates": self.updates, "episodes": list(self.episodes), "generator": self.generator.get_state(),
                "networks": {k: m.state_dict() for k, m in self._networks().items()},
                "optimizers": {k: o.state_dict() for k, o in self.opts.items()},
                "obs_rms": self.rnd.obs_rms.state_dict(), "err_rms": self.rnd.err_rms.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["config"] != asdict(self.config) or list(state["dims"]) != [self.obs_dim, self.action_dim]:
            raise ValueError(f"RND state for {state['config']} with dims {state['dims']} does not match "
                             f"{asdict(self.config)} with dims {[self.obs_dim, self.action_dim]}")
        for name, module in self._networks().items():
            module.load_state_dict(state["networks"][name])
        for name, opt in self.opts.items():
            opt.load_state_dict(state["optimizers"][name])
        self.rnd.obs_rms.load_state_dict(state["obs_rms"])
        self.rnd.err_rms.load_state_dict(state["err_rms"])
        self.generator.set_state(state["generator"])
        self.step, self.updates, self.episodes = int(state["step"]), int(state["updates"]), list(state["episodes"])

    def save(self, path: str) -> None:
        """:meth:`state_dict` to ``path``, atomically (a temporary file renamed)."""
        tmp = f"{path}.tmp{os.getpid()}"
        torch.save(self.state_dict(), tmp)
        os.replace(tmp, path)

    def load(self, path: str) -> None:
        self.load_state_dict(torch.load(path, weights_only=True))
