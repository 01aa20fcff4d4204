"""Shared DataModule machinery for every modality: skip-and-report of unreadable samples and a
``LightningDataModule`` base that builds the DataLoaders. It also re-exports what is defined in
``jepa_lightning`` (which must not import ``datamodules``) because the CLI and the RL sets need it too:
:class:`SkippedSampleWarning` and the :class:`SkippedReport` callback (:mod:`jepa_lightning.skipped`), and the
generate-once cache of embedded data sets, :func:`embedded_root`, :func:`generate_once` and
:class:`GeneratedOnce` (:mod:`jepa_lightning.generated`).

How an unreadable file travels (works the same with ``num_workers=0`` and with worker processes):

1. A dataset built on :class:`SkipUnreadable` catches the read/decode error of one sample, logs the
   file once per process, and returns a :class:`Skipped` marker instead of a sample.
2. :func:`collate_skipping` drops the markers, default-collates the good samples and attaches the
   markers to the batch under ``batch["_skipped"]`` (only when there are any). If every sample of
   the batch was unreadable the batch is ``{"_skipped": [...]}`` alone, so the report still reaches
   the main process.
3. :meth:`JEPADataModule.on_before_batch_transfer` (main process) pops ``"_skipped"``, records the
   files in ``skipped_files``, warns about new ones (:class:`SkippedSampleWarning`), and turns a
   batch with nothing left into ``None``.

Lightning 2.6 on a ``None`` batch: the training loop warns "train_dataloader yielded None" and
skips ``on_train_batch_start`` and ``training_step`` (no optimizer step, ``global_step`` does not
move), but still calls ``on_after_batch_transfer`` and ``on_train_batch_end`` with ``batch=None``.
The validation/test/predict loops have no such check: ``*_step`` is called with ``None``. So
methods return ``None`` from their steps for a ``None`` batch, and batch hooks/callbacks pass it by.

Code that iterates a DataLoader outside the Trainer (e.g. a frozen probe) calls
``batch = datamodule.on_before_batch_transfer(batch, 0)`` on each batch and skips ``None``.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import lightning as L
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from torch.utils.data import default_collate as _default_collate

from jepa_lightning.generated import GeneratedOnce, embedded_root, generate_once
from jepa_lightning.seeding import mix_seed
from jepa_lightning.skipped import SkippedReport, SkippedSampleWarning

log = logging.getLogger(__name__)

__all__ = [
    "SKIPPED_KEY",
    "EpochSampler",
    "GeneratedOnce",
    "JEPADataModule",
    "SeededSamples",
    "SkipUnreadable",
    "Skipped",
    "SkippedReport",
    "SkippedSampleWarning",
    "collate_skipping",
    "embedded_root",
    "generate_once",
    "list_class_folders",
]


def list_class_folders(folder: str, kind: str = "image", example: str = "image.jpg") -> list[str]:
    """Sorted class sub-folder names of ``folder`` (hidden entries ignored); a clear error naming ``folder``
    when it does not exist or has no class sub-folders (``kind``/``example`` word it: image, video, ...)."""
    expected = f"expected one sub-folder per class (e.g. {os.path.join(folder, '<class>', example)})"
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{kind} folder '{folder}' does not exist; {expected}")
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise FileNotFoundError(f"no class sub-folders in {kind} folder '{folder}'; {expected}")
    return classes


class EpochSampler(DistributedSampler):
    """Training order and augmentation as pure functions of (seed, epoch, index), sharded over ranks.

    Yields ``(index, sample_seed)`` keys; a dataset receiving such a key draws its augmentation from
    ``sample_seed`` (see :class:`SeededSamples`). The permutation of an epoch depends on (seed, epoch) only and
    is dealt to ``num_replicas`` ranks like :class:`~torch.utils.data.DistributedSampler` (padded by repeating
    its head so every rank gets ``ceil(N / num_replicas)`` samples), so a run resumed from a checkpoint, or run
    with a different number of workers, sees exactly the same samples with exactly the same augmentations.
    It is a ``DistributedSampler`` so that Lightning uses it as it is instead of wrapping it. Lightning calls
    ``set_epoch`` each epoch; without it each pass advances the epoch by itself.
    """

    def __init__(self, num_samples: int, shuffle: bool = True, seed: int = 0, epoch: int = 0,
                 num_replicas: int = 1, rank: int = 0, resume_offset: Callable[[], int] | None = None) -> None:
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        self.dataset_size, self.shuffle, self.seed, self.epoch = int(num_samples), shuffle, int(seed), int(epoch)
        self.num_replicas, self.rank, self.drop_last = int(num_replicas), int(rank), False
        self.num_samples = math.ceil(self.dataset_size / self.num_replicas)  # per rank
        self.total_size = self.num_samples * self.num_replicas
        # Asked once, when the first pass starts: how many of this rank's samples of that epoch were already
        # consumed (a run resumed mid-epoch continues where it stopped instead of replaying the first batches).
        self._resume_offset = resume_offset

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        epoch = self.epoch
        self.epoch += 1
        if self.shuffle:
            g = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
            order = torch.randperm(self.dataset_size, generator=g).tolist()
        else:
            order = list(range(self.dataset_size))
        order = (order * math.ceil(self.total_size / max(len(order), 1)))[:self.total_size]
        order = order[self.rank::self.num_replicas]
        if self._resume_offset is not None:
            order = order[self._resume_offset():]
            self._resume_offset = None
        for i in order:
            yield i, mix_seed(self.seed, epoch, i)


class SeededSamples(Dataset):
    """Wraps a dataset so that a key ``(index, seed)`` loads ``dataset[index]`` with the torch RNG seeded by
    ``seed`` (global RNG state restored afterwards); a plain integer key loads as usual."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: int | tuple[int, int]) -> Any:
        if isinstance(key, tuple):
            index, seed = key
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(seed)  # CPU only: seeding every device costs ~0.5 ms
                return self.dataset[index]
        return self.dataset[key]

    def __getitems__(self, keys: list[Any]) -> Any:
        """A dataset that fetches whole batches (``__getitems__``, e.g. in-memory rows) gets the keys as they
        are, ``(index, seed)`` pairs included, and seeds what it needs itself; others load sample by sample."""
        fetch = getattr(self.dataset, "__getitems__", None)
        return fetch(keys) if fetch is not None else [self[k] for k in keys]

