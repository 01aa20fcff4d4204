"""What a run learns of the unreadable samples its DataModule skipped: :class:`SkippedSampleWarning` (the
warning category of every such report) and the :class:`SkippedReport` callback that the CLI always adds.

The skipping itself (a dataset returns a marker instead of a sample it cannot read, the collate function and the
DataModule record it) lives with the DataModules (``datamodules/common.py``); this module knows a DataModule only
by its ``skipped_files`` and ``skipped_summary()``, so the CLI needs nothing from ``datamodules``.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.utilities.rank_zero import rank_zero_warn


class SkippedSampleWarning(UserWarning):
    """Warned in the main process when unreadable samples were skipped."""


class SkippedReport(L.Callback):
    """Once per epoch, how many unreadable files the DataModule skipped so far.

    At the end of every training epoch (which follows its validation) and of a ``validate``/``test`` run, if
    ``trainer.datamodule`` has ``skipped_files``: logs ``data/skipped_files`` (their number) and, when the
    number grew since the last report, warns one line (:class:`SkippedSampleWarning`, rank zero) with
    :meth:`~datamodules.common.JEPADataModule.skipped_summary`. Every rank logs its own count with
    ``sync_dist=False``: no collective call, so it cannot hang a distributed run; the logger writes rank zero's
    (the files of its shard).
    """

    def __init__(self) -> None:
        self._reported = 0

    def _report(self, trainer: L.Trainer, pl_module: L.LightningModule, when: str) -> None:
        datamodule = trainer.datamodule
        files = getattr(datamodule, "skipped_files", None)
        if files is None:
            return
        count = len(files)
        pl_module.log("data/skipped_files", float(count), on_step=False, on_epoch=True, sync_dist=False)
        if count > self._reported:
            summary = datamodule.skipped_summary() if hasattr(datamodule, "skipped_summary") else list(files)
            rank_zero_warn(f"{when}: {summary}", category=SkippedSampleWarning)
        self._reported = count

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer, pl_module, f"epoch {trainer.current_epoch}")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn == "validate" and not trainer.sanity_checking:  # during fit: the train epoch reports
            self._report(trainer, pl_module, "validate")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._report(trainer, pl_module, "test")
