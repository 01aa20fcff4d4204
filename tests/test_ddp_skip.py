"""Under DDP a step that one rank cannot take is skipped by every rank together: a batch with no readable sample
on rank 1, or a non-finite loss on rank 0 with `nonfinite=skip`; and a batch of one sample on rank 1 skips the
online probe's step (its BatchNorm needs two) on both ranks. Two CPU processes (gloo) in a subprocess with a
timeout: a hang fails the test instead of blocking the suite; both ranks end at the same step with equal weights."""

import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT

SCRIPT = '''
import sys, torch
sys.path.insert(0, {tests!r})
from lightning.pytorch import Trainer, seed_everything
from jepa_lightning.eval import OnlineProbe
from test_ijepa import tiny_ijepa
from datamodules import DigitsDataModule

mode, out = sys.argv[1], sys.argv[2]
seed_everything(0)
model = tiny_ijepa(nonfinite="skip")
objective, transfer = model.objective, model.on_after_batch_transfer
model.batches = 0

def on_after_batch_transfer(batch, dataloader_idx):
    model.batches += 1
    if mode == "unreadable" and model.global_rank == 1 and model.batches == 2:
        batch = None  # every sample of rank 1's second batch unreadable, as the DataModule's collate reports it
    if mode == "one_sample" and model.global_rank == 1 and model.batches == 2:
        batch = {{k: v[:1] for k, v in batch.items()}}  # one readable sample: too few for the probe's BatchNorm
    return transfer(batch, dataloader_idx)

def poisoned(batch):
    loss, targets, features = objective(batch)[:3]
    if mode == "nonfinite" and model.global_rank == 0 and model.batches == 3:
        loss = loss * float("nan")
    return loss, targets, features

model.on_after_batch_transfer, model.objective = on_after_batch_transfer, poisoned
trainer = Trainer(max_steps=4, accelerator="cpu", devices=2, strategy="ddp", logger=False,
                  enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                  limit_val_batches=0, callbacks=[OnlineProbe(num_classes=10)])
trainer.fit(model, datamodule=DigitsDataModule(image_size=16, batch_size=16))
state = {{k: v.detach().clone() for k, v in model.state_dict().items()}}
steps = {{int(s["step"]) for s in trainer.optimizers[0].state.values()}}
torch.save({{"state": state, "global_step": trainer.global_step, "batches": model.batches, "optimizer_steps": steps,
            "schedule": trainer.lr_scheduler_configs[0].scheduler.last_epoch}}, f"{{out}}/rank{{model.global_rank}}.pt")
'''


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["unreadable", "nonfinite", "one_sample"])
def test_a_step_one_rank_cannot_take_is_skipped_by_both(tmp_path, mode):
    script = tmp_path / "ddp_skip.py"
    script.write_text(SCRIPT.format(tests=str(ROOT / "tests")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    try:
        run = subprocess.run([sys.executable, str(script), mode, str(tmp_path)], capture_output=True, text=True,
                             cwd=ROOT, env=env, timeout=300)
    except subprocess.TimeoutExpired as err:
        pytest.fail(f"2-process DDP run with a {mode} step hung: {err}")
    assert run.returncode == 0, run.stderr[-3000:]
    skipped = mode != "one_sample"
    assert ("optimizer step skipped on every rank" in run.stderr) == skipped
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for r in ranks:  # one batch skipped: 5 batches made 4 optimizer steps, and the optimizer and schedule agree
        assert (r["global_step"], r["batches"], r["optimizer_steps"], r["schedule"]) == (4, 4 + skipped, {4}, 4)
    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][key]), f"{key} differs between the ranks"
