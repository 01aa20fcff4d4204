"""Reward relabeling from stored simulator states, as ExoRL does: reward-free data becomes data for any task
of its domain.

A dm_control task's reward is a function of the simulator after the step, ``r_t = task.get_reward(physics
at s_{t+1})``, so the reward of a stored transition is recovered by loading the physics state
``next_physics`` (``physics.get_state()``: qpos, qvel, act), recomputing everything MuJoCo derives from it
(``mj_forward``: body poses, sensor data such as walker's subtree linear velocity, contacts), and calling the
task's ``get_reward``. The task is loaded once per ``(domain, task)`` and cached.

Two things the state alone does not determine, both checked once per task (so nothing is silently wrong):

- the control: some rewards include a control cost read from ``physics.control()`` (point_mass, cartpole
  balance/swingup, hopper stand, humanoid). Pass ``action`` (the step's action, ``[N, action_dim]``); it is
  written to ``data.ctrl`` before ``mj_forward``, exactly as the environment did (our environments store the
  clipped action). Without it such a task is an error.
- per-episode model randomization: reacher, finger turn, fish swim, swimmer, manipulator and stacker draw
  their target (or object placement) into the MuJoCo *model* (``geom_pos``/``site_pos``/``body_pos``), which
  ``physics.get_state()`` does not hold; relabeling them from states alone would be wrong, so it is an error.

Quantities computed by ``mj_step1`` after a step (positions, velocities, position/velocity sensors) are
recomputed exactly by ``mj_forward`` from the same state, so relabeled rewards equal the environment's bit
for bit (tested for walker stand/walk and point_mass easy).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from jepa_lightning.rl.envs import load_task

# Model fields a task may randomize per episode that can change its reward (colours and lights cannot).
_MODEL_FIELDS = ("geom_pos", "geom_quat", "geom_size", "site_pos", "site_quat", "site_size", "body_pos",
                 "body_quat", "body_mass")


class _Task:
    """One loaded task: its physics (scratch space for relabeling) and what its reward depends on."""

    def __init__(self, domain: str, task: str) -> None:
        self.name = f"{domain}/{task}"
        self.env = load_task(domain, task, seed=0)
        self.physics, self.task = self.env.physics, self.env.task
        self.env.reset()
        model = self.physics.model
        before = {f: np.array(getattr(model, f)) for f in _MODEL_FIELDS}
        self.env.reset()
        self.randomized = [f for f in _MODEL_FIELDS if not np.array_equal(before[f], getattr(model, f))]
        self.state_size = int(self.physics.get_state().shape[0])
        self.action_size = int(self.physics.data.ctrl.shape[0])
        state = self.physics.get_state()
        rewards = [self._reward(state, np.zeros(self.action_size))]
        rng = np.random.default_rng(0)
        rewards += [self._reward(state, rng.uniform(-1, 1, self.action_size)) for _ in range(2)]
        self.reads_control = len(set(rewards)) > 1

    def _reward(self, state: np.ndarray, ctrl: np.ndarray) -> float:
        self.physics.set_state(state)
        self.physics.data.ctrl[:] = ctrl
        self.physics.forward()  # mj_forward: derived quantities and sensors of this state
        return float(self.task.get_reward(self.physics))


@functools.cache
def _task(domain: str, task: str) -> _Task:
    return _Task(domain, task)


def relabel(domain: str, task: str, physics: Any, action: Any = None) -> np.ndarray:
    """Rewards of ``domain``/``task`` at physics states ``[N, P]`` (float64, ``physics.get_state()``), float32
    ``[N]``. Use it on ``next_physics``: a step's reward is the task's reward at the state after the step.
    ``action`` ``[N, action_dim]`` (the step's action) is required for tasks whose reward has a control cost
    (see the module docstring); it is ignored by the others."""
    t = _task(domain, task)
    if t.randomized:
        raise ValueError(
            f"cannot relabel {t.name} from physics states: the task randomizes its target per episode in the "
            f"MuJoCo model ({', '.join(t.randomized)}), which physics.get_state() does not store; relabel "
            f"tasks whose reward depends on the state only (e.g. walker, cheetah, quadruped, point_mass)")
    states = np.asarray(physics, dtype=np.float64)
    if states.ndim != 2 or states.shape[1] != t.state_size:
        raise ValueError(f"relabel {t.name}: physics must be [N, {t.state_size}] (physics.get_state() of this "
                         f"domain), got shape {states.shape}")
    if action is None:
        if t.reads_control:
            raise ValueError(
                f"relabel {t.name}: this task's reward includes a control cost (physics.control()); pass "
                f"action=[N, {t.action_size}], the action of each step whose next_physics you relabel")
        controls = np.zeros((len(states), t.action_size))
    else:
        controls = np.asarray(action, dtype=np.float64)
        if controls.shape != (len(states), t.action_size):
            raise ValueError(f"relabel {t.name}: action must be [{len(states)}, {t.action_size}] (one per "
                             f"physics state), got shape {controls.shape}")
    rewards = np.empty(len(states), dtype=np.float64)
    for i in range(len(states)):
        rewards[i] = t._reward(states[i], controls[i])
    return rewards.astype(np.float32)
