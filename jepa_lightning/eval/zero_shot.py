"""Zero-shot RL evaluation (TD-JEPA, FB, and any model with ``infer_z`` / ``act``): for each task of a domain,
infer the task vector from relabeled reward-free data, then roll out the task-conditioned policy.

Protocol (the reference's ``dmc_reward_eval``; ExoRL-style relabeling):

1. draw ``inference_samples`` transitions of the DataModule's TRAIN split (a fixed seeded subset);
2. for each task: ``r_i = relabel(domain, task, next_physics_i)`` (the task's reward at the state after the
   step, :func:`jepa_lightning.rl.relabel.relabel`);
3. ``z = model.infer_z(next_obs, r)`` (least squares of the rewards on the task features, projected);
4. roll out ``model.act(obs, z)`` (the policy's mean action) in ``make_env(domain, task, time_limit=...)``
   for ``episodes`` episodes (episode i reset with ``seed + i``); log the mean return as
   ``val/return/<task>`` and the mean over tasks as ``val/return/mean``.

A model with a pixel encoder (``model.pixels``) reads frames: next frames for inference, and the
environment's rendered frame (``[3, H, W]``, the DataModule's ``image_size``) for acting.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from jepa_lightning.rl.rollout import rollout


class _FrameObservations:
    """An environment seen through its rendered frames: observations are uint8 ``[3, H, W]``."""

    def __init__(self, env: Any) -> None:
        self.env, self.action_dim = env, env.action_dim
        self.observation_dim = 3 * env.image_size * env.image_size

    def _frame(self) -> np.ndarray:
        return np.ascontiguousarray(self.env.render().transpose(2, 0, 1))

    def reset(self, seed: int | None = None) -> np.ndarray:
        self.env.reset(seed=seed)
        return self._frame()

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool]:
        _, reward, done = self.env.step(action)
        return self._frame(), reward, done

    def physics_state(self) -> np.ndarray:
        return self.env.physics_state()


def sample_transitions(dataset: Any, n: int, seed: int = 0, pixels: bool = False) -> dict[str, torch.Tensor]:
    """``n`` transitions (without replacement, all if fewer) of a transition dataset (``__getitems__`` of
    :class:`datamodules.offline_rl.TransitionDataset`), drawn with ``seed``."""
    size = len(dataset)
    index = np.sort(np.random.default_rng(seed).permutation(size)[:min(n, size)]).tolist()
    batch = dataset.__getitems__(index) if hasattr(dataset, "__getitems__") else None
    if batch is None or not isinstance(batch, dict):
        raise TypeError(f"zero-shot evaluation needs a transition dataset returning dict batches "
                        f"(OfflineRLDataModule, mode='transitions'); got {type(dataset).__name__}")
    needed = ["next_physics", "next_pixels" if pixels else "next_obs"]
    missing = [k for k in needed if k not in batch]
    if missing:
        raise KeyError(f"zero-shot evaluation: the transitions have no {missing} (keys: {sorted(batch)}); the episodes "
                       f"need 'physics' for relabeling{' and pixels=True' if pixels else ''}")
    return batch


def evaluate_zero_shot(model: LightningModule, transitions: dict[str, torch.Tensor], domain: str,
                       tasks: list[str], episodes: int = 1, time_limit: int | None = None, seed: int = 0,
                       image_size: int = 64) -> dict[str, dict[str, Any]]:
    """Steps 2-4 of the module docstring for each task: ``{task: {"mean_return", "returns", "reward_mean",
    "z_norm"}}``."""
    from jepa_lightning.rl.envs import make_env
    from jepa_lightning.rl.relabel import relabel

    pixels = bool(getattr(model, "pixels", False))
    inputs = transitions["next_pixels"] if pixels else transitions["next_obs"]
    physics = transitions["next_physics"].cpu().numpy()
    action = transitions["action"].cpu().numpy() if "action" in transitions else None
    was_training = model.training
    model.eval()
    results: dict[str, dict[str, Any]] = {}
    try:
        for task in tasks:
            reward = relabel(domain, task, physics, action=action)
            z = model.infer_z(inputs, torch.as_tensor(reward))
            env = make_env(domain, task, seed=seed, pixels=pixels, image_size=image_size, time_limit=time_limit)
            out = rollout(_FrameObservations(env) if pixels else env, model.policy(z), episodes=episodes, seed=seed)
            results[task] = {"mean_return": out["mean_return"], "returns": out["returns"],
                             "reward_mean": float(np.mean(reward)), "z_norm": float(z.norm())}
    finally:
        model.train(was_training)
    return results


class ZeroShotRollouts(Callback):
    """At the end of each validation (not during the sanity check), evaluate the model zero-shot on each task of
    ``domain`` and log ``val/return/<task>`` and ``val/return/mean`` (module docstring).

    Args:
        domain: dm_control domain; default: the DataModule's ``metadata["domain"]`` (``dataset.json``).
        tasks: tasks to evaluate; default: every task of the domain.
        episodes: rollout episodes per task.
        time_limit: env steps per episode (default: the suite's, 1000 for walker).
        inference_samples: transitions of the train split used to infer z.
        seed: the transition subset and the episodes' initial states.
        every_n_validations: during `fit`, evaluate at every n-th validation (a `validate` run always evaluates).
    Every rank evaluates (identically: everything is seeded) so that all ranks log the same values.
    """

    def __init__(self, domain: str | None = None, tasks: list[str] | None = None, episodes: int = 2,
                 time_limit: int | None = None, inference_samples: int = 10_000, seed: int = 0,
                 every_n_validations: int = 1) -> None:
        super().__init__()
        if episodes < 1 or inference_samples < 1 or every_n_validations < 1:
            raise ValueError(f"ZeroShotRollouts: episodes ({episodes}), inference_samples ({inference_samples}) "
                             f"and every_n_validations ({every_n_validations}) must be >= 1")
        self.domain, self.tasks, self.episodes, self.time_limit = domain, tasks, episodes, time_limit
        self.inference_samples, self.seed, self.every_n_validations = inference_samples, seed, every_n_validations
        self.results: dict[str, dict[str, Any]] = {}
        self._validations = 0

    def _domain(self, datamodule: Any) -> str:
        if self.domain is not None:
            return self.domain
        domain = (getattr(datamodule, "metadata", None) or {}).get("domain")
        if not domain:
            raise ValueError("ZeroShotRollouts: no domain given and the DataModule's metadata (dataset.json) has no "
                             "'domain'; set the callback's init_args.domain (e.g. walker)")
        return str(domain)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._validations += 1
        if trainer.state.fn == "fit" and self._validations % self.every_n_validations:
            return
        for attr in ("infer_z", "policy"):
            if not callable(getattr(pl_module, attr, None)):
                raise TypeError(f"ZeroShotRollouts needs a model with `{attr}` (TDJEPA, FB), got "
                                f"{type(pl_module).__name__}")
        dm = trainer.datamodule
        if dm is None:
            raise ValueError("ZeroShotRollouts needs the Trainer to run with a DataModule (OfflineRLDataModule) whose "
                             "train split provides the transitions for task inference")
        dataset = getattr(dm, "train_dataset", None)
        if dataset is None:
            dm.setup("fit")
            dataset = dm.train_dataset
        domain = self._domain(dm)
        if self.tasks is None:
            from jepa_lightning.rl.envs import domain_tasks

            self.tasks = domain_tasks(domain)
        pixels = bool(getattr(pl_module, "pixels", False))
        transitions = sample_transitions(dataset, self.inference_samples, self.seed, pixels)
        image_size = int(transitions["next_pixels"].shape[-1]) if pixels else 64
        self.results = evaluate_zero_shot(pl_module, transitions, domain, list(self.tasks), self.episodes,
                                          self.time_limit, self.seed, image_size)
        for task, res in self.results.items():
            pl_module.log(f"val/return/{task}", res["mean_return"], on_epoch=True, batch_size=1)
        pl_module.log("val/return/mean", float(np.mean([r["mean_return"] for r in self.results.values()])),
                      on_epoch=True, batch_size=1)
