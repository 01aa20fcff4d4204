"""Trainer options every method inherits: gradient accumulation and clipping, with step-based schedules that
count optimizer steps (not batches)."""

import math

import torch
from lightning.pytorch import Callback, Trainer
from test_ijepa import tiny_ijepa

from datamodules import DigitsDataModule
from jepa_lightning.optim import linear


class Watch(Callback):
    """Records the gradient norm before and after Lightning clips it, and each teacher update."""

    def __init__(self):
        self.raw, self.clipped, self.lrs, self.ema_steps = [], [], [], []

    def on_train_start(self, trainer, module):
        def after_step(opt, args, kwargs):  # the gradients the optimizer used (the closure ran inside step)
            self.clipped.append(self.norm(module))
            self.lrs.append(opt.param_groups[0]["lr"])

        trainer.optimizers[0].register_step_post_hook(after_step)
        update = module.teacher.update

        def counted(student, momentum):
            self.ema_steps.append((module.global_step, momentum))
            update(student, momentum)

        module.teacher.update = counted

    def on_before_optimizer_step(self, trainer, module, optimizer):  # Lightning clips after this hook
        self.raw.append(self.norm(module))

    @staticmethod
    def norm(module):
        grads = [p.grad for p in module.parameters() if p.grad is not None]
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])).item()


def fit(tmp_path, **trainer_kwargs):
    model, watch = tiny_ijepa(lr=1e-3, start_lr=1e-3, warmup=0.0, ema=(0.9, 1.0), ema_average_start=False), Watch()
    trainer = Trainer(max_epochs=1, limit_train_batches=8, accelerator="cpu", logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      limit_val_batches=0, callbacks=[watch], default_root_dir=tmp_path, **trainer_kwargs)
    trainer.fit(model, datamodule=DigitsDataModule(image_size=16, batch_size=16))
    return model, trainer, watch


def test_gradient_accumulation_schedules_count_optimizer_steps(tmp_path):
    model, trainer, watch = fit(tmp_path, accumulate_grad_batches=4)
    assert trainer.global_step == 2 and model.total_steps == 2  # 8 batches / 4
    assert len(watch.raw) == 2 and len(watch.ema_steps) == 2  # one teacher update per optimizer step
    # the EMA momentum runs over 2 optimizer steps (0.9 -> 1.0), read at the number of steps taken before
    assert watch.ema_steps == [(0, linear(0, 2, 0.9, 1.0)), (1, linear(1, 2, 0.9, 1.0))] == [(0, 0.9), (1, 0.95)]
    # cosine lr from 1e-3 to 1e-6 over 2 optimizer steps: the second step sees the half-way value
    half = 1e-6 + 0.5 * (1e-3 - 1e-6) * (1 + math.cos(math.pi * 0.5))
    assert len(watch.lrs) == 2 and all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(watch.lrs, [1e-3, half]))


def test_gradient_clipping_by_norm(tmp_path):
    _, trainer, watch = fit(tmp_path, gradient_clip_val=0.05, gradient_clip_algorithm="norm")
    assert trainer.global_step == 8
    assert all(r > 0.05 for r in watch.raw)  # the clip was active...
    assert all(c <= 0.05 * (1 + 1e-4) for c in watch.clipped)  # ...and the optimizer saw clipped gradients
