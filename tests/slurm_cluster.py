"""A real (not mocked) multi-node SLURM cluster on this one host, for tests.

`SlurmCluster(workdir)` starts its own munged, one slurmctld and one slurmd per node (``slurmd -N n1`` ...),
every daemon on 127.0.0.1 with its own free port, spool, pid and log files under `workdir`. Nothing
system-wide is read or written: commands find our config through ``SLURM_CONF`` (see `cluster.env`) and
slurm finds our munged through ``AuthInfo=socket=...``. Needs root (slurmd runs jobs as their user) and the
binaries from ``bash .ci/setup-slurm.sh``; `slurm_unavailable_reason()` says why a test must skip otherwise.

Requires a slurmd built with multiple-slurmd support (``slurmd -N``), which the Debian packages are.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal as _signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "scontrol", "sinfo", "squeue", "scancel")
SETUP_HINT = "run `bash .ci/setup-slurm.sh` (needs root + apt-get)"
# Job states after which a job will not run again by itself (REQUEUED/PENDING/COMPLETING are transitional).
TERMINAL_STATES = frozenset({
    "COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED",
    "BOOT_FAIL", "DEADLINE",
})


def _which(name: str) -> str | None:
    # Daemons live in /usr/sbin, which is not on every PATH (e.g. non-login shells of non-root users).
    return shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")


def slurm_unavailable_reason() -> str | None:
    """None when a private cluster can be started here, else a human-readable reason to skip."""
    for name in (*DAEMONS, *CLIENTS):
        if _which(name) is None:
            return f"{name} not installed: {SETUP_HINT}"
    if os.geteuid() != 0:
        # slurmd must setuid() to each job's user and slurmctld/munged refuse foreign key/state ownership.
        return "SLURM test cluster needs root (slurmd runs jobs as their user); run the tests as root"
    return None


def _free_ports(n: int) -> list[int]:
    """n distinct TCP ports free on 127.0.0.1 right now (sockets held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError as e:
        return f"<{path}: {e.strerror}>"
    return "\n".join(text[-lines:]) or "<empty>"


def parse_scontrol_record(line: str) -> dict[str, str]:
    """Parse one ``scontrol show ... -o`` line (``Key=value Key2=value with spaces ...``) into a dict.

    Values may contain '=' (``TRES=cpu=2,node=2``) and even spaces, so a new pair starts only at a space
    followed by a key-looking token and '='.
    """
    pairs = re.findall(r"(?:^|\s)([A-Za-z][\w/:.-]*)=(.*?)(?=\s+[A-Za-z][\w/:.-]*=|\s*$)", line.strip())
    return dict(pairs)


class SlurmError(RuntimeError):
    pass


class SlurmCluster:
    """Context manager: a private SLURM cluster of `nodes` (each `cpus_per_node` CPUs) on 127.0.0.1.

    `cred_expire` (AuthInfo, seconds, Slurm's minimum is 5) is how long step credentials stay valid, and
    a requeued job becomes eligible again only ``cred_expire + 1`` s after the requeue: it sets the
    speed of every requeue. 10 s leaves slack for step launches on a loaded 2-core CI machine.
    """

    def __init__(self, workdir: Path, nodes: Iterable[str] = ("n1", "n2"), cpus_per_node: int = 1,
                 start_timeout: float = 60.0, cred_expire: int = 10):
        self.workdir = Path(workdir).resolve()
        self.nodes = tuple(nodes)
        self.cpus_per_node = cpus_per_node
        self.start_timeout = start_timeout
        self.cred_expire = max(5, cred_expire)
        self.conf = self.workdir / "slurm.conf"
        self.logdir = self.workdir / "log"
        self._procs: dict[str, subprocess.Popen] = {}
        self._sockdir: str | None = None
        # Every slurm command (and every daemon, hence every job and step) sees our config.
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        for var in [k for k in self.env if k.startswith(("SLURM_", "SBATCH_", "SRUN_", "SALLOC_"))]:
            if var != "SLURM_CONF":  # e.g. when the test suite itself runs inside a SLURM job
                del self.env[var]

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> SlurmCluster:
        reason = slurm_unavailable_reason()
        if reason:
            raise SlurmError(reason)
        try:
            self._write_config()
            self._start_munged()
            self._start_slurmctld()
            for node in self.nodes:
                self._start_slurmd(node)
            self._wait_nodes_idle()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def _write_config(self) -> None:
        for d in ("state", "spool", "log", "munge", "jobs"):
            (self.workdir / d).mkdir(parents=True, exist_ok=True)
        # munged insists the key is owned by its user and not readable by others, and that no parent
        # directory of its socket is writable by others (sticky /tmp is accepted).
        (self.workdir / "munge").chmod(0o755)  # 0755: jobs of any user can reach the socket
        self.munge_key = self.workdir / "munge" / "munge.key"
        if not self.munge_key.exists():
            fd = os.open(self.munge_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(1024))
        # AF_UNIX paths are limited to 107 bytes; deep tmp dirs fall back to a short private dir.
        sock = self.workdir / "munge" / "munge.socket"
        if len(str(sock)) > 100:
            self._sockdir = tempfile.mkdtemp(prefix="munge-")
            sock = Path(self._sockdir) / "munge.socket"
        self.munge_socket = sock

        ctld_port, *node_ports = _free_ports(1 + len(self.nodes))
        host = socket.gethostname().split(".")[0]  # slurmctld must recognise itself in SlurmctldHost
        w = self.workdir
        node_lines = "\n".join(
            f"NodeName={n} NodeAddr=127.0.0.1 NodeHostname={host} Port={p} CPUs={self.cpus_per_node} "
            "RealMemory=100 State=UNKNOWN"
            for n, p in zip(self.nodes, node_ports))
        self.conf.write_text(f"""\
# Generated by tests/slurm_cluster.py: a private cluster, all daemons on 127.0.0.1.
ClusterName=jepatest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmUser=root
SlurmdUser=root
# Our own munged. cred_expire (default 120 s) also delays a requeued job's restart by cred_expire + 1 s.
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket},cred_expire={self.cred_expire}
StateSaveLocation={w}/state
SlurmdSpoolDir={w}/spool/%n
SlurmctldPidFile={w}/state/slurmctld.pid
SlurmdPidFile={w}/spool/slurmd-%n.pid
SlurmctldLogFile={w}/log/slurmctld.log
SlurmdLogFile={w}/log/slurmd-%n.log
SlurmctldDebug=info
SlurmdDebug=info
# No systemd/cgroups in containers: track processes by parent pid, no task binding, no accounting.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# Trust the CPU counts written here, whatever this host has.
SlurmdParameters=config_overrides
# Requeue support; finished jobs stay visible to `scontrol show job` for an hour.
JobRequeue=1
MinJobAge=3600
ReturnToService=2
# Short timeouts so that kills and requeues take seconds, not minutes; scheduling passes every second
# so that a requeued job starts as soon as its begin time has passed.
SchedulerType=sched/builtin
SchedulerParameters=sched_interval=1
KillWait=5
MessageTimeout=5
SlurmdTimeout=30
SlurmctldTimeout=30
InactiveLimit=0
Waittime=0
{node_lines}
PartitionName=debug Nodes={",".join(self.nodes)} Default=YES MaxTime=INFINITE State=UP
""")

    def _spawn(self, name: str, argv: list[str]) -> None:
        out = open(self.logdir / f"{name}.out", "ab")  # the child keeps its own copy of the fd
        try:
            # Own session: a Ctrl-C on pytest does not hit the daemons before we stop them ourselves.
            self._procs[name] = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                                                 stderr=subprocess.STDOUT, start_new_session=True)
        finally:
            out.close()

    def _start_munged(self) -> None:
        m = self.workdir / "munge"
        # --force: munged refuses to run as root otherwise (and warns about sticky /tmp parents).
        self._spawn("munged", [_which("munged"), "--foreground", "--force",
                               f"--socket={self.munge_socket}", f"--key-file={self.munge_key}",
                               f"--pid-file={m / 'munged.pid'}", f"--seed-file={m / 'munged.seed'}",
                               f"--log-file={self.logdir / 'munged.log'}"])
        self._wait(lambda: self.munge_socket.exists(), 10, "munged did not create its socket")

    def _start_slurmctld(self) -> None:
        # -i: ignore stale state files from an earlier run in the same workdir; -c: clear job state.
        self._spawn("slurmctld", [_which("slurmctld"), "-D", "-c", "-i", "-f", str(self.conf)])

        def pong() -> bool:
            r = self._run(["scontrol", "ping"], check=False, timeout=10)
            return "UP" in r.stdout
        self._wait(pong, 20, "slurmctld did not answer `scontrol ping`")

    def _start_slurmd(self, node: str) -> None:
        (self.workdir / "spool" / node).mkdir(parents=True, exist_ok=True)
        self._spawn(f"slurmd-{node}", [_which("slurmd"), "-D", "-N", node, "-f", str(self.conf)])

    def _wait_nodes_idle(self) -> None:
        def idle() -> bool:
            r = self._run(["sinfo", "-h", "-N", "-o", "%N %T"], check=False, timeout=10)
            states = dict(line.split() for line in r.stdout.splitlines() if line.strip())
            return all(states.get(n, "").rstrip("*~#") == "idle" for n in self.nodes)
        self._wait(idle, self.start_timeout, "nodes did not become idle")

    def _wait(self, ok, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for name, p in self._procs.items():
                if p.poll() is not None:
                    raise SlurmError(f"{name} exited with {p.returncode} ({what})\n{self.logs()}")
            if ok():
                return
            if time.monotonic() > deadline:
                raise SlurmError(f"{what} within {timeout:.0f} s\n{self.logs()}")
            time.sleep(0.2)

    def stop(self) -> None:
        """Cancel our jobs, stop every daemon by pid (TERM, then KILL), and kill stray job processes."""
        if "slurmctld" in self._procs and self._procs["slurmctld"].poll() is None:
            with contextlib.suppress(Exception):
                r = self._run(["squeue", "-h", "-o", "%i"], check=False, timeout=5)
                if r.stdout.split():
                    self._run(["scancel", "--full", *r.stdout.split()], check=False, timeout=5)
                    deadline = time.monotonic() + 5
                    while time.monotonic() < deadline:
                        if not self._run(["squeue", "-h", "-o", "%i"], check=False, timeout=5).stdout.strip():
                            break
                        time.sleep(0.2)
        # slurmds first (they talk to slurmctld on the way out), munged last (everyone needs it).
        order = [n for n in self._procs if n.startswith("slurmd-")] + ["slurmctld", "munged"]
        for name in order:
            p = self._procs.get(name)
            if p is None or p.poll() is not None:
                continue
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)
        self._kill_strays()
        self._procs.clear()
        if self._sockdir:
            shutil.rmtree(self._sockdir, ignore_errors=True)
            self._sockdir = None

    def _kill_strays(self) -> None:
        """Kill leftover slurmstepd/job processes of *this* cluster.

        slurmstepd double-forks away from slurmd, so it is not our child; but it (and every job task)
        inherits ``SLURM_CONF=<our conf>`` from slurmd, which identifies exactly our processes.
        """
        marker = f"\0SLURM_CONF={self.conf}\0".encode()
        for sig in (_signal.SIGTERM, _signal.SIGKILL):  # KILL whatever survived TERM
            found = []
            for pid_dir in Path("/proc").iterdir():
                if not pid_dir.name.isdigit() or int(pid_dir.name) == os.getpid():
                    continue
                try:
                    if marker in b"\0" + (pid_dir / "environ").read_bytes():
                        found.append(int(pid_dir.name))
                except OSError:
                    continue
            for pid in found:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            if not found:
                return
            time.sleep(1)

    # ---------------------------------------------------------------- client helpers
    def _run(self, argv: list[str], check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        r = subprocess.run([_which(argv[0]) or argv[0], *argv[1:]], env=self.env, capture_output=True,
                           text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise SlurmError(f"{' '.join(argv)} failed ({r.returncode}): {r.stderr.strip() or r.stdout.strip()}")
        return r

    def scontrol(self, *args: str) -> str:
        return self._run(["scontrol", *args]).stdout

    def sbatch(self, script_path: Path, *extra_args: str) -> int:
        """Submit a batch script (cwd: its directory), return the job id."""
        script_path = Path(script_path)
        r = subprocess.run([_which("sbatch"), "--parsable", *extra_args, str(script_path)], env=self.env,
                           cwd=script_path.parent, capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise SlurmError(f"sbatch {script_path} failed ({r.returncode}): {r.stderr.strip()}")
        return int(r.stdout.strip().split(";")[0])  # "<id>[;<cluster>]"

    def job_state(self, job_id: int) -> dict[str, str]:
        """`scontrol show job -o ID` as a dict (JobState, Restarts, NodeList, ExitCode, StdOut, ...)."""
        out = self.scontrol("show", "job", "-o", str(job_id)).strip().splitlines()
        if not out:
            raise SlurmError(f"job {job_id} unknown to slurmctld")
        return parse_scontrol_record(out[0])

    def wait_for(self, job_id: int, states: Iterable[str] = ("COMPLETED",), timeout: float = 30) -> dict[str, str]:
        """Wait until the job reaches one of `states`; raise on timeout or on another terminal state."""
        states = set(states)
        deadline = time.monotonic() + timeout
        while True:
            info = self.job_state(job_id)
            state = info.get("JobState", "")
            if state in states:
                return info
            if state in TERMINAL_STATES:
                raise SlurmError(f"job {job_id} ended {state} (expected {sorted(states)})\n"
                                 f"{self.job_report(info)}")
            if time.monotonic() > deadline:
                raise SlurmError(f"job {job_id} still {state} after {timeout:.0f} s "
                                 f"(expected {sorted(states)})\n{self.job_report(info)}")
            time.sleep(0.2)

    def wait_running(self, job_id: int, timeout: float = 30) -> dict[str, str]:
        return self.wait_for(job_id, ("RUNNING",), timeout)

    def requeue(self, job_id: int) -> None:
        self.scontrol("requeue", str(job_id))

    def signal(self, job_id: int, sig: str = "USR1") -> None:
        """Send `sig` to every step of the job (not the batch shell: scancel's default without --batch)."""
        self._run(["scancel", f"--signal={sig}", str(job_id)])

    # ---------------------------------------------------------------- diagnostics
    def logs(self, lines: int = 25) -> str:
        files = [self.logdir / "munged.log", self.logdir / "slurmctld.log",
                 *(self.logdir / f"slurmd-{n}.log" for n in self.nodes)]
        # A daemon's stdout/stderr repeats its log file, but holds why it died if it did.
        files += [self.logdir / f"{name}.out" for name, p in self._procs.items() if p.poll() is not None]
        return "\n".join(f"--- {f.name} (last {lines} lines)\n{_tail(f, lines)}" for f in files if f.exists())

    def job_report(self, info: dict[str, str]) -> str:
        parts = [" ".join(f"{k}={v}" for k, v in info.items())]
        for key in ("StdOut", "StdErr"):
            path = info.get(key)
            if path and (key == "StdOut" or path != info.get("StdOut")):
                parts.append(f"--- job {key} {path}\n{_tail(Path(path))}")
        parts.append(self.logs())
        return "\n".join(parts)
