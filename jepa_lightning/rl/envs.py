"""dm_control suite environments behind the project's :class:`~jepa_lightning.rl.rollout.Env` protocol.

``make_env("walker", "stand")`` loads a suite task and wraps it as :class:`DMCEnv`:

- observation: the suite's observation dict flattened to float32, keys in sorted order (a scalar entry such
  as walker's ``height`` gives one value), so the layout is stable and documented by ``observation_keys``;
- action: float ``[action_dim]``, clipped to the task's action spec (``[-1, 1]`` for every suite domain but
  quadruped, whose bounds reach 1.1, and lqr);
- ``done`` at the time limit (the suite's, 1000 steps for walker/cheetah/reacher/point_mass, or
  ``time_limit`` env steps) or when dm_control ends the episode; ``terminated`` says whether the last step
  ended in a true terminal state (discount 0: none of the locomotion tasks has one);
- ``physics_state()``: a copy of ``physics.get_state()`` (qpos, qvel, act), which is what
  :func:`jepa_lightning.rl.relabel.relabel` needs to recompute any task's reward;
- ``reset(seed)`` reseeds the task's random state, so the same seed gives the same initial state;
- ``render()``: uint8 ``[H, W, 3]`` from camera 0 (``pixels=True`` also checks at construction that it works).

Rendering backend: ``MUJOCO_GL`` is read by dm_control when it is first imported. When it is unset this
module tries EGL (headless, GPU or Mesa's software driver), then OSMesa, then imports dm_control without a
renderer: state-only environments always work, and asking for pixels without a working backend is a clear
error (which backend was tried and how to fix it).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import numpy as np

_GL_TRIED: list[str] = []  # backends attempted at import, for the error message
_GL_ERRORS: dict[str, str] = {}


def _purge_dm_control() -> None:
    """Forget a failed import (dm_control picks its OpenGL backend once, at import)."""
    for name in [m for m in sys.modules if m.split(".")[0] in ("dm_control", "OpenGL")]:
        del sys.modules[name]


def _suite() -> Any:
    """``dm_control.suite``, imported with a working ``MUJOCO_GL`` (see the module docstring)."""
    if "dm_control.suite" in sys.modules:
        return sys.modules["dm_control.suite"]
    if os.environ.get("MUJOCO_GL"):  # the user's choice, respected as is
        from dm_control import suite

        return suite
    for backend in ("egl", "osmesa", "disable"):
        os.environ["MUJOCO_GL"] = backend
        os.environ.pop("PYOPENGL_PLATFORM", None)
        _GL_TRIED.append(backend)
        try:
            from dm_control import suite

            return suite
        except (ImportError, AttributeError, OSError, RuntimeError) as err:  # PyOpenGL fails in several ways
            if backend == "disable":
                raise
            _GL_ERRORS[backend] = f"{type(err).__name__}: {err}"
            _purge_dm_control()
    raise AssertionError("unreachable")


def domain_tasks(domain: str) -> list[str]:
    """The suite's tasks of ``domain`` (e.g. walker -> stand, walk, run); a clear error for an unknown domain."""
    suite = _suite()
    tasks = [t for d, t in suite.ALL_TASKS if d == domain]
    if not tasks:
        domains = sorted({d for d, _ in suite.ALL_TASKS})
        raise ValueError(f"unknown dm_control domain {domain!r}; available: {', '.join(domains)}")
    return tasks


def load_task(domain: str, task: str, seed: int = 0) -> Any:
    """``suite.load`` with clear errors: an unknown task lists the domain's tasks, and the known mujoco/dm_control
    mismatch (dm_control 1.0.50 with mujoco 4.x: no ``flex_vertedge``) says which mujoco to install."""
    tasks = domain_tasks(domain)
    if task not in tasks:
        raise ValueError(f"unknown task {task!r} of dm_control domain {domain!r}; available: {', '.join(tasks)}")
    try:
        return _suite().load(domain, task, task_kwargs={"random": seed})
    except AttributeError as err:
        if "flex_vertedge" in str(err):
            import mujoco

            raise ImportError(
                f"dm_control cannot load {domain}/{task} with the installed mujoco {mujoco.__version__} ({err}); "
                f"install mujoco 3.17.0, the version constraints.txt pins: pip install mujoco==3.17.0") from err
        raise


