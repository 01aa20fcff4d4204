"""`jepa-lightning slurm`: rendering, and a real 2-node SLURM run with preemption (tests/slurm_cluster.py).

The cluster test is skipped, with the reason, where SLURM cannot run (see `bash .ci/setup-slurm.sh`).
"""

import re
import subprocess
import sys
import time

import pytest
import torch
from conftest import ROOT, TINY, TINY_OVERRIDES
from lightning.pytorch import Callback
from slurm_cluster import SlurmCluster, slurm_unavailable_reason

from jepa_lightning.launch.slurm import SlurmJob


class Throttle(Callback):
    """Slows training down so that the test's preemption lands mid-run (used through --trainer.callbacks+=)."""

    def on_train_batch_end(self, *args) -> None:
        time.sleep(0.3)


def render(*args: str, cwd=ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "jepa_lightning", "slurm", *args], capture_output=True, text=True,
                          cwd=cwd)


def test_render_gpu_job_with_every_option(tmp_path):
    out = render("--config", TINY, "--nodes", "4", "--gpus-per-node", "8", "--partition", "gpu", "--account", "lab",
                 "--time", "72:00:00", "--cpus-per-task", "10", "--mem", "480G", "--qos", "high",
                 "--constraint", "a100", "--run-dir", str(tmp_path / "run"), "--", "--trainer.max_epochs=5")
    assert out.returncode == 0, out.stderr
    script = (tmp_path / "run" / "job.sbatch").read_text()
    for line in ["#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --partition=gpu", "#SBATCH --account=lab", "#SBATCH --time=72:00:00",
                 "#SBATCH --cpus-per-task=10", "#SBATCH --mem=480G", "#SBATCH --qos=high",
                 "#SBATCH --constraint=a100", "#SBATCH --signal=SIGUSR1@90", "#SBATCH --requeue",
                 "#SBATCH --open-mode=append", f"#SBATCH --output={tmp_path / 'run'}/slurm-%j.out",
                 "#SBATCH --job-name=ijepa-tiny", "export OMP_NUM_THREADS=10"]:
        assert line in script.splitlines(), line
    srun = next(line for line in script.splitlines() if line.startswith("srun "))
    for arg in [f"-m jepa_lightning fit --config {TINY}", "--trainer.num_nodes=4", "--trainer.devices=8",
                "--trainer.accelerator=gpu", f"--run_dir={tmp_path / 'run'}", "--trainer.max_epochs=5"]:
        assert arg in srun, arg
    assert "{{" not in script and "MASTER_ADDR" not in script
    assert subprocess.run(["bash", "-n", str(tmp_path / "run" / "job.sbatch")]).returncode == 0  # valid bash


def test_render_cpu_job_and_bad_arguments(tmp_path):
    job = SlurmJob(config=TINY, nodes=2, tasks_per_node=3, master_addr="127.0.0.1", run_dir=tmp_path)
    text = job.render()
    assert "#SBATCH --ntasks-per-node=3" in text and "--gpus-per-node" not in text
    assert "--trainer.devices=3" in text and "--trainer.accelerator=cpu" in text
    assert "export MASTER_ADDR=127.0.0.1" in text
    with pytest.raises(FileNotFoundError, match="no_such.yaml"):
        SlurmJob(config=tmp_path / "no_such.yaml")
    with pytest.raises(ValueError, match="one task per GPU"):
        SlurmJob(config=TINY, gpus_per_node=8, tasks_per_node=2)
    with pytest.raises(ValueError, match="--nodes"):
        SlurmJob(config=TINY, nodes=0)
    bad = tmp_path / "bad.sbatch"
    bad.write_text("#!/bin/bash\n{{ directives }}\n{{ nodez }}\n")
    with pytest.raises(KeyError, match=r"bad.sbatch: unknown placeholder \{\{ nodez \}\}"):
        job.render(bad)
    out = render("--config", TINY, "--nodes", "2", "--submit", "--template", str(bad))
    assert out.returncode != 0 and "nodez" in out.stderr


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = slurm_unavailable_reason()
    if reason:
        pytest.skip(reason)
    # 2 CPUs per node: the reference job and the preempted job run side by side (4 processes, 2 cores).
    with SlurmCluster(tmp_path_factory.mktemp("slurm"), cpus_per_node=2, cred_expire=5) as c:
        c.env["PYTHONPATH"] = str(ROOT / "tests")  # jobs inherit sbatch's environment: Throttle importable
        c.env["PYTHONWARNINGS"] = "ignore::DeprecationWarning"
        yield c


def submit(cluster, run_dir):
    fit_args = [*TINY_OVERRIDES, "--trainer.max_epochs=2", "--trainer.limit_train_batches=10",
                "--trainer.limit_val_batches=1", "--checkpoint.every_n_train_steps=1",
                "--trainer.callbacks+=test_slurm.Throttle"]
    out = render("--config", TINY, "--nodes", "2", "--tasks-per-node", "1", "--cpus-per-task", "1",
                 "--master-addr", "127.0.0.1", "--run-dir", str(run_dir), "--", *fit_args)
    assert out.returncode == 0, out.stderr
    return cluster.sbatch(run_dir / "job.sbatch")


def test_two_node_ddp_fit_survives_preemption_with_identical_weights(cluster, tmp_path):
    reference, preempted = submit(cluster, tmp_path / "ref"), submit(cluster, tmp_path / "pre")
    last = tmp_path / "pre" / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 180
    while not last.exists():  # training has started (a checkpoint per step)
        state = cluster.job_state(preempted)["JobState"]
        assert state in ("PENDING", "RUNNING") and time.monotonic() < deadline, cluster.job_report(
            cluster.job_state(preempted))
        time.sleep(0.1)
    cluster.signal(preempted, "USR1")  # what SLURM sends 90 s before the limit (--signal=SIGUSR1@90)
    ref_info = cluster.wait_for(reference, timeout=240)
    pre_info = cluster.wait_for(preempted, timeout=240)
    assert ref_info["NodeList"] == pre_info["NodeList"] == "n[1-2]"
    assert ref_info["Restarts"] == "0" and pre_info["Restarts"] == "1"
    log = next((tmp_path / "pre").glob("slurm-*.out")).read_text()
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in log and "GLOBAL_RANK: 1, MEMBER: 2/2" in log  # both ranks ran
    stop = re.search(r"SIGUSR1: saved .*last.ckpt at global step (\d+)", log)
    assert stop and 1 <= int(stop.group(1)) < 20, log[-3000:]
    assert f"requeueing SLURM job {preempted}" in log and "Resuming from" in log
    a = torch.load(tmp_path / "ref" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert a["global_step"] == b["global_step"] == 20
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), f"{k} differs after preemption + requeue"
