"""What the paper-claim benchmarks share (each script imports it from its own folder)."""

from __future__ import annotations

import hashlib
import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

MONITORS = ("train/loss", "train/target_std", "train/pred_std", "train/rankme", "train/target_sample_share",
            "train/target_position_share")  # the monitors the result pages plot


def summary(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation over seeds (std 0 for a single seed), rounded for the JSON."""
    return {"mean": round(statistics.mean(values), 4),
            "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}


def override_tag(overrides: list[str]) -> str:
    """A file-name suffix naming a run's extra CLI overrides ("" without any): "_data.background=noise"; a long one
    (a list of masks) is cut and completed by a digest, so the name stays short and unique."""
    extra = "_".join(o.lstrip("-").replace("init_args.", "") for o in overrides)
    if len(extra) > 100:
        extra = extra[:60] + "_" + hashlib.sha1(extra.encode()).hexdigest()[:12]
    return f"_{extra}" if extra else ""


def cached(path: Path, compute: Callable[..., dict], *args: Any, fresh: bool = False, **kwargs: Any) -> dict:
    """A run's result, computed once and kept as JSON at ``path`` (reruns reuse it; ``fresh`` recomputes)."""
    if path.is_file() and not fresh:
        return json.loads(path.read_text())
    result = compute(*args, **kwargs)
    partial = path.with_name(path.name + ".partial")  # written whole, then renamed: a reader never sees half
    partial.write_text(json.dumps(result, default=str))
    partial.replace(path)
    return result


def run_worker(path: Path, script: str, worker_args: list[str], label: str, refresh: bool = False) -> dict:
    """A run's result cached at ``path``; computed first when absent (or ``refresh``) by the benchmark's worker
    process, ``python script *worker_args`` (one run per process: runs go in parallel with :func:`in_parallel`,
    one thread each), which must write ``path``. A failed worker raises, naming ``label`` and its stderr's end."""
    import subprocess
    import sys

    if refresh or not path.is_file():
        proc = subprocess.run([sys.executable, script, *worker_args], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parents[2])
        if proc.returncode:
            raise RuntimeError(f"{label} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(path.read_text())
    seconds = result.get("seconds", result.get("train_seconds", float("nan")))  # (a worker may time training only)
    print(f"{label}: {seconds:.0f} s", file=sys.stderr, flush=True)
    return result


def in_parallel(fn: Callable[..., dict], jobs: list[tuple], workers: int) -> list[dict]:
    """``[fn(*job) for job in jobs]``, ``workers`` at a time (threads: each job waits on its worker process)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda job: fn(*job), jobs))


# --------------------------------------------------------------------------- the one result schema
# Every paper-claim benchmark writes one JSON per run in this schema to benchmarks/results/<name>.json;
# benchmarks/fidelity/report.py renders the README summary and docs/results/<variant>.md from those files.
#
# {"schema": 1, "name": "ijepa_scenes", "variant": "I-JEPA", "benchmark": "benchmarks/fidelity/x.py",
#  "setting": "one line: data, model, steps", "config": {...}, "seeds": [0, 1, 2], "seconds": 812.3,
#  "probes": [{"name": "linear", "metric": "accuracy %", "higher_is_better": true,
#              "scores": {"random_init": [per seed], "pretrained": [per seed], "<other arm>": [per seed]}}],
#  "claims": [{"statement": "...", "value": 3.1, "criterion": "> 2 combined std (1.4)", "holds": true}],
#  "monitors": {"<arm>": {"train/target_std": [[step, value], ...]}},     (optional: curves to plot)
#  "notes": "anything a reader must know"}
RESULTS = Path(__file__).resolve().parents[1] / "results"
SCHEMA_VERSION = 1


def probe_entry(name: str, metric: str, scores: dict[str, list[float]], higher_is_better: bool = True) -> dict:
    """One probe's per-seed scores by arm ("random_init" and "pretrained" at least, same seed order)."""
    lengths = {arm: len(v) for arm, v in scores.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"probe {name!r}: arms have different numbers of seeds: {lengths}")
    return {"name": name, "metric": metric, "higher_is_better": higher_is_better,
            "scores": {arm: [round(float(x), 4) for x in v] for arm, v in scores.items()}}


def claim_entry(statement: str, value: float, criterion: str, holds: bool | None) -> dict:
    """One paper claim: its measured value (4 decimals; 3 significant digits below 1e-3, so that an error of 1e-5
    does not read 0), the criterion it was judged by, and the verdict (None: not judged)."""
    value = float(value)
    value = round(value, 4) if abs(value) >= 1e-3 or value == 0 else float(f"{value:.3g}")
    return {"statement": statement, "value": value, "criterion": criterion, "holds": holds}


def gain_claim(statement: str, better: list[float], worse: list[float], sigmas: float = 2.0) -> dict:
    """`better` beats `worse` (per-seed scores) by more than `sigmas` x their combined std (sqrt(s1^2 + s2^2))."""
    diff = statistics.mean(better) - statistics.mean(worse)
    spread = (summary(better)["std"] ** 2 + summary(worse)["std"] ** 2) ** 0.5
    return claim_entry(statement, diff, f"> {sigmas:g} x combined std ({sigmas * spread:.3g})",
                       bool(diff > sigmas * spread))


def agreement_claim(statement: str, mine: list[float], theirs: list[float], sigmas: float = 2.0) -> dict:
    """Two implementations agree: |mean(mine) - mean(theirs)| within `sigmas` x their combined std (the parity
    checks' bar; the value is mine minus theirs)."""
    diff = statistics.mean(mine) - statistics.mean(theirs)
    spread = (summary(mine)["std"] ** 2 + summary(theirs)["std"] ** 2) ** 0.5
    return claim_entry(statement, diff, f"|value| <= {sigmas:g} x combined std ({sigmas * spread:.3g})",
                       bool(abs(diff) <= sigmas * spread))


def paired_gain_claim(statement: str, better: list[float], worse: list[float], sigmas: float = 2.0) -> dict:
    """`better` beats `worse` seed by seed: the mean of the per-seed differences above `sigmas` x their std. For
    arms that share everything a seed draws (data subset, split, masks) but the treatment, where the seeds'
    common variation would otherwise swamp an unpaired comparison."""
    if len(better) != len(worse):
        raise ValueError(f"paired claim needs one score per seed in both arms, got {len(better)} and {len(worse)}")
    diffs = [b - w for b, w in zip(better, worse)]
    diff, spread = statistics.mean(diffs), summary(diffs)["std"]
    return claim_entry(statement, diff, f"> {sigmas:g} x std of the per-seed differences ({sigmas * spread:.3g})",
                       bool(diff > sigmas * spread))


def save_result(name: str, variant: str, benchmark: str, setting: str, config: dict, seeds: list[int],
                seconds: float, probes: list[dict], claims: list[dict], monitors: dict | None = None,
                notes: str = "", directory: Path | None = None) -> Path:
    """Write one run's result in the schema above; returns the file's path."""
    result = {"schema": SCHEMA_VERSION, "name": name, "variant": variant, "benchmark": benchmark,
              "setting": setting, "config": config, "seeds": list(seeds), "seconds": round(float(seconds), 1),
              "probes": probes, "claims": claims, "monitors": monitors or {}, "notes": notes}
    for p in probes:
        missing = {"random_init", "pretrained"} - set(p["scores"])
        if missing:
            raise ValueError(f"probe {p['name']!r} lacks the arm(s) {sorted(missing)}")
        if any(len(v) != len(seeds) for v in p["scores"].values()):
            raise ValueError(f"probe {p['name']!r}: one score per seed {list(seeds)} expected")
    directory = directory or RESULTS
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return path


# --------------------------------------------------------------------------- training a recipe
def record_callback(every: int, keys: tuple[str, ...] = MONITORS):
    """A Lightning callback recording the metrics ``keys`` every ``every`` steps and at the end (``.curves``)."""
    import lightning as L

    class Record(L.Callback):
        def __init__(self) -> None:
            self.curves: dict[str, list[list[float]]] = {k: [] for k in keys}

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if trainer.global_step % every == 0:
                self.record(trainer)

        def on_train_end(self, trainer, pl_module) -> None:  # the final values, whatever the step
            self.record(trainer)

        def record(self, trainer) -> None:
            for key in keys:
                curve = self.curves[key]
                if key in trainer.callback_metrics and (not curve or curve[-1][0] != trainer.global_step):
                    curve.append([trainer.global_step, round(float(trainer.callback_metrics[key]), 5)])

    return Record()


def build_recipe(recipe: Path, seed: int, overrides: list[str], workdir: str):
    """The CLI of ``recipe`` with ``overrides``, not run: seed, mask seed and loader seed = ``seed``; run folder and
    checkpoints in ``workdir``; no validation, progress bar or model summary; a fresh run (no resume)."""
    from jepa_lightning.cli import JEPACLI

    return JEPACLI(run=False, args=[
        "--config", str(recipe), f"--seed_everything={seed}", f"--model.init_args.mask_seed={seed}",
        f"--data.init_args.seed={seed}", f"--run_dir={workdir}", f"--checkpoint.dirpath={workdir}/ckpt",
        "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0", "--resume=false", *overrides])


def train_recipe(recipe: Path, seed: int, steps: int, overrides: list[str], workdir: str, record_every: int,
                 callbacks: list | None = None):
    """Build ``recipe`` with ``overrides`` (seed, mask seed and loader seed = ``seed``; run folder and checkpoints
    in ``workdir``; no validation) and train it ``steps`` optimizer steps on one thread. Returns the CLI, a copy of
    the network the method evaluates at its initialisation (``network("teacher")``), the training seconds and the
    collapse monitors' curves. ``callbacks``: more Lightning callbacks for the fit."""
    import copy
    import time

    import torch

    torch.set_num_threads(1)
    cli = build_recipe(recipe, seed, [f"--trainer.max_steps={steps}", "--trainer.max_epochs=-1", *overrides], workdir)
    initial = copy.deepcopy(cli.model.network("teacher"))
    record = record_callback(record_every)
    cli.trainer.callbacks.extend([record, *(callbacks or [])])
    t0 = time.perf_counter()
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return cli, initial, time.perf_counter() - t0, record.curves
