"""A NaN/inf loss never trains on silently: it stops the run naming the step, or skips the step if asked."""

import os
import random
import subprocess
import sys

import pytest
import torch
from conftest import BIN, ROOT, tiny_args
from lightning.pytorch import Trainer
from test_ijepa import tiny_ijepa

from datamodules import DigitsDataModule


def poisoned(step: int, **kwargs):
    """The tiny I-JEPA whose loss is NaN once: on the batch that would make optimizer step `step` (0-based)."""
    model = tiny_ijepa(**kwargs)
    objective = model.objective
    model.calls = 0

    def maybe_nan(batch):
        loss, targets, features = objective(batch)[:3]
        model.calls += 1
        return (loss * float("nan") if model.calls == step + 1 else loss), targets, features

    model.objective = maybe_nan
    return model


def fit(model, tmp_path, steps=4):
    trainer = Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                      default_root_dir=tmp_path)
    trainer.fit(model, datamodule=DigitsDataModule(image_size=16, batch_size=32))
    return trainer


def test_nonfinite_loss_stops_the_run_naming_the_step(tmp_path):
    with pytest.raises(FloatingPointError, match=r"non-finite loss \(nan\) at global step 2.*nonfinite=skip"):
        fit(poisoned(2), tmp_path)


def test_nonfinite_loss_can_skip_the_step(tmp_path):
    """The skipped batch leaves no trace: 5 batches made 4 optimizer steps, and the optimizer's and the schedule's
    step counts say 4 too (as the EMA's and weight decay's schedules, keyed by the global step)."""
    model = poisoned(2, nonfinite="skip")
    with pytest.warns(UserWarning, match="global step 2.*skipped"):
        trainer = fit(model, tmp_path, steps=4)
    assert model.calls == 5 and trainer.global_step == 4
    optimizer = trainer.optimizers[0]
    assert {int(state["step"]) for state in optimizer.state.values()} == {4}
    assert trainer.lr_scheduler_configs[0].scheduler.last_epoch == 4
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_nonfinite_option_is_checked():
    with pytest.raises(ValueError, match="nonfinite"):
        tiny_ijepa(nonfinite="ignore")


def test_bf16_mixed_on_cpu_keeps_loss_and_ema_in_fp32(tmp_path):
    from lightning.pytorch import Callback

    class Dtypes(Callback):
        def __init__(self):
            self.loss, self.pred = [], []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.loss.append(outputs["loss"].dtype)

    model, rec = tiny_ijepa(), Dtypes()
    trainer = Trainer(max_steps=3, accelerator="cpu", precision="bf16-mixed", logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      limit_val_batches=0, callbacks=[rec], default_root_dir=tmp_path)
    seen = []
    hook = model.encoder.transformer.blocks[0].attn.qkv.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # the matmuls really run in bf16 under autocast
        model.encoder(torch.randn(2, 3, 16, 16))
    hook.remove()
    assert seen == [torch.bfloat16]
    trainer.fit(model, datamodule=DigitsDataModule(image_size=16, batch_size=32))
    assert rec.loss == [torch.float32] * 3
    assert all(p.dtype == torch.float32 for p in model.teacher.parameters())
    assert all(torch.isfinite(p).all() for p in model.parameters())


KILL_SCRIPT = '''
import os, signal, sys
from lightning.pytorch import Callback
from jepa_lightning.cli import JEPACLI

class SignalAt(Callback):
    def __init__(self, step, how):
        self.step, self.how = step, how
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step != self.step:
            return
        if self.how == "kill":  # every rank, after the step's last collective
            os.kill(os.getpid(), signal.SIGKILL)
        elif self.how == "save":  # killed inside the next step's checkpoint save, once its bytes are written
            os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)
        elif trainer.global_rank == 0:  # preemption warning reaching one rank only
            os.kill(os.getpid(), signal.SIGUSR1)

cli = JEPACLI(args=sys.argv[3:], run=False)
cli.trainer.callbacks.append(SignalAt(int(sys.argv[1]), sys.argv[2]))
cli.trainer.fit(cli.model, datamodule=cli.datamodule)
'''