class DMCEnv:
    """A dm_control suite task as an :class:`~jepa_lightning.rl.rollout.Env` (see the module docstring)."""

    def __init__(self, domain: str, task: str, seed: int = 0, pixels: bool = False, image_size: int = 64,
                 time_limit: int | None = None, camera_id: int = 0) -> None:
        if time_limit is not None and time_limit < 1:
            raise ValueError(f"time_limit must be a number of env steps >= 1, got {time_limit}")
        if image_size < 1:
            raise ValueError(f"image_size must be >= 1, got {image_size}")
        self.domain, self.task, self.tasks = domain, task, domain_tasks(domain)
        self.env = load_task(domain, task, seed)
        self.physics = self.env.physics
        self.time_limit, self.image_size, self.camera_id = time_limit, image_size, camera_id
        suite_limit = float(getattr(self.env, "_step_limit", float("inf")))
        limits = [x for x in (time_limit, suite_limit) if x is not None and np.isfinite(x)]
        self.max_steps: int | None = int(min(limits)) if limits else None  # episode length, when bounded
        spec = self.env.action_spec()
        self.action_low = np.asarray(spec.minimum, dtype=np.float64) * np.ones(spec.shape)
        self.action_high = np.asarray(spec.maximum, dtype=np.float64) * np.ones(spec.shape)
        self.action_dim = int(np.prod(spec.shape))
        obs_spec = self.env.observation_spec()
        self.observation_keys = sorted(obs_spec)
        self.observation_dim = int(sum(max(1, int(np.prod(obs_spec[k].shape))) for k in self.observation_keys))
        self.steps, self.terminated, self._done = 0, False, True
        self.pixels = pixels
        if pixels:
            self.render()  # fail now, with a clear message, rather than mid-collection

    def _flat(self, observation: dict[str, Any]) -> np.ndarray:
        return np.concatenate([np.asarray(observation[k], dtype=np.float32).ravel()
                               for k in self.observation_keys])

    def reset(self, seed: int | None = None) -> np.ndarray:
        if seed is not None:
            self.env.task.random.seed(seed)  # the task draws the initial state from this RandomState
        self.steps, self.terminated, self._done = 0, False, False
        return self._flat(self.env.reset().observation)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        if self._done:
            raise RuntimeError(f"{self.domain}/{self.task}: step() after the episode ended; call reset() first")
        action = np.asarray(action, dtype=np.float64).reshape(self.action_dim)
        ts = self.env.step(np.clip(action, self.action_low, self.action_high))
        self.steps += 1
        self.terminated = ts.last() and ts.discount == 0.0
        self._done = ts.last() or (self.time_limit is not None and self.steps >= self.time_limit)
        return self._flat(ts.observation), float(ts.reward or 0.0), self._done

    def physics_state(self) -> np.ndarray:
        return np.array(self.physics.get_state(), dtype=np.float64)

    def render(self) -> np.ndarray:
        """The current frame, uint8 ``[image_size, image_size, 3]`` from camera ``camera_id``."""
        try:
            frame = self.physics.render(self.image_size, self.image_size, camera_id=self.camera_id)
        except Exception as err:  # dm_control raises RuntimeError / GL errors of several kinds
            backend = os.environ.get("MUJOCO_GL")
            tried = "; ".join(f"{b}: {e}" for b, e in _GL_ERRORS.items())
            raise RuntimeError(
                f"cannot render {self.domain}/{self.task} pixels with MUJOCO_GL={backend!r} ({err})"
                + (f"; backends that failed: {tried}" if tried else "")
                + ". Headless rendering needs EGL (libEGL, a GPU or Mesa) or OSMesa (libosmesa6); set MUJOCO_GL "
                  "to one that works, or collect states only (no --pixels)") from err
        return np.ascontiguousarray(frame, dtype=np.uint8)


def make_env(domain: str, task: str, seed: int = 0, pixels: bool = False, image_size: int = 64,
             time_limit: int | None = None) -> DMCEnv:
    """A dm_control suite task (e.g. ``make_env("walker", "run")``) as an Env; ``time_limit`` is in env steps
    (default: the suite's own limit)."""
    return DMCEnv(domain, task, seed=seed, pixels=pixels, image_size=image_size, time_limit=time_limit)
