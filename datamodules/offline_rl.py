"""Offline reinforcement-learning data (TD-JEPA, ACT-JEPA): episodes on disk, batched transitions or
sub-trajectories.

The episode format is defined in :mod:`jepa_lightning.rl.episodes` (``observation [T+1, D]``, ``action
[T, A]``, optional ``terminal``, ``physics``, ``pixels``, ``reward``).

Batches (dicts, ``B`` = batch size):

- ``mode="transitions"``: ``"obs"`` ``[B, obs_dim]``, ``"action"`` ``[B, act_dim]``, ``"next_obs"``
  ``[B, obs_dim]``, ``"terminal"`` float ``[B]``; with ``physics``: ``"physics"`` and ``"next_physics"``
  ``[B, P]`` (float64); with ``pixels=True``: ``"pixels"``/``"next_pixels"`` uint8 ``[B, C, H, W]``;
  ``"reward"`` ``[B]`` when the files have it.
- ``mode="chunks"`` (action chunking, ACT): ``"obs"`` ``[B, obs_dim]`` at step ``t``, ``"actions"``
  ``[B, H, act_dim]`` = actions ``t .. t+H-1``, ``"future_obs"`` ``[B, H, obs_dim]`` = observations
  ``t+1 .. t+H``, ``"valid"`` bool ``[B, H]`` (``False`` past the episode's end: those steps are padded by
  repeating the last action / observation and must be ignored by losses); ``"pixels"`` of step ``t``
  with ``pixels=True``.

Episodes are read once at construction into contiguous tensors (offline RL datasets of states are small;
pixels are kept as uint8). A file that cannot be read (truncated, not an archive) is skipped and reported;
a readable file whose content breaks the format (missing key, mismatched lengths, dimensions differing
from the other episodes, non-finite values) is an error naming the file, key and shapes, because it means
the dataset is wrong, not damaged.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn
from torch.utils.data import Dataset

from jepa_lightning.rl.episodes import (  # noqa: F401  (re-exported: the format is part of this module's API)
    EPISODE_SUFFIXES,
    STEP_KEYS,
    EpisodeFormatError,
    list_episodes,
    read_episode,
    read_metadata,
    write_episode,
    write_metadata,
)

from .common import JEPADataModule, SkippedSampleWarning


class Episodes:
    """Episodes concatenated into contiguous tensors: ``data[key]`` holds every episode's rows one after the
    other; ``starts[e]`` is the row of episode ``e``'s first observation and ``steps[e]`` its length ``T``
    (its observations are rows ``starts[e] .. starts[e] + T``; its actions are padded with one zero row at
    the end so every per-step key has the same row indexing)."""

    def __init__(self, episodes: list[dict[str, np.ndarray]], files: list[str]) -> None:
        if not episodes:
            raise ValueError("no readable episode")
        keys = set(episodes[0])
        first = files[0]
        for ep, path in zip(episodes[1:], files[1:]):
            if set(ep) != keys:
                raise EpisodeFormatError(
                    f"{path}: keys {sorted(ep)} differ from {first}'s {sorted(keys)}; every episode of a dataset"
                    f" must have the same keys")
            for key in keys:
                if ep[key].shape[1:] != episodes[0][key].shape[1:]:
                    raise EpisodeFormatError(
                        f"{path}: '{key}' has per-step shape {ep[key].shape[1:]}, but {first} has "
                        f"{episodes[0][key].shape[1:]}")
        self.files = files
        self.steps = torch.tensor([len(ep["action"]) for ep in episodes])
        self.starts = torch.cumsum(torch.cat([torch.zeros(1, dtype=torch.long), self.steps[:-1] + 1]), 0)
        self.data: dict[str, torch.Tensor] = {}
        for key in keys:
            rows = [_pad_one(ep[key]) if key in STEP_KEYS else ep[key] for ep in episodes]
            self.data[key] = torch.from_numpy(np.concatenate(rows))

    def __len__(self) -> int:
        return len(self.files)

    @property
    def num_transitions(self) -> int:
        return int(self.steps.sum())

    def step_rows(self) -> torch.Tensor:
        """Row index of every step ``(e, t)``, ``t < T_e`` (the rows that have an action)."""
        return torch.cat([s + torch.arange(int(n)) for s, n in zip(self.starts.tolist(), self.steps.tolist())])

    def episode_end(self, rows: torch.Tensor) -> torch.Tensor:
        """For step rows, the row of their episode's final observation."""
        ends = self.starts + self.steps
        return ends[torch.searchsorted(self.starts, rows, right=True) - 1]


def _pad_one(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, np.zeros_like(x[:1])])


