"""TrainingFLOPs: counts the real training step exactly, sums it over the run, and continues the sum on resume."""

import pytest
import torch
import torch.nn.functional as F
import torch.utils.flop_counter as fc
from conftest import tiny_args
from lightning.pytorch import Callback
from torch.utils.flop_counter import FlopCounterMode

from jepa_lightning.cli import JEPACLI
from jepa_lightning.eval import TrainingFLOPs, flop_counter, step_flops
from jepa_lightning.masks import MultiBlockMask2D
from jepa_lightning.methods import IJEPA
from jepa_lightning.nn import TransformerPredictor, VisionTransformer


class RecordBatches(Callback):
    def __init__(self):
        self.batches = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.batches.append(dict(batch))  # images, labels and this step's masks


def fit(tmp_path, *extra, callbacks=(), first=None):
    cli = JEPACLI(args=tiny_args(tmp_path, "--trainer.limit_val_batches=0", "--trainer.log_every_n_steps=1",
                                 *extra)[1:], run=False)
    if first is not None:
        cli.trainer.callbacks.insert(0, first)
    cli.trainer.callbacks.extend(callbacks)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return cli


def the_callback(cli) -> TrainingFLOPs:
    return next(c for c in cli.trainer.callbacks if isinstance(c, TrainingFLOPs))


def test_counted_step_equals_forward_backward_by_hand(tmp_path):
    flops, rec = TrainingFLOPs(measure_steps=None), RecordBatches()
    cli = fit(tmp_path, "--trainer.max_steps=3", first=flops, callbacks=[rec])  # first: the probe is not counted
    assert len(flops.measured) == len(rec.batches) == 3
    by_hand = []
    for batch in rec.batches:
        with flop_counter() as counter:
            loss = cli.model.objective(batch)[0]
            loss.backward()
        by_hand.append(counter.get_total_flops())
    cli.model.zero_grad()
    assert flops.measured == by_hand == [step_flops(cli.model, b) for b in rec.batches]
    assert min(by_hand) > 0


def test_cpu_attention_is_counted_like_the_cuda_kernels():
    q, k, v = (torch.randn(2, 4, 16, 8, requires_grad=True) for _ in range(3))
    with FlopCounterMode(display=False) as plain:
        F.scaled_dot_product_attention(q, k, v).sum().backward()
    with flop_counter() as ours:
        F.scaled_dot_product_attention(q, k, v).sum().backward()
    assert plain.get_total_flops() == 0  # torch has no formula for the CPU flash kernel
    expected = fc.sdpa_flop_count(q.shape, k.shape, v.shape) + fc.sdpa_backward_flop_count(
        q.shape, q.shape, k.shape, v.shape)
    assert ours.get_total_flops() == expected > 0


def test_flops_grow_with_tokens():
    def mean_flops(img: int) -> float:
        torch.manual_seed(0)
        grid = img // 4
        enc = VisionTransformer(img_size=img, patch_size=4, embed_dim=32, depth=2, num_heads=4)
        pred = TransformerPredictor(grid_size=(grid, grid), embed_dim=32, predictor_dim=16, depth=1, num_heads=4)
        model = IJEPA(enc, pred, masks=MultiBlockMask2D(min_keep=2))
        batch = {"image": torch.randn(4, 3, img, img)}
        counts = []
        for seed in range(4):
            batch["masks"] = model.sample_masks(batch, torch.Generator().manual_seed(seed))
            counts.append(step_flops(model, batch))
        assert all(p.grad is None for p in model.parameters())  # step_flops leaves gradients alone
        return sum(counts) / len(counts)

    small, large = mean_flops(16), mean_flops(32)
    assert small > 0 and large >= 3 * small  # 4x the tokens: >= 4x the linear FLOPs, more for attention


@pytest.mark.parametrize("measure_steps", [None, 1, 2])
def test_total_is_the_sum_over_steps_and_is_logged(tmp_path, measure_steps):
    flops = TrainingFLOPs(measure_steps=measure_steps)
    cli = fit(tmp_path, "--trainer.max_steps=4", callbacks=[flops])
    assert flops.batches == 4
    if measure_steps is None:
        assert len(flops.measured) == 4 and flops.total_flops == sum(flops.measured)
    else:
        assert len(flops.measured) == measure_steps
        assert flops.total_flops == pytest.approx(sum(flops.measured) + (4 - measure_steps) * flops.flops_per_batch,
                                                  rel=1e-12)
    if measure_steps == 1:
        assert flops.total_flops == 4 * flops.measured[0]
    metrics = cli.trainer.callback_metrics
    assert metrics["train/flops_total"].item() == pytest.approx(flops.total_flops, rel=1e-6)
    assert metrics["train/flops_per_step"].item() > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(cli.trainer.logger.log_dir).Reload()
    totals = [e.value for e in events.Scalars("train/flops_total")]
    assert len(totals) == 4 and totals == sorted(totals)
    assert totals[-1] == pytest.approx(flops.total_flops, rel=1e-6)


@pytest.mark.parametrize("measure_steps", [2, None])
def test_resumed_run_continues_the_sum(tmp_path, measure_steps):
    spec = f"--flops.measure_steps={'null' if measure_steps is None else measure_steps}"
    common = ["--trainer.limit_train_batches=3", spec]  # the CLI's always-present callback
    full = the_callback(fit(tmp_path / "a", "--trainer.max_epochs=2", *common))
    first = the_callback(fit(tmp_path / "b", "--trainer.max_epochs=1", *common))
    resumed_cli = JEPACLI(args=tiny_args(tmp_path / "b", "--trainer.max_epochs=2", "--trainer.limit_val_batches=0",
                                         *common))  # reruns the command: resumes from last.ckpt
    resumed = the_callback(resumed_cli)
    assert resumed_cli.trainer.global_step == 6 and first.batches == 3
    assert full.batches == resumed.batches == 6
    assert 0 < first.total_flops < resumed.total_flops
    assert resumed.total_flops == full.total_flops
    assert resumed.measured == full.measured


def test_measure_steps_is_checked():
    with pytest.raises(ValueError, match="measure_steps"):
        TrainingFLOPs(measure_steps=0)


def test_state_roundtrip_and_world_size_change_remeasures():
    a = TrainingFLOPs()
    a.total_flops, a.batches, a.measured, a.world_size = 10.0, 3, [3, 4], 1
    b = TrainingFLOPs()
    b.load_state_dict(a.state_dict())
    assert b.state_dict() == a.state_dict()

    class FakeTrainer:
        world_size = 2

    b.on_train_start(FakeTrainer(), None)
    assert b.measured == [] and b.world_size == 2 and b.total_flops == 10.0 and b.batches == 3
