"""Policy rollouts at the end of validation: success rate and return of the method's policy in its task.

The environment comes from ``env_factory`` (``"module:callable"``, called with ``env_kwargs``) or, when that
is not given, from the DataModule's ``metadata`` (``env_factory`` and ``env_kwargs`` written by the data's
generator, e.g. :func:`jepa_lightning.rl.reach2d.generate_demos`), so a recipe evaluates on exactly the task
its demonstrations come from. The module must have ``policy(render=...)`` returning a
:mod:`jepa_lightning.rl.rollout` policy (e.g. :meth:`jepa_lightning.methods.act_jepa.ACTJEPA.policy`).
"""

from __future__ import annotations

import importlib
from typing import Any

import lightning as L
import numpy as np
from lightning.pytorch.trainer.states import TrainerFn

from jepa_lightning.rl.rollout import Env, rollout


def build_env(factory: str, kwargs: dict[str, Any] | None = None) -> Env:
    """``"package.module:callable"`` called with ``kwargs``; a clear error for a malformed or unknown name."""
    module, _, name = factory.partition(":")
    if not module or not name:
        raise ValueError(f"env_factory must be 'module:callable' (e.g. 'jepa_lightning.rl.reach2d:make_env'), "
                         f"got {factory!r}")
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"env_factory {factory!r} cannot be imported: {err}") from err
    return fn(**(kwargs or {}))


class RolloutEvaluation(L.Callback):
    """Roll out ``pl_module.policy()`` for ``episodes`` episodes (episode i reset with seed ``seed + i``, the
    same layouts every time) at the end of every ``every_n_epochs``-th validation (and of ``validate``), and log
    ``val/success_rate`` (when the task defines success) and ``val/return`` (mean episode return).

    Args:
        episodes: episodes per evaluation.
        seed: seed of the first episode's layout (keep it away from the demonstrations' seeds).
        max_steps: step limit per episode (None: the task's own time limit).
        every_n_epochs: evaluate at every n-th validation epoch.
        env_factory: ``"module:callable"`` building the task; None: the DataModule's ``metadata["env_factory"]``.
        env_kwargs: keyword arguments of the factory (None: ``metadata["env_kwargs"]`` when the factory comes
            from the metadata, else none).
    """

    def __init__(self, episodes: int = 10, seed: int = 100_000, max_steps: int | None = None,
                 every_n_epochs: int = 1, env_factory: str | None = None,
                 env_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        if episodes < 1 or every_n_epochs < 1:
            raise ValueError(f"RolloutEvaluation: episodes and every_n_epochs must be >= 1, got {episodes}, "
                             f"{every_n_epochs}")
        self.episodes, self.seed, self.max_steps, self.every_n_epochs = episodes, seed, max_steps, every_n_epochs
        self.env_factory, self.env_kwargs = env_factory, env_kwargs
        self.last: dict[str, Any] | None = None  # the latest rollout result (returns, successes, ...)

    def make_env(self, trainer: L.Trainer) -> Env:
        if self.env_factory is not None:
            return build_env(self.env_factory, self.env_kwargs)
        meta = getattr(trainer.datamodule, "metadata", None) or {}
        if "env_factory" not in meta:
            raise ValueError("RolloutEvaluation: no env_factory given and the data's metadata has none "
                             f"(metadata keys: {sorted(meta)}); set env_factory, e.g. "
                             "'jepa_lightning.rl.reach2d:make_env'")
        return build_env(meta["env_factory"], self.env_kwargs if self.env_kwargs is not None
                         else meta.get("env_kwargs"))

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        if not callable(getattr(pl_module, "policy", None)):
            raise AttributeError(f"RolloutEvaluation needs {type(pl_module).__name__}.policy() -> a rollout policy")
        env = self.make_env(trainer)
        render = None
        if getattr(pl_module, "use_pixels", False):
            size = pl_module.encoder.image_size
            render = lambda: env.render(size)  # noqa: E731
        return rollout(env, pl_module.policy(render=render), self.episodes, self.seed, self.max_steps)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        if trainer.state.fn == TrainerFn.FITTING and trainer.current_epoch % self.every_n_epochs:
            return
        # every process rolls out the same seeded episodes with the same weights: no reduction needed
        self.last = result = self.evaluate(trainer, pl_module)
        pl_module.log("val/return", float(np.mean(result["returns"])), batch_size=self.episodes)
        if "success_rate" in result:
            pl_module.log("val/success_rate", result["success_rate"], batch_size=self.episodes)