class TransitionDataset(Dataset):
    """Transitions or chunks of a set of :class:`Episodes` (see the module docstring for the keys); fetches a
    whole batch with one indexing operation per key."""

    def __init__(self, episodes: Episodes, mode: Literal["transitions", "chunks"] = "transitions",
                 chunk: int = 1, pixels: bool = False) -> None:
        if mode not in ("transitions", "chunks"):
            raise ValueError(f"mode must be 'transitions' or 'chunks', got {mode!r}")
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        if pixels and "pixels" not in episodes.data:
            raise ValueError(f"pixels=True but the episodes have no 'pixels' key (e.g. {episodes.files[0]}); "
                             f"collect with pixels on or set pixels=false")
        self.episodes, self.mode, self.chunk, self.pixels = episodes, mode, chunk, pixels
        self.rows = episodes.step_rows()
        self.ends = episodes.episode_end(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {k: v[0] for k, v in self.__getitems__([index]).items()}

    def __getitems__(self, keys: list[int] | list[tuple[int, int]]) -> dict[str, torch.Tensor]:
        index = torch.tensor([k[0] if isinstance(k, tuple) else k for k in keys])
        rows, ends, data = self.rows[index], self.ends[index], self.episodes.data
        if self.mode == "transitions":
            batch = {"obs": data["observation"][rows], "action": data["action"][rows],
                     "next_obs": data["observation"][rows + 1], "terminal": data["terminal"][rows].float()}
            if "physics" in data:
                batch["physics"], batch["next_physics"] = data["physics"][rows], data["physics"][rows + 1]
            if "reward" in data:
                batch["reward"] = data["reward"][rows]
            if self.pixels:
                batch["pixels"] = data["pixels"][rows].permute(0, 3, 1, 2)
                batch["next_pixels"] = data["pixels"][rows + 1].permute(0, 3, 1, 2)
            return batch
        offsets = torch.arange(self.chunk)
        step = rows[:, None] + offsets  # [B, H] rows of the chunk's steps
        valid = step < ends[:, None]  # a step with an action
        last = (ends - 1)[:, None].expand_as(step)
        act_rows = torch.where(valid, step, last)
        obs_rows = torch.where(valid, step + 1, ends[:, None].expand_as(step))
        batch = {"obs": data["observation"][rows], "actions": data["action"][act_rows],
                 "future_obs": data["observation"][obs_rows], "valid": valid}
        if self.pixels:
            batch["pixels"] = data["pixels"][rows].permute(0, 3, 1, 2)
        return batch


class OfflineRLDataModule(JEPADataModule):
    """Offline RL episodes from a folder (``path``) or an embedded dataset generated on first use
    (``embedded``, see :mod:`jepa_lightning.rl.embedded`), split by episode into train/val with a fixed seed.

    ``mode="transitions"`` gives single transitions (TD-JEPA); ``mode="chunks"`` gives a step with the next
    ``chunk`` actions and observations (ACT-JEPA). Observation/action sizes (``obs_dim``, ``act_dim``) and the
    folder's ``metadata`` are known at construction, so a recipe or callback can read them before ``setup``.
    """

    def __init__(
        self,
        path: str | None = None,
        embedded: str | None = "walker",
        mode: Literal["transitions", "chunks"] = "transitions",
        chunk: int = 1,
        pixels: bool = False,
        val_fraction: float = 0.1,
        max_episodes: int | None = None,
        split_seed: int = 0,
        batch_size: int = 256,
        num_workers: int = 0,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        drop_last: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory,
                         persistent_workers=persistent_workers, drop_last=drop_last, seed=seed)
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        if path is None:
            if embedded is None:
                raise ValueError("give the episodes' folder as `path`, or an `embedded` dataset name")
            from jepa_lightning.rl.embedded import embedded_dataset  # generated (and cached) on first use
            path = embedded_dataset(embedded)
        self.path, self.mode, self.chunk, self.pixels = path, mode, chunk, pixels
        self.metadata = read_metadata(path)
        files = list_episodes(path)
        if max_episodes is not None:
            files = files[:max_episodes]
        episodes, readable = [], []
        for f in files:
            try:
                episodes.append(read_episode(f))
                readable.append(f)
            except EpisodeFormatError:
                raise
            except (OSError, ValueError, KeyError) as err:
                self.skipped_files[f] = f"{type(err).__name__}: {err}"
                self.skipped_count += 1
        if self.skipped_files:
            rank_zero_warn(f"{type(self).__name__}: {self.skipped_summary()}", category=SkippedSampleWarning)
        if not episodes:
            raise FileNotFoundError(f"none of the {len(files)} episode files in '{path}' could be read: "
                                    f"{self.skipped_summary()}")
        order = np.random.default_rng(split_seed).permutation(len(episodes))
        n_val = int(round(val_fraction * len(episodes))) if len(episodes) > 1 else 0
        val_ids, train_ids = sorted(order[:n_val].tolist()), sorted(order[n_val:].tolist())
        self.train_episodes = Episodes([episodes[i] for i in train_ids], [readable[i] for i in train_ids])
        self.val_episodes = (Episodes([episodes[i] for i in val_ids], [readable[i] for i in val_ids])
                             if val_ids else None)
        self.obs_dim = int(self.train_episodes.data["observation"].shape[1])
        self.act_dim = int(self.train_episodes.data["action"].shape[1])

    def _dataset(self, episodes: Episodes | None) -> TransitionDataset | None:
        return None if episodes is None else TransitionDataset(episodes, self.mode, self.chunk, self.pixels)

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is None:
            self.train_dataset = self._dataset(self.train_episodes)
            self.val_dataset = self._dataset(self.val_episodes)
            self.train_eval_dataset = self.train_dataset
            rank_zero_info(self.describe())

    def describe(self) -> str:
        val = self.val_episodes
        return (f"{type(self).__name__}: '{self.path}', {len(self.train_episodes)} train episodes "
                f"({self.train_episodes.num_transitions} steps), {len(val) if val else 0} val episodes "
                f"({val.num_transitions if val else 0} steps); obs_dim={self.obs_dim}, act_dim={self.act_dim},"
                f" keys {sorted(self.train_episodes.data)}, mode={self.mode}"
                + (f", chunk={self.chunk}" if self.mode == "chunks" else ""))

    def __repr__(self) -> str:
        return self.describe()
