"""FSDP2 on CPU: 2 processes over gloo under Lightning's ModelParallelStrategy (Lightning's `fsdp` strategy
refuses CPU). Encoder, predictor and EMA teacher are sharded alike, the teacher moves shard by shard, the
checkpoint is a sharded directory, an interrupted run resumed from it ends with the same weights, activation
checkpointing of every block changes no weight, and bf16-mixed (with checkpointing) trains with fp32 losses and
teacher."""

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from conftest import ROOT, tiny_args

from jepa_lightning.eval import read_encoder_state

# FSDP2 with Lightning's own strategy, as documented in the README ...
MODEL_PARALLEL = ["--trainer.strategy=lightning.pytorch.strategies.ModelParallelStrategy",
                  "--trainer.strategy.data_parallel_size=2", "--trainer.strategy.tensor_parallel_size=1",
                  "--trainer.devices=2"]
# ... and with ours (jepa_lightning.distributed.FSDP2Strategy), which sizes the mesh to all processes itself
FSDP2_STRATEGY = ["--trainer.strategy=fsdp2", "--trainer.devices=2"]

# argv: out_dir, stop_after_epochs (0: never), then the CLI's fit arguments. Every rank writes what it saw
# to rank{r}.json (checks are recorded, not asserted, so that one failing rank cannot hang the other); rank 0
# saves the full (gathered) state dict and the online probe's state to final.pt.
SCRIPT = textwrap.dedent('''
    import json, sys, torch
    from lightning.pytorch import Callback
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
    from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor
    from jepa_lightning.cli import JEPACLI
    from jepa_lightning.eval import OnlineProbe
    from jepa_lightning.targets import ema_update

    out, stop = sys.argv[1], int(sys.argv[2])

    def shards(net):
        return [p.to_local().detach().clone() for p in net.parameters()]

    class Inspect(Callback):
        def __init__(self):
            self.errors, self.ema_checked, self.losses, self.loss_dtypes = [], 0, [], set()

        def on_train_start(self, trainer, m):
            nets = {"encoder": m.encoder, "predictor": m.predictor, "teacher": m.teacher.module}
            for net_name, net in nets.items():
                for name, p in net.named_parameters():
                    if not (isinstance(p, DTensor) and p.placements == (Shard(0),)
                            and p.device_mesh.size() == 2 and p.to_local().dtype == torch.float32):
                        self.errors.append(f"{net_name}.{name} not fp32 Shard(0) over 2 ranks: {p!r:.80}")
            for (name, t), s in zip(m.teacher.module.named_parameters(), m.encoder.parameters()):
                if t.placements != s.placements or t.to_local().shape != s.to_local().shape:
                    self.errors.append(f"teacher/student shards differ at {name}")
            # a student sharded otherwise (replicated) is refused before anything moves
            replicated = torch.nn.ParameterList(distribute_tensor(p.full_tensor().detach(), p.device_mesh,
                                                                  [Replicate()]) for p in m.encoder.parameters())
            try:
                ema_update(m.teacher.module, replicated, 0.5)
                self.mismatch = "no error"
            except ValueError as err:
                self.mismatch = str(err)
            update = m.teacher.update
            def recording_update(student, momentum):  # the momentum the method really uses
                self.momentum = momentum
                update(student, momentum)
            m.teacher.update = recording_update

        def on_train_batch_start(self, trainer, m, batch, batch_idx):
            self.t0 = shards(m.teacher.module)

        def on_train_batch_end(self, trainer, m, outputs, batch, batch_idx):
            t1, s1 = shards(m.teacher.module), shards(m.encoder)
            for i, (a, s, b) in enumerate(zip(self.t0, s1, t1)):  # t1 = m t0 + (1 - m) s1 on each shard
                if b.dtype != torch.float32 or not torch.equal(b, torch.lerp(a, s, 1.0 - self.momentum)):
                    self.errors.append(f"step {trainer.global_step}: teacher shard {i} is not the EMA update")
            self.ema_checked += 1
            self.losses.append(float(outputs["loss"]))
            self.loss_dtypes.add(str(outputs["loss"].dtype))

        def on_train_epoch_end(self, trainer, m):
            if stop and trainer.current_epoch + 1 >= stop:  # interrupted, as a crash would, at an epoch's end
                trainer.should_stop = True

        def on_train_end(self, trainer, m):
            full = get_model_state_dict(m, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            probe = next(cb for cb in trainer.callbacks if isinstance(cb, OnlineProbe))
            if trainer.global_rank == 0:
                torch.save({"state_dict": full, "probe": probe.state_dict()["head"]}, f"{out}/final.pt")
            report = {"errors": self.errors, "ema_checked": self.ema_checked, "losses": self.losses,
                      "loss_dtypes": sorted(self.loss_dtypes), "world": trainer.world_size,
                      "global_step": trainer.global_step, "mismatch": self.mismatch,
                      "first_local": shards(m.encoder)[0].shape[0]}
            with open(f"{out}/rank{trainer.global_rank}.json", "w") as f:
                json.dump(report, f)

    class CLI(JEPACLI):
        def before_fit(self):
            super().before_fit()  # auto-resume from last.ckpt
            self.trainer.callbacks.append(Inspect())

    CLI(args=["fit", *sys.argv[3:]])
''')