SKIPPED_KEY = "_skipped"
_LOGGED_SKIPS: set[str] = set()  # files already logged by this process (each worker has its own copy)


class Skipped(NamedTuple):
    """Marker a dataset returns in place of a sample it could not read."""

    path: str
    reason: str


class SkipUnreadable(Dataset):
    """Base for file-backed datasets whose samples may be unreadable.

    Subclasses implement ``__len__``, ``sample_path(index)`` (names the file in reports),
    ``read(index)`` (I/O and decoding only) and ``prepare(raw, index)`` (transforms; returns the
    sample dict). Only the errors in ``unreadable_errors`` raised by ``read`` are skipped; an error
    in ``prepare`` is a bug and propagates.
    """

    unreadable_errors: tuple[type[BaseException], ...] = (OSError, ValueError, EOFError, SyntaxError)

    def sample_path(self, index: int) -> str:
        raise NotImplementedError

    def read(self, index: int) -> Any:
        raise NotImplementedError

    def prepare(self, raw: Any, index: int) -> dict[str, Any]:
        raise NotImplementedError

    def read_or_skip(self, index: int) -> Any:
        """``read(index)``, or a :class:`Skipped` marker when it raises one of ``unreadable_errors`` (logged once
        per file and process). The marker names the error's own file (``err.path`` / ``err.filename``, e.g. a
        sample's broken side file) when it has one, else ``sample_path(index)``."""
        try:
            return self.read(index)
        except self.unreadable_errors as err:
            path = getattr(err, "path", None) or getattr(err, "filename", None) or self.sample_path(index)
            skipped = Skipped(str(path), f"{type(err).__name__}: {err}")
            if skipped.path not in _LOGGED_SKIPS:
                _LOGGED_SKIPS.add(skipped.path)
                log.warning("skipping unreadable sample %s (%s)", skipped.path, skipped.reason)
            return skipped

    def __getitem__(self, index: int) -> dict[str, Any] | Skipped:
        raw = self.read_or_skip(index)
        return raw if isinstance(raw, Skipped) else self.prepare(raw, index)


def collate_skipping(samples: Sequence[Any] | dict[str, Any]) -> Any:
    """Default-collate the readable samples; attach the :class:`Skipped` markers as ``"_skipped"``. A batch
    dict (from a dataset whose ``__getitems__`` fetches the whole batch at once) passes through."""
    if isinstance(samples, dict):
        return samples
    skipped = [s for s in samples if isinstance(s, Skipped)]
    good = [s for s in samples if s is not None and not isinstance(s, Skipped)]
    if not skipped:
        return _default_collate(good)
    if not good:
        return {SKIPPED_KEY: skipped}
    batch = _default_collate(good)
    if not isinstance(batch, dict):
        raise TypeError(f"collate_skipping needs dict samples to attach '{SKIPPED_KEY}', got {type(good[0])}")
    batch[SKIPPED_KEY] = skipped
    return batch


