"""One TD3 update (Fujimoto et al. 2018), shared by the offline per-task TD3 reference of the TD-JEPA benchmark
and the online RND explorer (:mod:`jepa_lightning.rl.rnd`): twin critics with clipped double Q, target-policy
smoothing (clipped Gaussian noise on the target actor's action), a delayed actor step and Polyak-averaged targets;
optionally TD3+BC's actor loss (Fujimoto & Gu 2021).

The networks are plain modules: ``actor(obs)`` returns pre-tanh actions ``[B, A]``, ``critic(cat[obs, action])``
returns ``[2, B, 1]`` (an ensemble of two, :class:`jepa_lightning.nn.rl.MLP` with ``ensemble=2``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from jepa_lightning.nn.rl import truncated_normal_sample
from jepa_lightning.targets import ema_update


@dataclass
class TD3Networks:
    """The actor and twin critics, their frozen targets, and one optimizer each."""

    actor: nn.Module
    critic: nn.Module
    actor_target: nn.Module
    critic_target: nn.Module
    actor_opt: torch.optim.Optimizer
    critic_opt: torch.optim.Optimizer


def _step(opt: torch.optim.Optimizer, loss: torch.Tensor) -> float:
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


def td3_update(nets: TD3Networks, obs: torch.Tensor, action: torch.Tensor, reward: torch.Tensor,
               next_obs: torch.Tensor, not_done: torch.Tensor, generator: torch.Generator, *, discount: float,
               update_actor: bool, target_noise: float = 0.2, noise_clip: float = 0.5, polyak: float = 0.995,
               bc_alpha: float = 0.0) -> dict[str, float]:
    """One minibatch: the critics regress ``r + discount * not_done * min_i Q'_i(s', clip(mu'(s') + noise))``;
    with ``update_actor`` the actor ascends ``Q_1(s, tanh(mu(s)))`` (TD3+BC with ``bc_alpha > 0``:
    ``bc_alpha * Q / mean|Q|`` minus the squared distance to the data's action) and its target moves by Polyak
    averaging; the critics' targets move every update. Returns the losses."""
    with torch.no_grad():
        next_action = truncated_normal_sample(torch.tanh(nets.actor_target(next_obs)), target_noise, noise_clip,
                                              generator)
        next_q = nets.critic_target(torch.cat([next_obs, next_action], -1)).min(0).values.squeeze(-1)
        y = reward + discount * not_done * next_q
    q = nets.critic(torch.cat([obs, action], -1)).squeeze(-1)  # [2, B]
    out = {"critic_loss": _step(nets.critic_opt, (q - y).pow(2).mean(1).sum())}
    if update_actor:
        pi = torch.tanh(nets.actor(obs))
        q_pi = nets.critic(torch.cat([obs, pi], -1))[0].squeeze(-1)
        loss = -q_pi.mean()
        if bc_alpha > 0:
            loss = bc_alpha * loss / q_pi.abs().mean().detach() + (pi - action).pow(2).mean()
        out["actor_loss"] = _step(nets.actor_opt, loss)
        ema_update(nets.actor_target, nets.actor, polyak)
    ema_update(nets.critic_target, nets.critic, polyak)
    return out


__all__ = ["TD3Networks", "td3_update"]