def _kill_test_run(*args: str, procs: int):
    """The CLI (or a script) as a subprocess; DDP ranks get one thread each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if procs > 1 else None
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)


def _kill_test_args(procs: int) -> list[str]:
    common = ["--trainer.max_epochs=3", "--trainer.limit_train_batches=4", "--trainer.limit_val_batches=1",
              "--checkpoint.every_n_train_steps=1"]
    return common + (["--trainer.strategy=ddp", f"--trainer.devices={procs}"] if procs > 1 else [])


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The uninterrupted run's final checkpoint for 1 and 2 processes, made once for every kill case."""
    done: dict[int, dict] = {}

    def reference(procs: int) -> dict:
        if procs not in done:
            out = tmp_path_factory.mktemp(f"uninterrupted{procs}")
            full = _kill_test_run(str(BIN / "jepa-lightning"), *tiny_args(out, *_kill_test_args(procs)), procs=procs)
            assert full.returncode == 0, full.stderr[-2000:]
            done[procs] = torch.load(out / "ckpt" / "last.ckpt", weights_only=True)
        return done[procs]

    return reference


@pytest.mark.parametrize("where,procs,how", [("epoch_end", 1, "kill"), ("random", 1, "kill"), ("random", 1, "save"),
                                            ("random", 2, "kill"), ("random", 2, "usr1")])
def test_kill_9_at_a_random_step_then_rerun_resumes_to_identical_weights(tmp_path, uninterrupted, where, procs, how):
    """Single process, and 2-process DDP (every rank killed): the rerun resumes mid-epoch exactly. `usr1`: a
    preemption warning (SIGUSR1) reaching rank 0 only stops both ranks at the same step after saving. `save`:
    killed while writing a checkpoint, the previous `last.ckpt` is intact (checkpoints are published atomically)."""
    common = _kill_test_args(procs)
    kill_step = 4 if where == "epoch_end" else random.choice([s for s in range(2, 12) if s % 4])  # mid-epoch

    def run(*cmd):
        return _kill_test_run(*cmd, procs=procs)

    exe = str(BIN / "jepa-lightning")
    script = tmp_path / "kill.py"
    script.write_text(KILL_SCRIPT)
    killed = run(sys.executable, str(script), str(kill_step), how, *tiny_args(tmp_path / "b", *common)[1:])
    before = torch.load(tmp_path / "b" / "ckpt" / "last.ckpt", weights_only=True)["global_step"]
    if how == "kill":
        assert killed.returncode == -9, killed.stderr[-2000:]  # SIGKILL: no chance to clean up
        assert 1 <= before <= kill_step
    elif how == "save":
        assert killed.returncode == -9, killed.stderr[-2000:]
        assert (tmp_path / "b" / "ckpt" / ".last.ckpt.partial").is_file()  # the interrupted write
        assert before == kill_step  # (this callback runs after the step's own save)
    else:  # saved at the next step boundary, every rank stopped there with EX_TEMPFAIL
        assert killed.returncode == 75, killed.stderr[-2000:]
        assert f"SIGUSR1: saved {tmp_path / 'b' / 'ckpt' / 'last.ckpt'} at global step {kill_step + 1}" in killed.stderr
        assert before == kill_step + 1
    again = run(exe, *tiny_args(tmp_path / "b", *common))
    assert again.returncode == 0, again.stderr[-2000:]
    assert "Resuming from" in again.stderr + again.stdout
    a = uninterrupted(procs)
    b = torch.load(tmp_path / "b" / "ckpt" / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 12
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), f"{k} differs after kill -9 + resume (step {before})"


def test_sharded_checkpoint_directories_are_published_atomically(tmp_path):
    """`last.ckpt` of a sharded save is a link swapped onto a complete slot: a save that dies half-way leaves
    the link on the previous checkpoint; the next save reuses the dead slot."""
    from jepa_lightning.checkpointing import next_slot, publish_directory

    last = tmp_path / "last.ckpt"

    def save(step: int, die: bool = False):
        slot = next_slot(last)
        if slot.exists():
            import shutil
            shutil.rmtree(slot)
        slot.mkdir()
        (slot / "shard0").write_text(f"step {step}")
        if die:  # killed before the second shard and the publish
            return
        (slot / "shard1").write_text(f"step {step}")
        publish_directory(last, slot)

    save(1)
    assert last.is_symlink() and (last / "shard1").read_text() == "step 1"
    save(2)
    assert (last / "shard1").read_text() == "step 2" and os.readlink(last) == ".last.ckpt.1"
    save(3, die=True)
    assert (last / "shard0").read_text() == (last / "shard1").read_text() == "step 2"  # intact, complete
    save(4)
    assert (last / "shard1").read_text() == "step 4" and os.readlink(last) == ".last.ckpt.0"
    legacy = tmp_path / "old.ckpt"  # a plain directory from an earlier save is replaced by the link
    legacy.mkdir()
    slot = next_slot(legacy)
    slot.mkdir()
    publish_directory(legacy, slot)
    assert legacy.is_symlink()