def start(tmp_path, name: str, *extra: str, stop: int = 0, strategy=FSDP2_STRATEGY) -> subprocess.Popen:
    """Start a 2-process FSDP2 fit of the tiny recipe in tmp_path/name (independent runs go concurrently: most
    of a run's time is two interpreters starting up)."""
    out = tmp_path / name
    out.mkdir(exist_ok=True)
    script = tmp_path / "fsdp_fit.py"
    if not script.exists():  # never rewritten under a run that is starting
        script.write_text(SCRIPT)
    args = tiny_args(out, *strategy, "--trainer.limit_val_batches=1", *extra)[1:]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # 2 processes on 2 cores: one thread each
    proc = subprocess.Popen([sys.executable, str(script), str(out), str(stop), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env, start_new_session=True)
    proc.out = out
    return proc


def finish(proc: subprocess.Popen) -> tuple[dict, dict, str]:
    """Wait for a run: (rank-0 report, rank 0's final.pt, output), after checking both ranks' reports."""
    try:
        log, _ = proc.communicate(timeout=300)
    finally:
        kill(proc)
    assert proc.returncode == 0, log[-3000:]
    r0, r1 = (json.loads((proc.out / f"rank{r}.json").read_text()) for r in (0, 1))
    for r in (r0, r1):
        assert r["world"] == 2 and r["errors"] == [], r["errors"][:5]
        assert r["ema_checked"] >= 1 and r["global_step"] == r0["global_step"]
    return r0, torch.load(proc.out / "final.pt", weights_only=True), log


COMMON = ("--trainer.max_epochs=2", "--trainer.limit_train_batches=3")
CHECKPOINT_BLOCKS = ("--model.init_args.encoder.init_args.checkpoint_blocks=all",
                     "--model.init_args.predictor.init_args.checkpoint_blocks=all")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The uninterrupted run, the first half of the interrupted one, the uninterrupted one with activation
    checkpointing, and a bf16 run (checkpointing too), side by side."""
    tmp = tmp_path_factory.mktemp("fsdp")
    procs = {"full": start(tmp, "a", *COMMON), "stopped": start(tmp, "b", *COMMON, stop=1),
             "checkpointed": start(tmp, "c", *COMMON, *CHECKPOINT_BLOCKS),
             "bf16": start(tmp, "bf16", *CHECKPOINT_BLOCKS, "--trainer.precision=bf16-mixed", "--trainer.max_epochs=1",
                           "--trainer.limit_train_batches=2", strategy=MODEL_PARALLEL)}
    try:
        return tmp, {k: finish(p) for k, p in procs.items()}
    finally:
        for p in procs.values():
            kill(p)


def kill(proc: subprocess.Popen) -> None:
    """End a run that is still going (a failed check elsewhere): its rank 0 and the rank 1 it launched."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def test_fsdp2_shards_student_and_teacher_alike_and_ema_updates_each_shard(runs):
    tmp, done = runs
    report, final, _ = done["full"]
    # checked in every step on both ranks (Inspect): all parameters fp32 Shard(0) DTensors over 2 ranks,
    # teacher and student sharded alike, each teacher shard = lerp(old teacher shard, new student shard)
    assert report["ema_checked"] == report["global_step"] == 6
    assert report["first_local"] == 16  # patch_embed.proj.weight [32, 3, 4, 4]: half on each rank
    assert "sharded differently at parameter 'patch_embed.proj.weight'" in report["mismatch"]
    assert all(torch.isfinite(torch.tensor(report["losses"])))
    ckpt = tmp / "a" / "ckpt" / "last.ckpt"
    assert ckpt.is_dir() and {"meta.pt", ".metadata", "__0_0.distcp", "__1_0.distcp"} <= {
        p.name for p in ckpt.iterdir()}
    # published atomically (FSDP2Strategy): a link swapped onto the slot just written, the other slot older
    assert ckpt.is_symlink() and os.readlink(ckpt) in (".last.ckpt.0", ".last.ckpt.1")
    # the sharded checkpoint reads back (export, frozen teachers) as the full teacher weights
    teacher = read_encoder_state(ckpt)
    for k, v in teacher.items():
        assert torch.equal(v, final["state_dict"][f"teacher.module.{k}"]), k
    assert not torch.equal(final["state_dict"]["teacher.module.patch_embed.proj.weight"],
                           final["state_dict"]["encoder.patch_embed.proj.weight"])


def test_fsdp2_resume_from_sharded_last_ckpt_equals_uninterrupted_run(runs):
    tmp, done = runs
    _, full, _ = done["full"]
    assert done["stopped"][0]["global_step"] == 3
    # the same command again: resumes from the sharded last.ckpt of the interrupted run
    resumed, final, log = finish(start(tmp, "b", *COMMON))
    assert "Resuming from" in log and resumed["global_step"] == 6
    assert full["state_dict"].keys() == final["state_dict"].keys()
    for k, v in full["state_dict"].items():  # model, teacher (and, through them, optimizer and schedules)
        assert torch.equal(v, final["state_dict"][k]), f"{k} differs after resume"
    for k, v in full["probe"].items():  # the online probe's head, restored from the checkpoint's callbacks
        assert torch.equal(v, final["probe"][k]), f"probe {k} differs after resume"


def test_fsdp2_with_activation_checkpointing_ends_with_the_same_weights(runs):
    _, done = runs
    (_, full, _), (report, checkpointed, _) = done["full"], done["checkpointed"]
    assert report["global_step"] == 6 and full["state_dict"].keys() == checkpointed["state_dict"].keys()
    for k, v in full["state_dict"].items():  # each block's forward recomputed inside its FSDP unit's backward
        assert torch.allclose(v, checkpointed["state_dict"][k], rtol=0, atol=1e-6), f"{k} differs with checkpointing"


def test_fsdp2_bf16_mixed_trains_with_fp32_loss_and_teacher(runs):
    report, final, _ = runs[1]["bf16"]
    assert report["loss_dtypes"] == ["torch.float32"] and report["global_step"] == 2
    assert all(torch.isfinite(torch.tensor(report["losses"])))
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in final["state_dict"].values())
