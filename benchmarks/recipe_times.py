"""Expected CPU time of every CPU recipe, measured: `jepa-lightning recipes` shows it.

For each recipe whose trainer runs on the CPU, a few training steps are timed in-process (after warm-up steps) and
multiplied by the recipe's own number of steps (`max_steps`, else `max_epochs` x batches per epoch); the set-up
before the first step (data generation or loading, model build) is added. Validation is not included. Recipes
that start from another run's checkpoint are timed from a random initialisation (the same cost). Writes
`benchmarks/recipe_times.json`:

    python benchmarks/recipe_times.py [--only ijepa/tiny.yaml ...] [--steps 8] [--warmup 3]
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
from jepa_lightning.recipes import CHECKPOINT_KEYS, RECIPES, TIMES  # noqa: E402


class StepClock(Callback):
    """Wall time of the set-up (CLI start to first batch) and of each training batch."""

    def __init__(self, start: float) -> None:
        self.start, self.first, self.steps, self._t = start, None, [], None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._t = time.perf_counter()
        if self.first is None:
            self.first = self._t - self.start

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.steps.append(time.perf_counter() - self._t)


def cpu_recipes() -> list[Path]:
    out = []
    for path in sorted(RECIPES.rglob("*.yaml")):
        config = yaml.safe_load(path.read_text()) or {}
        if (config.get("trainer") or {}).get("accelerator", "cpu") == "cpu":
            out.append(path)
    return out


def measure(path: Path, steps: int, warmup: int) -> dict:
    config = yaml.safe_load(path.read_text())
    model_args = (config.get("model") or {}).get("init_args") or {}
    trainer = config.get("trainer") or {}
    with tempfile.TemporaryDirectory() as tmp:
        args = ["--config", str(path), f"--run_dir={tmp}", "--trainer.limit_val_batches=0",
                "--trainer.num_sanity_val_steps=0", "--trainer.enable_progress_bar=false",
                f"--trainer.max_steps={warmup + steps}", "--checkpoint.save_last=false",
                *[f"--model.init_args.{k}=null" for k in CHECKPOINT_KEYS if isinstance(model_args.get(k), str)]]
        start = time.perf_counter()
        cli = JEPACLI(args=args, run=False)
        clock = StepClock(start)
        cli.trainer.callbacks.append(clock)
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
        per_epoch = cli.trainer.num_training_batches
    step = sum(clock.steps[warmup:]) / max(1, len(clock.steps[warmup:]))
    max_steps = int(trainer.get("max_steps") or -1)
    total = max_steps if max_steps > 0 else int(trainer.get("max_epochs") or 1) * int(per_epoch)
    minutes = (clock.first + step * total) / 60
    return {"minutes": round(minutes, 2), "step_seconds": round(step, 4), "steps": total,
            "setup_seconds": round(clock.first, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", default=None, help="recipes relative to recipes/ (default: all CPU)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    results = json.loads(TIMES.read_text()) if TIMES.is_file() else {"recipes": {}}
    for path in cpu_recipes():
        name = str(path.relative_to(RECIPES))
        if args.only and name not in args.only:
            continue
        results["recipes"][name] = measure(path, args.steps, args.warmup)
        print(name, results["recipes"][name], flush=True)
    results["note"] = ("minutes = set-up + step_seconds x steps, validation excluded; set-up measured with the "
                       "embedded data already generated (a first run adds its generation: seconds to a minute)")
    results["machine"] = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                          "processor": platform.processor() or platform.machine(), "torch": torch.__version__}
    TIMES.parent.mkdir(parents=True, exist_ok=True)
    TIMES.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