class JEPADataModule(L.LightningDataModule):
    """Builds the DataLoaders from datasets a subclass assigns in ``setup``.

    Subclasses set ``train_dataset``, ``val_dataset`` and optionally ``test_dataset``,
    ``predict_dataset`` and ``train_eval_dataset`` (the training split with the evaluation
    transform, for frozen probes). Batches are dicts; see the module docstring for how unreadable
    samples are skipped and reported. ``skipped_files`` maps each skipped file to its error;
    ``skipped_count`` counts every skipped sample load (a file skipped in two epochs counts twice).
    """

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 8,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        drop_last: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.drop_last = drop_last
        self.seed = seed
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None
        self.predict_dataset: Dataset | None = None
        self.train_eval_dataset: Dataset | None = None
        self.skipped_files: dict[str, str] = {}
        self.skipped_count = 0

    # ----------------------------------------------------------------- loaders
    def _loader(self, dataset: Dataset | None, split: str, *, shuffle: bool, drop_last: bool) -> DataLoader:
        if dataset is None:
            raise RuntimeError(
                f"{type(self).__name__} has no {split} dataset: call setup() first"
                f" (the Trainer does) or use a split this DataModule provides"
            )
        if drop_last and len(dataset) < self.batch_size:  # type: ignore[arg-type]
            raise ValueError(
                f"{type(self).__name__}: the {split} split has {len(dataset)} samples, fewer than"  # type: ignore[arg-type]
                f" batch_size={self.batch_size}, and drop_last=True would yield no batch;"
                f" lower batch_size or set drop_last=False"
            )
        workers = self.num_workers
        sampler = None
        if shuffle:  # seeded order + per-sample augmentation seeds; starts at the (resumed) epoch
            trainer = self.trainer
            epoch = trainer.current_epoch if trainer is not None else 0
            shards = (trainer.distributed_sampler_kwargs if trainer is not None else None) or {}
            sampler = EpochSampler(len(dataset), shuffle=True, seed=self.seed, epoch=epoch,  # type: ignore[arg-type]
                                   num_replicas=shards.get("num_replicas", 1), rank=shards.get("rank", 0),
                                   resume_offset=self._consumed_in_resumed_epoch)
            dataset = SeededSamples(dataset)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            num_workers=workers,
            collate_fn=collate_skipping,
            pin_memory=self.pin_memory and torch.accelerator.is_available(),
            drop_last=drop_last,
            persistent_workers=self.persistent_workers and workers > 0,
        )

    def _consumed_in_resumed_epoch(self) -> int:
        """Samples of this rank's share of the current epoch already trained on, when the Trainer resumed
        mid-epoch (else 0). Every rank consumed the same number of batches."""
        trainer = self.trainer
        if trainer is None:
            return 0
        loop = trainer.fit_loop
        mid_epoch = loop.epoch_progress.total.processed < loop.epoch_progress.total.started
        batches = loop.epoch_loop.batch_progress.current.completed if mid_epoch else 0
        return batches * self.batch_size

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_dataset, "train", shuffle=True, drop_last=self.drop_last)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_dataset, "val", shuffle=False, drop_last=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_dataset, "test", shuffle=False, drop_last=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.predict_dataset, "predict", shuffle=False, drop_last=False)

    def train_eval_dataloader(self) -> DataLoader:
        """The training split with the evaluation transform, in order: for frozen probes."""
        if self.train_eval_dataset is None:
            self.setup("fit")
        return self._loader(self.train_eval_dataset, "train_eval", shuffle=False, drop_last=False)

    # --------------------------------------------------------------- reporting
    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Pop ``"_skipped"`` and record it; a batch with no readable sample becomes ``None``."""
        if not isinstance(batch, dict) or SKIPPED_KEY not in batch:
            return batch
        batch = dict(batch)
        self._record_skipped(batch.pop(SKIPPED_KEY))
        return batch or None

    def _record_skipped(self, skipped: Sequence[Skipped]) -> None:
        self.skipped_count += len(skipped)
        new = {}
        for path, reason in skipped:
            if path not in self.skipped_files:
                self.skipped_files[path] = new[path] = reason
        if new:
            listed = "; ".join(f"{p} ({r})" for p, r in new.items())
            rank_zero_warn(
                f"skipped {len(new)} unreadable sample(s): {listed}"
                f" [{len(self.skipped_files)} unreadable file(s) so far]",
                category=SkippedSampleWarning,
            )

    def skipped_summary(self, first: int = 5) -> str:
        """One line: how many files were skipped and the first few of them."""
        if not self.skipped_files:
            return "no unreadable samples skipped"
        head = ", ".join(list(self.skipped_files)[:first])
        more = f" and {len(self.skipped_files) - first} more" if len(self.skipped_files) > first else ""
        return f"{len(self.skipped_files)} unreadable file(s) skipped ({self.skipped_count} sample loads): {head}{more}"

    def teardown(self, stage: str) -> None:
        if self.skipped_files:
            rank_zero_warn(f"{type(self).__name__}: {self.skipped_summary()}", category=SkippedSampleWarning)
