"""Data-parallel scaling of the tiny I-JEPA recipe on this machine: 1 vs 2 CPU processes (DDP).

    python benchmarks/scaling.py [--procs 1 2 --steps 60 --warmup 10 --batch 64]

For each process count P, runs `jepa-lightning fit --config recipes/ijepa/tiny.yaml` as a subprocess (strategy
`ddp` for P > 1), with the per-process batch fixed (so the global batch is P x batch), OMP_NUM_THREADS =
cores // P, no validation, no checkpoint files, logs in a temporary directory. The CLI's
`jepa_lightning.eval.TrainingFLOPs` (`--flops.measure_steps`) gives the FLOPs per training step (all processes,
measured on the first `--measure-steps` steps, which fall inside the warmup); this file's `ThroughputTimer`
(added with `--trainer.callbacks+=`) which stamps the end of every training batch on rank 0 and records every rank's peak RSS
(and peak CUDA memory on a GPU). Throughput is taken over the steps after `--warmup`, epoch boundaries
included. Reports steps/s, global samples/s, GFLOP/s achieved, peak memory per process, and the speedup and
scaling efficiency (speedup / P-ratio, in global samples/s) of each P against the smallest. Prints one JSON
object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch import Callback

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "recipes/ijepa/tiny.yaml"


class ThroughputTimer(Callback):
    """Writes `<out_dir>/rank<r>.json` at the end of training: every rank its peak RSS (MiB) and peak CUDA
    memory; rank 0 also the `time.perf_counter()` at the end of each training batch and the `TrainingFLOPs`
    callback's numbers, if that callback is present."""

    def __init__(self, out_dir: str) -> None:
        super().__init__()
        self.out_dir = Path(out_dir)
        self.batch_end: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_rank == 0:
            if pl_module.device.type == "cuda":
                torch.cuda.synchronize(pl_module.device)
            self.batch_end.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module) -> None:
        from jepa_lightning.eval import TrainingFLOPs

        record = {"rank": trainer.global_rank, "world_size": trainer.world_size,
                  "threads": torch.get_num_threads(),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux
                  "cuda_max_allocated_mib": (torch.cuda.max_memory_allocated(pl_module.device) / 2**20
                                             if pl_module.device.type == "cuda" else None)}
        if trainer.global_rank == 0:
            flops = next((c for c in trainer.callbacks if isinstance(c, TrainingFLOPs)), None)
            record.update(batch_end=self.batch_end, global_step=trainer.global_step,
                          flops_per_batch=flops.flops_per_batch if flops else None,
                          flops_measured=flops.measured if flops else None,
                          flops_total=flops.total_flops if flops else None)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


def recipe_batch_size() -> int:
    import yaml

    return int(yaml.safe_load((ROOT / RECIPE).read_text())["data"]["init_args"]["batch_size"])


def cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run_fit(procs: int, args: argparse.Namespace, workdir: Path) -> dict:
    out = workdir / f"p{procs}"
    threads = args.threads or max(1, cores() // procs)
    exe = Path(sys.executable).parent / "jepa-lightning"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "jepa_lightning"]
    cmd += ["fit", "--config", RECIPE,
            f"--trainer.accelerator={args.accelerator}", f"--trainer.devices={procs}",
            f"--trainer.strategy={'ddp' if procs > 1 else 'auto'}",
            f"--trainer.max_steps={args.steps}", "--trainer.max_epochs=-1",  # max_steps alone ends the run
            "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            f"--run_dir={out / 'runs'}",
            f"--checkpoint.dirpath={out / 'ckpt'}", "--checkpoint.save_last=false", "--resume=false",
            f"--data.init_args.batch_size={args.batch}",
            f"--flops.measure_steps={'null' if args.measure_steps is None else args.measure_steps}",
            "--trainer.callbacks+=" + json.dumps({"class_path": "benchmarks.scaling.ThroughputTimer",
                                                   "init_args": {"out_dir": str(out / "timing")}}),
            *args.extra]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "PYTHONWARNINGS": os.environ.get("PYTHONWARNINGS", "ignore")}
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=args.timeout)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise SystemExit(f"fit with {procs} process(es) failed (exit {proc.returncode})")
    ranks = [json.loads((out / "timing" / f"rank{r}.json").read_text()) for r in range(procs)]
    r0 = ranks[0]
    ends = r0["batch_end"]
    if len(ends) <= args.warmup + 1:
        raise SystemExit(f"only {len(ends)} training batches ran: raise --steps above --warmup + 1")
    timed = ends[args.warmup:]  # batch ends from the end of the last warmup batch on
    step_s = (timed[-1] - timed[0]) / (len(timed) - 1)
    steps_per_s = 1.0 / step_s
    global_batch = args.batch * procs
    flops = r0["flops_per_batch"]
    cuda = [r["cuda_max_allocated_mib"] for r in ranks if r["cuda_max_allocated_mib"] is not None]
    return {
        "procs": procs,
        "threads_per_proc": threads,
        "batch_per_proc": args.batch,
        "global_batch": global_batch,
        "steps": r0["global_step"],
        "steps_timed": len(timed) - 1,
        "steps_per_s": round(steps_per_s, 3),
        "ms_per_step": round(step_s * 1e3, 2),
        "ms_per_step_median": round(statistics.median(b - a for a, b in zip(timed, timed[1:])) * 1e3, 2),
        "samples_per_s": round(steps_per_s * global_batch, 1),
        "gflop_per_step": round(flops / 1e9, 4) if flops else None,
        "gflop_per_s": round(flops * steps_per_s / 1e9, 2) if flops else None,
        "flops_measured_steps": len(r0["flops_measured"] or []),
        "peak_rss_mib": round(max(r["peak_rss_mib"] for r in ranks), 1),
        "peak_rss_mib_per_rank": [round(r["peak_rss_mib"], 1) for r in ranks],
        "cuda_max_allocated_mib": round(max(cuda), 1) if cuda else None,
        "torch_threads_per_rank": [r["threads"] for r in ranks],
        "wall_s": round(wall, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", type=int, nargs="+", default=[1, 2], help="process counts to compare")
    ap.add_argument("--steps", type=int, default=None, help="training steps per run (default 60; --quick: 6)")
    ap.add_argument("--warmup", type=int, default=None, help="steps left out of the timing (default 10; quick: 2)")
    ap.add_argument("--measure-steps", type=int, default=None,
                    help="steps whose FLOPs are counted (default 5; quick: 2); keep it <= --warmup")
    ap.add_argument("--batch", type=int, default=None, help="per-process batch size (default: the recipe's; quick: 32)")
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS per process (default cores // P)")
    ap.add_argument("--accelerator", default="cpu")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per fit")
    ap.add_argument("--quick", action="store_true", help="smoke test: a few small steps")
    ap.add_argument("extra", nargs="*", help="more CLI overrides for every fit (after --)")
    args = ap.parse_args()
    quick = args.quick
    args.steps = args.steps or (6 if quick else 60)
    args.warmup = args.warmup if args.warmup is not None else (2 if quick else 10)
    args.measure_steps = args.measure_steps or (2 if quick else 5)
    args.batch = args.batch or (32 if quick else recipe_batch_size())
    if args.measure_steps > args.warmup:
        print(f"note: FLOP counting (first {args.measure_steps} steps) overlaps the timed steps "
              f"(after {args.warmup}); its overhead is timed", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="jepa_scaling_") as tmp:
        runs = [run_fit(p, args, Path(tmp)) for p in args.procs]
    base = min(runs, key=lambda r: r["procs"])
    scaling = [{"procs": r["procs"], "vs_procs": base["procs"],
                "speedup": round(r["samples_per_s"] / base["samples_per_s"], 3),
                "efficiency": round(r["samples_per_s"] / base["samples_per_s"] / (r["procs"] / base["procs"]), 3),
                "flops_ratio": (round(r["gflop_per_step"] / base["gflop_per_step"], 3)
                                if r["gflop_per_step"] and base["gflop_per_step"] else None)}
               for r in runs if r is not base]
    print(json.dumps({
        "benchmark": "ijepa_tiny_ddp_scaling",
        "config": {"recipe": RECIPE, "steps": args.steps, "warmup": args.warmup,
                   "flop_measure_steps": args.measure_steps, "batch_per_proc": args.batch,
                   "accelerator": args.accelerator, "extra": args.extra},
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": cores(),
                    "torch": torch.__version__},
        "runs": runs,
        "scaling": scaling,
    }, indent=2))


if __name__ == "__main__":
    main()
