"""I-JEPA as a LightningModule: the objective, the masks it draws, learning on embedded digits."""

import pytest
import torch
from lightning.pytorch import Callback, Trainer

from datamodules import DigitsDataModule
from jepa_lightning.eval import OnlineProbe
from jepa_lightning.masks import MultiBlockMask2D
from jepa_lightning.methods import IJEPA
from jepa_lightning.nn import TransformerPredictor, VisionTransformer


def tiny_ijepa(**kwargs) -> IJEPA:
    enc = VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=4)
    pred = TransformerPredictor(grid_size=(4, 4), embed_dim=32, predictor_dim=16, depth=1, num_heads=4)
    return IJEPA(enc, pred, masks=MultiBlockMask2D(min_keep=2), **kwargs)


def test_predictor_must_match_encoder():
    enc = VisionTransformer(img_size=16, patch_size=4, embed_dim=32, depth=1, num_heads=4)
    pred = TransformerPredictor(grid_size=(8, 8), embed_dim=32, predictor_dim=16, depth=1, num_heads=4)
    with pytest.raises(ValueError, match=r"grid_size=\[8, 8\].*grid_size=\[4, 4\]"):
        IJEPA(enc, pred)


def test_objective_uses_layer_normed_teacher_targets_at_target_positions():
    torch.manual_seed(0)
    model = tiny_ijepa(loss="l2")
    x = torch.randn(3, 3, 16, 16)
    m = model.masks(3, (4, 4), generator=torch.Generator().manual_seed(0))
    loss, targets, features, predictions = model.forward_loss(x, m)[:4]
    h = model.teacher(x)
    ln = torch.nn.functional.layer_norm(h, h.shape[-1:])
    b, t, k = m.targets.shape
    assert targets.shape == (b, t, k, 32) and features.shape == (3, 32)
    assert torch.allclose(targets[1, 2, 0], ln[1, m.targets[1, 2, 0]], atol=1e-6)
    assert torch.allclose(targets.mean(-1), torch.zeros(b, t, k), atol=1e-5)  # layer-normed per token
    pred = model.predictor(model.encoder(x, keep=m.context), m.context, m.targets)
    assert torch.allclose(loss, torch.nn.functional.mse_loss(pred, targets), atol=1e-6)
    torch.testing.assert_close(predictions, pred)
    # gradients reach the student and the predictor, never the teacher
    loss.backward()
    assert model.encoder.patch_embed.proj.weight.grad is not None
    assert model.predictor.mask_tokens.grad is not None
    assert all(p.grad is None for p in model.teacher.parameters())


class Losses(Callback):
    def __init__(self):
        self.values, self.context_sizes = [], []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.values.append(float(outputs["loss"]))
        self.context_sizes.append(batch["masks"].context.shape[1])


def test_short_fit_on_digits_lowers_loss_and_probes_above_chance(tmp_path):
    torch.manual_seed(0)
    model = tiny_ijepa(lr=1e-3, warmup=0.05)
    dm = DigitsDataModule(image_size=16, batch_size=64, num_workers=0)
    losses, probe = Losses(), OnlineProbe(num_classes=10, lr=1e-2)
    trainer = Trainer(max_epochs=4, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=[losses, probe],
                      default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    first, last = sum(losses.values[:8]) / 8, sum(losses.values[-8:]) / 8
    assert last < 0.5 * first, (first, last)
    assert min(losses.context_sizes) >= 2
    metrics = trainer.callback_metrics
    # chance is 0.1; 360 validation digits put 0.15 three standard errors above it
    assert metrics["val/knn_acc"] > 0.15 and metrics["val/probe_acc"] > 0.15
    # the teacher moved towards the student (EMA), but is not the student
    s, t = model.encoder.patch_embed.proj.weight, model.teacher.module.patch_embed.proj.weight
    assert not torch.equal(s, t)
    # the momentum follows the schedule of the last update (running-average start: min(0.996.., 1 - 1/k)) and
    # no share of the random init is left in the teacher
    assert metrics["train/ema"] == pytest.approx(model.ema_momentum(trainer.global_step), abs=1e-6)
    assert metrics["train/ema"] < 0.996 and metrics["train/ema_init_share"] == 0.0
    # the share of the target tokens' variance that is one code per image: a fraction, not the whole
    assert 0.0 < metrics["train/target_sample_share"] < 0.9
    # and the share position alone predicts: a fraction, and with the sample share at most the whole
    position = metrics["train/target_position_share"]
    assert 0.0 < position < 1.0 and position + metrics["train/target_sample_share"] <= 1.0 + 1e-6


def test_masks_are_drawn_per_step_on_the_batch_device_and_repeat_on_rerun(tmp_path):
    def run():
        torch.manual_seed(0)
        model = tiny_ijepa()
        rec = Recorder()
        trainer = Trainer(max_steps=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                          enable_progress_bar=False, enable_model_summary=False, callbacks=[rec],
                          limit_val_batches=0, default_root_dir=tmp_path)
        trainer.fit(model, datamodule=DigitsDataModule(image_size=16, batch_size=32))
        return rec.masks

    class Recorder(Callback):
        def __init__(self):
            self.masks = []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.masks.append(batch["masks"])

    a, b = run(), run()
    assert len(a) == 3
    assert not torch.equal(a[0].context, a[1].context)  # a new draw every step
    for x, y in zip(a, b):
        assert torch.equal(x.context, y.context) and torch.equal(x.targets, y.targets)
    m = a[0]
    assert m.targets.shape[:2] == (32, 4) and m.context.shape[0] == 32
    assert bool((m.context.diff(dim=1) > 0).all()) and int(m.context.max()) < 16


def test_unreadable_batch_is_skipped():
    assert tiny_ijepa().training_step(None, 0) is None


def test_frozen_probes_report_pretrained_next_to_the_random_init(tmp_path):
    """validate -> linear, kNN and centred RankMe of the teacher, the context encoder and the module's initial
    network (snapshot at setup, before a checkpoint is restored), logged, printed and written as JSON."""
    import json

    from jepa_lightning.eval import FrozenProbes

    torch.manual_seed(0)
    model = tiny_ijepa(lr=1e-3, warmup=0.05)
    init = {k: v.clone() for k, v in model.teacher.module.state_dict().items()}
    probes = FrozenProbes(num_classes=10)
    trainer = Trainer(max_steps=6, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=[probes],
                      default_root_dir=tmp_path, num_sanity_val_steps=0, limit_val_batches=0)
    dm = DigitsDataModule(image_size=16, batch_size=64, num_workers=0)
    trainer.fit(model, datamodule=dm)
    assert probes.results == {}                               # fit alone does not run the offline probes
    for k, v in probes.initial.state_dict().items():          # the snapshot is the initialisation, not the trained net
        torch.testing.assert_close(v, init[k])
    trainer.limit_val_batches = 1.0
    metrics = trainer.validate(model, datamodule=dm, verbose=False)[0]
    assert set(probes.results) == {"random_init", "teacher", "encoder"}
    for name, scores in probes.results.items():
        assert 0.1 < scores["linear_acc"] <= 1 and 0.1 < scores["knn_acc"] <= 1 and scores["rankme"] > 1.5
        assert metrics[f"frozen/{name}/linear_acc"] == pytest.approx(scores["linear_acc"])
    assert json.loads((tmp_path / "frozen_probes.json").read_text()) == probes.results
    assert "random init" in probes.table(1, 1) and "context encoder" in probes.table(1, 1)
