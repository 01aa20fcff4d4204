"""A warning when a collapse signal stays past its bound (below a floor, above a ceiling): the run is probably
learning nothing."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

__all__ = ["CollapseMonitor", "DEFAULT_CEILINGS", "DEFAULT_FLOORS"]

DEFAULT_FLOORS: dict[str, float] = {"train/target_std": 0.01, "train/pred_std": 0.01, "train/rankme": 1.5}
DEFAULT_CEILINGS: dict[str, float] = {"train/target_sample_share": 0.9}


class CollapseMonitor(L.Callback):
    """Watch collapse signals in `trainer.callback_metrics` and warn when one stays below its floor (or above
    its ceiling).

    After every training batch (and at the end of each training epoch, when epoch metrics such as
    `train/rankme` are computed) it reads the latest value of each metric in `floors`. A value below its floor
    starts a streak at that global step; the streak lasts while the latest value stays below (an epoch metric
    keeps its value until the next epoch's arrives) and ends when a value at or above the floor is read. When a
    streak has lasted `patience` optimizer steps it warns once (rank zero), e.g. ``collapse: train/target_std =
    0.004 < 0.01 for 100 steps (since step 412)``, and logs ``monitor/collapsed_<name>`` (``/`` in the name
    replaced by ``_``, e.g. ``monitor/collapsed_train_target_std``) = 1 every step until the metric recovers,
    then 0 once. A new streak after a recovery warns again.

    Default floors: ``train/target_std`` and ``train/pred_std`` 0.01 (per-dimension std over the batch, averaged
    over channels, of LayerNorm'd targets / predictions: about 1 when healthy), ``train/rankme`` 1.5 (RankMe of
    centred embeddings: 1 means everything on one line). Default ceiling: ``train/target_sample_share`` 0.9 (of
    token targets: the share of their variance that is one code per sample, the same at every token; near 1 the
    targets have lost position and local content, the collapse mode of video JEPAs at too high a learning rate;
    a random video ViT reads ~0.36 on the moving objects). These are conservative and can be overridden per
    recipe (`floors` / `ceilings` replace the defaults; include any metric a method logs, e.g. ``val/rankme``).
    A streak above a ceiling behaves as one below a floor (``... = 0.95 > 0.9 for 100 steps ...``).

    Methods log different sets of metrics: a missing metric is skipped, and at the end of the first training
    epoch one warning names every floor whose metric never appeared. The streaks and warning flags are in the
    callback's `state_dict`, so a resumed run continues them. Under DDP every process reads its own metrics
    (step metrics are per process unless logged with `sync_dist`); rank zero's decide the warning.
    """

    def __init__(self, floors: dict[str, float] | None = None, patience: int = 100,
                 ceilings: dict[str, float] | None = None) -> None:
        super().__init__()
        if patience < 1:
            raise ValueError(f"CollapseMonitor needs patience >= 1, got {patience}")
        self.floors = dict(DEFAULT_FLOORS if floors is None else floors)
        self.ceilings = dict(DEFAULT_CEILINGS if ceilings is None else ceilings)
        both = set(self.floors) & set(self.ceilings)
        if both:
            raise ValueError(f"CollapseMonitor: {', '.join(sorted(both))} has both a floor and a ceiling; give one")
        self.patience = int(patience)
        self.since: dict[str, int] = {}  # metric -> global step at which its current streak below the floor began
        self.warned: dict[str, bool] = {}  # metric -> warned (and flagged) during its current streak
        self.seen: set[str] = set()  # metrics that appeared at least once
        self.missing_checked = False  # the end-of-first-epoch check for never-seen metrics is done

    @staticmethod
    def flag_name(metric: str) -> str:
        return "monitor/collapsed_" + metric.replace("/", "_")

    def _check(self, trainer: L.Trainer, pl_module: L.LightningModule, log: bool) -> None:
        metrics = trainer.callback_metrics  # read on every rank: epoch metrics may gather across processes
        step = trainer.global_step
        bounds = [(name, bound, "<") for name, bound in self.floors.items()]
        bounds += [(name, bound, ">") for name, bound in self.ceilings.items()]
        for name, bound, side in bounds:
            if name not in metrics:
                continue
            self.seen.add(name)
            value = float(metrics[name])
            # NaN counts as healthy here: the method's non-finite guard handles it
            if value < bound if side == "<" else value > bound:
                since = self.since.setdefault(name, step)
                duration = step - since + 1
                if duration >= self.patience and not self.warned.get(name, False):
                    self.warned[name] = True
                    rank_zero_warn(f"collapse: {name} = {value:.4g} {side} {bound:g} for {duration} steps "
                                   f"(since step {since})")
                if self.warned.get(name, False) and log:
                    pl_module.log(self.flag_name(name), 1.0, on_step=True, on_epoch=False, rank_zero_only=True)
            elif name in self.since:
                del self.since[name]
                if self.warned.pop(name, False) and log:
                    pl_module.log(self.flag_name(name), 0.0, on_step=True, on_epoch=False, rank_zero_only=True)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self._check(trainer, pl_module, log=trainer.is_global_zero)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check(trainer, pl_module, log=False)  # epoch metrics are fresh here; flags are logged per step
        if not self.missing_checked:
            self.missing_checked = True
            missing = [name for name in [*self.floors, *self.ceilings] if name not in self.seen]
            if missing:
                rank_zero_warn(f"CollapseMonitor: {', '.join(missing)} never logged in the first epoch; "
                               f"not monitored until it appears (this method may not log it)")

    def state_dict(self) -> dict[str, Any]:
        return {"since": dict(self.since), "warned": dict(self.warned), "seen": sorted(self.seen),
                "missing_checked": self.missing_checked}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.since = {k: int(v) for k, v in state_dict.get("since", {}).items()}
        self.warned = {k: bool(v) for k, v in state_dict.get("warned", {}).items()}
        self.seen = set(state_dict.get("seen", ()))
        self.missing_checked = bool(state_dict.get("missing_checked", False))
