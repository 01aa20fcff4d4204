"""Expected CPU time of every CPU recipe, measured: `jepa-lightning recipes` shows it.

For each recipe whose trainer runs on the CPU, a few training steps are timed in-process (after warm-up steps) and
multiplied by the recipe's own number of steps (`max_steps`, else `max_epochs` x batches per epoch); the set-up
before the first step (data generation or loading, model build) is added. Validation is not included. Recipes
that start from another run's checkpoint are timed from a random initialisation (the same cost). Writes
`benchmarks/recipe_times.json`:

    python benchmarks/recipe_times.py [--only ijepa/tiny.yaml ...] [--steps 8] [--warmup 3]

On a GPU (`--accelerator gpu [--precision bf16-mixed] --out FILE`) the same recipes run on one device; each entry
then also holds the FLOPs of a training step (`TrainingFLOPs`), the achieved TFLOP/s, the model FLOPs
utilisation against `--peak-tflops` (the device's dense peak; default: the H100/H200 bf16 figure) and the peak
device memory. GPU times never go to `benchmarks/recipe_times.json` (which `jepa-lightning recipes` shows).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml
from lightning.pytorch import Callback

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from jepa_lightning.cli import JEPACLI  # noqa: E402
from jepa_lightning.eval.flops import TrainingFLOPs  # noqa: E402
from jepa_lightning.recipes import CHECKPOINT_KEYS, RECIPES, TIMES  # noqa: E402


class StepClock(Callback):
    """Wall time of the set-up (CLI start to first batch) and of each training batch."""

    def __init__(self, start: float) -> None:
        self.start, self.first, self.steps, self._t = start, None, [], None

    @staticmethod
    def _now() -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # a step's kernels are asynchronous: time them, not their launch
        return time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t = self._now()
        if self.first is None:
            self.first = self._t - self.start

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append(self._now() - self._t)


def _sig(x: float) -> float:
    return float(f"{x:.4g}")


def cpu_recipes() -> list[Path]:
    out = []
    for path in sorted(RECIPES.rglob("*.yaml")):
        config = yaml.safe_load(path.read_text()) or {}
        if (config.get("trainer") or {}).get("accelerator", "cpu") == "cpu":
            out.append(path)
    return out


def measure(path: Path, steps: int, warmup: int, device: list[str] = (), peak_tflops: float | None = None) -> dict:
    """Set-up and mean step time of one recipe (`device`: extra CLI arguments, e.g. accelerator and precision;
    FLOPs, TFLOP/s, MFU and peak memory added when `peak_tflops` is given)."""
    config = yaml.safe_load(path.read_text())
    model_args = (config.get("model") or {}).get("init_args") or {}
    trainer = config.get("trainer") or {}
    with tempfile.TemporaryDirectory() as tmp:
        args = ["--config", str(path), f"--run_dir={tmp}", "--trainer.limit_val_batches=0",
                "--trainer.num_sanity_val_steps=0", "--trainer.enable_progress_bar=false",
                f"--trainer.max_steps={warmup + steps}", "--checkpoint.save_last=false",
                f"--flops.measure_steps={max(1, min(2, warmup))}", *device,
                *[f"--model.init_args.{k}=null" for k in CHECKPOINT_KEYS if isinstance(model_args.get(k), str)]]
        start = time.perf_counter()
        cli = JEPACLI(args=args, run=False)
        clock = StepClock(start)
        cli.trainer.callbacks.append(clock)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        per_epoch = cli.trainer.num_training_batches
        flops = next((c.flops_per_batch for c in cli.trainer.callbacks if isinstance(c, TrainingFLOPs)), None)
    step = sum(clock.steps[warmup:]) / max(1, len(clock.steps[warmup:]))
    max_steps = int(trainer.get("max_steps") or -1)
    total = max_steps if max_steps > 0 else int(trainer.get("max_epochs") or 1) * int(per_epoch)
    minutes = (clock.first + step * total) / 60
    out = {"minutes": round(minutes, 2), "step_seconds": round(step, 4), "steps": total,
           "setup_seconds": round(clock.first, 1)}
    if peak_tflops is not None and flops:
        achieved = flops / step / 1e12
        out |= {"gflop_per_step": _sig(flops / 1e9), "tflops": _sig(achieved),
                "mfu_percent": _sig(100 * achieved / peak_tflops)}
    if torch.cuda.is_available():
        out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=None, help="recipes relative to recipes/ (default: all CPU)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--accelerator", default="cpu", choices=["cpu", "gpu"])
    parser.add_argument("--precision", default=None, help="e.g. bf16-mixed (default: the recipe's)")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="dense peak of the GPU at --precision, for the MFU (H100/H200 SXM bf16: 989)")
    parser.add_argument("--out", type=Path, default=None, help=f"default {TIMES.relative_to(ROOT)} (CPU only)")
    args = parser.parse_args()
    gpu = args.accelerator == "gpu"
    if gpu and args.out is None:
        parser.error("--accelerator gpu needs --out: GPU times never replace the CPU times the recipes list shows")
    out = args.out or TIMES
    device = [f"--trainer.accelerator={args.accelerator}", "--trainer.devices=1"] if gpu else []
    device += [f"--trainer.precision={args.precision}"] if args.precision else []
    results = json.loads(out.read_text()) if out.is_file() else {"recipes": {}}
    for path in cpu_recipes():
        name = str(path.relative_to(RECIPES))
        if args.only and name not in args.only:
            continue
        try:
            results["recipes"][name] = measure(path, args.steps, args.warmup, device, args.peak_tflops if gpu else None)
        except Exception as err:  # noqa: BLE001 - one recipe failing on a device must not lose the others' times
            if not gpu:
                raise
            results["recipes"][name] = {"error": f"{type(err).__name__}: {str(err)[:300]}"}
        print(name, results["recipes"][name], flush=True)
    results["note"] = ("minutes = set-up + step_seconds x steps, validation excluded; set-up measured with the "
                       "embedded data already generated (a first run adds its generation: seconds to a minute)")
    results["machine"] = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                          "processor": platform.processor() or platform.machine(), "torch": torch.__version__}
    if gpu:
        results["machine"] |= {"gpu": torch.cuda.get_device_name(), "precision": args.precision,
                               "peak_tflops": args.peak_tflops}
        results["note"] = ("minutes = set-up + step_seconds x steps, validation excluded; set-up includes generating "
                           "the embedded data when the machine had none; tflops and mfu_percent from TrainingFLOPs' "
                           "count (matmul/conv/attention) of a step")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
