"""Tests of the real 2-node SLURM test cluster (tests/slurm_cluster.py): batch jobs, requeue, signals.

Skipped, with the reason, where SLURM cannot run here (see `bash .ci/setup-slurm.sh`).
"""

import os
import textwrap
import time
from pathlib import Path

import pytest
from slurm_cluster import SlurmCluster, slurm_unavailable_reason


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = slurm_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with SlurmCluster(tmp_path_factory.mktemp("slurm")) as c:
        yield c


def write_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/bash\n" + textwrap.dedent(body).lstrip())
    return path


def wait_for_files(*paths: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        assert time.monotonic() < deadline, f"never appeared: {[str(p) for p in paths if not p.exists()]}"
        time.sleep(0.1)


def test_two_node_job(cluster, tmp_path):
    script = write_script(tmp_path / "hello.sh", """
        #SBATCH --nodes=2 --ntasks-per-node=1
        #SBATCH --output=hello.out
        srun bash -c 'echo "$SLURM_PROCID $SLURM_NODEID $SLURMD_NODENAME"'
    """)
    job = cluster.sbatch(script)
    info = cluster.wait_for(job, timeout=30)
    assert info["ExitCode"] == "0:0"
    assert info["NodeList"] == "n[1-2]"
    lines = sorted((tmp_path / "hello.out").read_text().split("\n"))
    assert [line for line in lines if line] == ["0 0 n1", "1 1 n2"]


def test_requeue_running_job(cluster, tmp_path):
    # First run: record restart count 0, then block until requeued. Second run: record 1, finish.
    script = write_script(tmp_path / "requeue.sh", """
        #SBATCH --nodes=1 --requeue --open-mode=append
        #SBATCH --output=requeue.out
        echo "run ${SLURM_RESTART_COUNT:-0}" >> runs.txt
        if [ "${SLURM_RESTART_COUNT:-0}" -ge 1 ]; then exit 0; fi
        sleep 300
    """)
    job = cluster.sbatch(script)
    cluster.wait_running(job, timeout=20)
    wait_for_files(tmp_path / "runs.txt")  # the script itself runs, not just the job record
    cluster.requeue(job)
    info = cluster.wait_for(job, timeout=40)
    assert info["Restarts"] == "1"
    assert (tmp_path / "runs.txt").read_text().split("\n")[:2] == ["run 0", "run 1"]


def test_signal_reaches_srun_tasks(cluster, tmp_path):
    # Each task traps USR1, writes a marker and exits 0. The batch shell has no trap: had it received
    # the signal too, the job would end FAILED instead of COMPLETED.
    script = write_script(tmp_path / "sig.sh", """
        #SBATCH --nodes=2 --ntasks-per-node=1
        #SBATCH --output=sig.out
        srun bash -c 'trap "echo USR1 > usr1.$SLURM_PROCID; exit 0" USR1
                      touch ready.$SLURM_PROCID
                      while :; do sleep 0.1; done'
    """)
    job = cluster.sbatch(script)
    wait_for_files(tmp_path / "ready.0", tmp_path / "ready.1")
    cluster.signal(job, "USR1")
    info = cluster.wait_for(job, timeout=20)
    assert info["ExitCode"] == "0:0"
    for rank in (0, 1):
        assert (tmp_path / f"usr1.{rank}").read_text().strip() == "USR1"


def test_teardown_leaves_nothing_running(tmp_path):
    """A second, 1-node cluster, stopped while a job runs: no daemon or job process survives it."""
    reason = slurm_unavailable_reason()
    if reason:
        pytest.skip(reason)
    with SlurmCluster(tmp_path / "c", nodes=("solo",)) as c:
        script = write_script(tmp_path / "long.sh", """
            #SBATCH --output=long.out
            touch started
            sleep 300
        """)
        job = c.sbatch(script)
        c.wait_running(job)
        wait_for_files(tmp_path / "started")
        pids = [p.pid for p in c._procs.values()]
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), f"daemon {pid} still running"
    marker = f"SLURM_CONF={c.conf}".encode()
    leftovers = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit() and int(d.name) != os.getpid():
            try:
                if marker in (d / "environ").read_bytes().split(b"\0"):
                    leftovers.append((d / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                pass
    assert not leftovers


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
