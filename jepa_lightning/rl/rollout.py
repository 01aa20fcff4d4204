"""The environment protocol every RL part of the project speaks, and evaluation rollouts over it.

An environment (dm_control through :mod:`jepa_lightning.rl.envs`, the project's 2-D tasks, a user's own)
gives flat float32 observations and takes flat float actions in ``[-1, 1]``; an episode ends when ``step``
says ``done`` (terminal state or time limit). A policy is a callable ``obs [obs_dim] -> action
[action_dim]``; a stateful policy (e.g. temporal ensembling of action chunks) also has ``reset()``, called
at the start of each episode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Env(Protocol):
    observation_dim: int
    action_dim: int

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Start an episode; the first observation, float32 ``[observation_dim]``."""

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        """Apply ``action`` (float ``[action_dim]`` in ``[-1, 1]``); (next observation, reward, done)."""

    def physics_state(self) -> np.ndarray:
        """The simulator state (for reward relabeling), float64 ``[P]``."""


Policy = Callable[[np.ndarray], np.ndarray]


def rollout(env: Env, policy: Policy, episodes: int = 1, seed: int = 0,
            max_steps: int | None = None) -> dict[str, Any]:
    """Run ``episodes`` episodes of ``policy`` in ``env`` (episode ``i`` reset with ``seed + i``).

    Returns ``{"returns": [...], "lengths": [...], "mean_return": float, "std_return": float}`` and, when the
    environment defines ``success()``, ``"successes"`` and ``"success_rate"`` (success read at the episode's
    end)."""
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    returns, lengths, successes = [], [], []
    has_success = callable(getattr(env, "success", None))
    for i in range(episodes):
        if callable(getattr(policy, "reset", None)):
            policy.reset()  # type: ignore[attr-defined]
        obs, total, steps, done = env.reset(seed=seed + i), 0.0, 0, False
        while not done and (max_steps is None or steps < max_steps):
            action = np.asarray(policy(obs), dtype=np.float64).reshape(env.action_dim)
            obs, reward, done = env.step(np.clip(action, -1.0, 1.0))
            total, steps = total + float(reward), steps + 1
        returns.append(total)
        lengths.append(steps)
        if has_success:
            successes.append(bool(env.success()))  # type: ignore[attr-defined]
    out: dict[str, Any] = {"returns": returns, "lengths": lengths, "mean_return": float(np.mean(returns)),
                           "std_return": float(np.std(returns))}
    if has_success:
        out["successes"] = successes
        out["success_rate"] = float(np.mean(successes))
    return out
