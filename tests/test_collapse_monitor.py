"""CollapseMonitor: a warning when a collapse signal stays below its floor (above its ceiling) for `patience`
steps."""

import warnings
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from torch.utils.data import DataLoader, TensorDataset

from jepa_lightning.eval import CollapseMonitor


class Logs(LightningModule):
    """Logs `step_values[name](step)` every step and `epoch_values[name]` per epoch (step = global step + 1)."""

    def __init__(self, step_values=None, epoch_values=None):
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)
        self.step_values, self.epoch_values = step_values or {}, epoch_values or {}

    def training_step(self, batch, batch_idx):
        for name, value in self.step_values.items():
            self.log(name, float(value(self.global_step + 1)))
        for name, value in self.epoch_values.items():
            self.log(name, float(value), on_step=False, on_epoch=True)
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit(module, monitor, max_steps, batches_per_epoch=4):
    data = DataLoader(TensorDataset(torch.randn(4 * batches_per_epoch, 4)), batch_size=4)
    trainer = Trainer(max_steps=max_steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=[monitor])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(module, data)
    return trainer, [str(w.message) for w in caught]


def collapse_warnings(messages):
    return [m for m in messages if m.startswith("collapse:")]


def test_a_collapsed_metric_warns_once_after_patience_steps_and_is_flagged(one_thread):
    monitor = CollapseMonitor(floors={"train/target_std": 0.01}, patience=5)
    trainer, messages = fit(Logs({"train/target_std": lambda s: 0.0}), monitor, max_steps=8)
    assert collapse_warnings(messages) == ["collapse: train/target_std = 0 < 0.01 for 5 steps (since step 1)"]
    assert float(trainer.callback_metrics["monitor/collapsed_train_target_std"]) == 1.0
    assert monitor.state_dict()["since"] == {"train/target_std": 1}


def test_a_healthy_metric_does_not_warn(one_thread):
    monitor = CollapseMonitor(floors={"train/target_std": 0.01}, patience=2)
    trainer, messages = fit(Logs({"train/target_std": lambda s: 0.5}), monitor, max_steps=6)
    assert collapse_warnings(messages) == [] and "monitor/collapsed_train_target_std" not in trainer.callback_metrics
    assert monitor.state_dict()["since"] == {}


def test_recovery_resets_the_streak(one_thread):
    # low at steps 1-3, recovered at 4, low again from 5: a streak of 4 is reached at step 8, not before
    value = {"train/pred_std": lambda s: 1.0 if s == 4 else 0.0}
    _, messages = fit(Logs(value), CollapseMonitor(floors={"train/pred_std": 0.01}, patience=4), max_steps=7)
    assert collapse_warnings(messages) == []
    _, messages = fit(Logs(value), CollapseMonitor(floors={"train/pred_std": 0.01}, patience=4), max_steps=8)
    assert collapse_warnings(messages) == ["collapse: train/pred_std = 0 < 0.01 for 4 steps (since step 5)"]


def test_epoch_metric_counts_steps_from_the_epoch_it_was_first_seen_low(one_thread):
    # RankMe of 1.0 logged per epoch (4 steps): first read at the end of epoch 0 (step 4), warns at step 7
    monitor = CollapseMonitor(floors={"train/rankme": 1.5}, patience=4)
    _, messages = fit(Logs(epoch_values={"train/rankme": 1.0}), monitor, max_steps=12)
    assert collapse_warnings(messages) == ["collapse: train/rankme = 1 < 1.5 for 4 steps (since step 4)"]


def test_a_metric_above_its_ceiling_warns_like_one_below_a_floor(one_thread):
    """The default ceiling: token targets that are one code per sample (share of their variance > 0.9)."""
    share = {"train/target_sample_share": lambda s: 0.4 if s < 3 else 0.97}
    _, messages = fit(Logs(share), CollapseMonitor(floors={}, patience=4), max_steps=8)
    assert collapse_warnings(messages) == ["collapse: train/target_sample_share = 0.97 > 0.9 for 4 steps (since step 3)"]
    _, messages = fit(Logs({"train/target_sample_share": lambda s: 0.6}), CollapseMonitor(patience=1), max_steps=4)
    assert collapse_warnings(messages) == []
    with pytest.raises(ValueError, match="train/rankme has both a floor and a ceiling"):
        CollapseMonitor(ceilings={"train/rankme": 100.0})


def test_missing_metrics_are_ignored_with_one_warning_naming_them(one_thread):
    monitor = CollapseMonitor(patience=1)  # default floors; only a healthy target std is logged
    _, messages = fit(Logs({"train/target_std": lambda s: 1.0}), monitor, max_steps=12)  # three epochs
    missing = [m for m in messages if "never logged" in m]
    assert len(missing) == 1 and "train/pred_std" in missing[0] and "train/rankme" in missing[0]
    assert "train/target_std" not in missing[0] and collapse_warnings(messages) == []


def test_state_dict_round_trip_continues_a_streak_after_resume():
    flagged = []
    module = SimpleNamespace(log=lambda name, value, **kw: flagged.append((name, value)))

    def check(monitor, step, value):
        trainer = SimpleNamespace(callback_metrics={"train/target_std": torch.tensor(value)}, global_step=step,
                                  is_global_zero=True)
        monitor.on_train_batch_end(trainer, module, None, None, 0)

    first = CollapseMonitor(floors={"train/target_std": 0.01}, patience=5)
    for step in (10, 11, 12):
        check(first, step, 0.004)
    state = first.state_dict()
    resumed = CollapseMonitor(floors={"train/target_std": 0.01}, patience=5)
    resumed.load_state_dict(state)
    assert resumed.state_dict() == state == {"since": {"train/target_std": 10}, "warned": {},
                                             "seen": ["train/target_std"], "missing_checked": False}
    check(resumed, 13, 0.004)
    with pytest.warns(UserWarning, match=r"collapse: train/target_std = 0.004 < 0.01 for 5 steps \(since step 10\)"):
        check(resumed, 14, 0.004)
    assert flagged == [("monitor/collapsed_train_target_std", 1.0)]
    check(resumed, 15, 0.2)  # recovery: flag back to 0, streak and warning reset
    assert flagged[-1] == ("monitor/collapsed_train_target_std", 0.0) and resumed.state_dict()["since"] == {}
    with pytest.raises(ValueError, match="patience"):
        CollapseMonitor(patience=0)
