"""`jepa-lightning slurm`: render (and optionally submit) an sbatch script for a `fit` of a recipe.

    jepa-lightning slurm --config recipes/ijepa/in1k_vith14.yaml --nodes 2 --gpus-per-node 8 \\
        --partition gpu --time 72:00:00 --submit [-- --trainer.max_epochs=100 ...]

The script is rendered from a template in `recipes/slurm/` (`gpu.sbatch` when `--gpus-per-node > 0`, else
`cpu.sbatch`; or `--template FILE`): `{{ name }}` placeholders are filled in, everything else (module loads,
environment activation) is the template's own. It runs one task per device on every node,
`srun python -m jepa_lightning fit --config ... --trainer.num_nodes N --trainer.devices G`, with logs,
checkpoints and the rendered script in one run directory. `--signal=SIGUSR1@90` and `--requeue` make a
preempted or timed-out job save `last.ckpt` at the next step boundary and requeue itself (see
`jepa_lightning.launch.requeue.RequeueOnSignal`); the requeued job reruns the same command, which resumes
from that checkpoint.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parents[2] / "recipes" / "slurm"
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


@dataclass
class SlurmJob:
    """What one sbatch job runs and on what. Optional SLURM options left `None` are not written."""

    config: Path
    nodes: int = 1
    gpus_per_node: int = 0
    tasks_per_node: int | None = None  # CPU jobs: processes per node (GPU jobs: one per GPU)
    partition: str | None = None
    account: str | None = None
    time: str | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    qos: str | None = None
    constraint: str | None = None
    job_name: str | None = None
    run_dir: Path | None = None
    signal_seconds: int = 90
    master_addr: str | None = None  # default: Lightning's SLURMEnvironment takes the first node of the job
    python: str = sys.executable
    fit_args: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.config = Path(self.config).resolve()
        if not self.config.is_file():
            raise FileNotFoundError(f"--config {self.config}: no such recipe file")
        if self.nodes < 1:
            raise ValueError(f"--nodes must be >= 1, got {self.nodes}")
        if self.gpus_per_node < 0:
            raise ValueError(f"--gpus-per-node must be >= 0, got {self.gpus_per_node}")
        if self.gpus_per_node and self.tasks_per_node not in (None, self.gpus_per_node):
            raise ValueError(f"GPU jobs run one task per GPU: --tasks-per-node {self.tasks_per_node} "
                             f"!= --gpus-per-node {self.gpus_per_node}")
        self.tasks_per_node = self.gpus_per_node or self.tasks_per_node or 1
        if self.job_name is None:
            self.job_name = f"{self.config.parent.name}-{self.config.stem}"
        self.run_dir = Path(self.run_dir or Path("runs") / "slurm" / self.job_name).resolve()

    def directives(self) -> list[str]:
        opts = {
            "job-name": self.job_name, "nodes": self.nodes, "ntasks-per-node": self.tasks_per_node,
            "gpus-per-node": self.gpus_per_node or None, "cpus-per-task": self.cpus_per_task,
            "mem": self.mem, "time": self.time, "partition": self.partition, "account": self.account,
            "qos": self.qos, "constraint": self.constraint,
            "signal": f"SIGUSR1@{self.signal_seconds}",  # warning before the time limit / preemption
            "requeue": True, "open-mode": "append",  # a requeued run appends to the same log
            "output": self.run_dir / "slurm-%j.out",
        }
        return [f"#SBATCH --{k}" if v is True else f"#SBATCH --{k}={v}" for k, v in opts.items() if v is not None]

    def command(self) -> list[str]:
        accelerator = "gpu" if self.gpus_per_node else "cpu"
        return [self.python, "-m", "jepa_lightning", "fit", "--config", str(self.config),
                f"--trainer.num_nodes={self.nodes}", f"--trainer.devices={self.tasks_per_node}",
                f"--trainer.accelerator={accelerator}", f"--run_dir={self.run_dir}", *self.fit_args]

    def render(self, template: Path | None = None) -> str:
        template = Path(template or TEMPLATES / ("gpu.sbatch" if self.gpus_per_node else "cpu.sbatch"))
        if not template.is_file():
            raise FileNotFoundError(f"--template {template}: no such file (templates live in {TEMPLATES})")
        exports = f"export MASTER_ADDR={self.master_addr}" if self.master_addr else ""
        values = {
            "directives": "\n".join(self.directives()), "run_dir": shlex.quote(str(self.run_dir)),
            "workdir": shlex.quote(str(Path.cwd())), "exports": exports, "job_name": self.job_name,
            "command": " ".join(shlex.quote(a) for a in self.command()),
            "cpus_per_task": self.cpus_per_task or 1,
        }

        def fill(match: re.Match) -> str:
            if match.group(1) not in values:
                raise KeyError(f"{template}: unknown placeholder {{{{ {match.group(1)} }}}}; "
                               f"known: {', '.join(sorted(values))}")
            return str(values[match.group(1)])

        return _PLACEHOLDER.sub(fill, template.read_text())


def submit(script: Path) -> int:
    """`sbatch --parsable script` -> job id."""
    if shutil.which("sbatch") is None:
        raise RuntimeError("sbatch not found: run this on a SLURM login node (or render without --submit)")
    out = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"sbatch {script} failed ({out.returncode}): {out.stderr.strip()}")
    return int(out.stdout.strip().split(";")[0])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jepa-lightning slurm",
        description="Render an sbatch script that runs `jepa-lightning fit` of a recipe on N nodes (and submit it "
                    "with --submit). Arguments after `--` are passed to `fit`.")
    p.add_argument("--config", required=True, type=Path, help="the recipe (YAML) to fit")
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--gpus-per-node", type=int, default=0, help="0: a CPU job")
    p.add_argument("--tasks-per-node", type=int, default=None, help="CPU jobs: processes per node (default 1)")
    for name in ("partition", "account", "time", "mem", "qos", "constraint"):
        p.add_argument(f"--{name}", default=None)
    p.add_argument("--cpus-per-task", type=int, default=None)
    p.add_argument("--job-name", default=None, help="default: <recipe folder>-<recipe name>")
    p.add_argument("--run-dir", type=Path, default=None, help="logs, checkpoints, script (default runs/slurm/<job>)")
    p.add_argument("--signal-seconds", type=int, default=90, help="SIGUSR1 this long before the time limit")
    p.add_argument("--master-addr", default=None, help="export MASTER_ADDR (e.g. 127.0.0.1 for a one-host cluster)")
    p.add_argument("--python", default=sys.executable, help="interpreter on the compute nodes")
    p.add_argument("--template", type=Path, default=None, help=f"sbatch template (default: {TEMPLATES}/gpu|cpu.sbatch)")
    p.add_argument("--submit", action="store_true", help="submit with sbatch (default: only write the script)")
    return p


def main(argv: list[str]) -> int:
    fit_args: list[str] = []
    if "--" in argv:
        argv, fit_args = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    args = parser().parse_args(argv)
    job = SlurmJob(config=args.config, nodes=args.nodes, gpus_per_node=args.gpus_per_node,
                   tasks_per_node=args.tasks_per_node, partition=args.partition, account=args.account,
                   time=args.time, cpus_per_task=args.cpus_per_task, mem=args.mem, qos=args.qos,
                   constraint=args.constraint, job_name=args.job_name, run_dir=args.run_dir,
                   signal_seconds=args.signal_seconds, master_addr=args.master_addr, python=args.python,
                   fit_args=fit_args)
    text = job.render(args.template)
    job.run_dir.mkdir(parents=True, exist_ok=True)  # type: ignore[union-attr]
    script = job.run_dir / "job.sbatch"  # type: ignore[operator]
    script.write_text(text)
    print(f"wrote {script}")
    if args.submit:
        print(f"submitted job {submit(script)}; log: {job.run_dir}/slurm-<jobid>.out")
    else:
        print(text)
    return 0
