"""One folder per run, and automatic resume of that run only.

A run writes everything (TensorBoard logs, the resolved `config.yaml`, `checkpoints/`, skipped-file reports)
under one run directory: `--run_dir` when given, else `<trainer.default_root_dir>/<name>/version_N` with the
recipe's `name`. Rerunning a `fit` continues the newest `version_N` that holds a `checkpoints/last.ckpt`, but
only when that checkpoint belongs to the same run: every checkpoint stores the run's resolved config
(:class:`RunConfig`), and a resume whose model, data or optimisation settings differ stops before training,
naming the keys (:func:`config_diff`); what may legitimately change on a resume (:data:`MAY_CHANGE`) is ignored.
"""

from __future__ import annotations

import fnmatch
import os
import re
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback

from jepa_lightning.errors import UserError

# Settings a resumed run may change: how long it runs, where and on how many devices, what it logs and
# evaluates, how often it checkpoints, how data is loaded (not what data).
MAY_CHANGE = (
    "config", "resume", "ckpt_path", "weights_only", "run_dir", "name", "checkpoint.*", "flops.*",
    "trainer.max_steps", "trainer.max_epochs", "trainer.max_time", "trainer.min_steps", "trainer.min_epochs",
    "trainer.devices", "trainer.num_nodes", "trainer.logger", "trainer.logger.*", "trainer.callbacks",
    "trainer.callbacks.*", "trainer.default_root_dir", "trainer.enable_progress_bar", "trainer.enable_model_summary",
    "trainer.log_every_n_steps", "trainer.val_check_interval", "trainer.check_val_every_n_epoch",
    "trainer.limit_val_batches", "trainer.limit_test_batches", "trainer.limit_predict_batches",
    "trainer.num_sanity_val_steps", "trainer.profiler", "trainer.profiler.*",
    "data.init_args.num_workers", "data.init_args.pin_memory", "data.init_args.persistent_workers",
    "data.init_args.prefetch_factor", "data.init_args.cache_dir",
)
RUN_DIR_ENV = "JEPA_LIGHTNING_RUN_DIR"  # the run directory rank 0 chose, read by the ranks it launches
_VERSION = re.compile(r"version_(\d+)$")


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """A (nested) config as {"dotted.key": leaf value}; lists, tuples and paths are leaves."""
    if hasattr(config, "as_dict"):  # a jsonargparse Namespace
        config = config.as_dict()
    if isinstance(config, dict):
        out: dict[str, Any] = {}
        for key, value in config.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    if isinstance(config, (list, tuple)):
        config = [flatten(v) if isinstance(v, dict) or hasattr(v, "as_dict") else _leaf(v) for v in config]
    return {prefix[:-1]: _leaf(config)}


def _leaf(value: Any) -> Any:
    return value if value is None or isinstance(value, (bool, int, float, str, list, dict)) else str(value)


def run_config(config: Any) -> dict[str, Any]:
    """The settings that define a run: the flattened config without :data:`MAY_CHANGE`."""
    return {k: v for k, v in flatten(config).items()
            if not any(fnmatch.fnmatchcase(k, pattern) for pattern in MAY_CHANGE)}


def config_diff(stored: dict[str, Any], current: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, stored value, current value) for every setting that differs; a missing key reads `<absent>`."""
    absent = "<absent>"
    return [(k, stored.get(k, absent), current.get(k, absent)) for k in sorted(stored.keys() | current.keys())
            if stored.get(k, absent) != current.get(k, absent)]


def versions(folder: Path) -> list[tuple[int, Path]]:
    """The `version_N` sub-folders of `folder`, by N."""
    if not folder.is_dir():
        return []
    found = ((_VERSION.match(p.name), p) for p in folder.iterdir() if p.is_dir())
    return sorted((int(m.group(1)), p) for m, p in found if m)


def has_checkpoint(path: Path) -> bool:
    return path.is_file() or path.is_dir()  # a directory (or a link to one): a sharded checkpoint


def resolve_run_dir(explicit: str | None, root: str | os.PathLike, name: str, resume: bool | str) -> Path:
    """The run directory: `explicit`; else, when resuming, the newest `<root>/<name>/version_N` holding
    `checkpoints/last.ckpt`; else the next free `version_N`. A rank launched by another process (DDP) takes
    the directory its launcher chose (:data:`RUN_DIR_ENV`), so all ranks of a run agree."""
    if explicit:
        return Path(explicit)
    if os.environ.get("LOCAL_RANK", "0") != "0" and os.environ.get(RUN_DIR_ENV):
        return Path(os.environ[RUN_DIR_ENV])
    found = versions(Path(root) / name)
    if resume:
        for _, path in reversed(found):
            if has_checkpoint(path / "checkpoints" / "last.ckpt"):
                return path
    return Path(root) / name / f"version_{found[-1][0] + 1 if found else 0}"


def link_latest(run_dir: Path) -> None:
    """`<run_dir>/../latest` -> `run_dir` (atomically), so other recipes and commands can name the newest run
    of a name (`runs/ijepa_tiny/latest/checkpoints/last.ckpt`)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    link = run_dir.parent / "latest"
    if link.exists() and not link.is_symlink():
        return  # a user's own folder of that name: left alone
    partial = run_dir.parent / ".latest.partial"
    if partial.is_symlink() or partial.exists():
        partial.unlink()
    os.symlink(run_dir.name, partial)
    os.replace(partial, link)


def read_checkpoint_meta(path: Path) -> dict[str, Any]:
    """The stored run config and global step of a checkpoint file or sharded directory, without its tensors
    staying in memory (memory-mapped)."""
    if path.is_dir():
        path = path / "meta.pt"  # Lightning's ModelParallelStrategy keeps the non-tensor state here
    try:
        ckpt = torch.load(path, map_location="cpu", mmap=True, weights_only=False)
    except Exception as err:  # a foreign or damaged file: the resume itself will say what is wrong
        raise UserError(f"cannot read the checkpoint {path} to check it belongs to this run ({err}); pass "
                        "--resume=false to start a new run, or --ckpt_path to load it explicitly") from err
    return {"run_config": ckpt.get(RunConfig.KEY), "global_step": ckpt.get("global_step", 0)}


def check_same_run(checkpoint: Path, current: dict[str, Any], force: bool) -> dict[str, Any]:
    """Raise a :class:`UserError` naming the differing settings unless `checkpoint` stored `current` (or
    `force`); returns the checkpoint's meta (see :func:`read_checkpoint_meta`)."""
    meta = read_checkpoint_meta(checkpoint)
    stored = meta["run_config"]
    if stored is None or force:
        return meta
    diff = config_diff(stored, current)
    if diff:
        shown = "\n".join(f"  {k}: {old!r} (checkpoint) vs {new!r} (now)" for k, old, new in diff[:8])
        more = f"\n  ... and {len(diff) - 8} more" if len(diff) > 8 else ""
        raise UserError(f"{checkpoint} belongs to a different run; these settings differ:\n{shown}{more}\n"
                        "Start a new run with --resume=false (or another --run_dir), or continue this one "
                        "anyway with --resume=force.")
    return meta


class RunConfig(Callback):
    """Stores the run's settings (:func:`run_config`) in every checkpoint, for :func:`check_same_run`."""

    KEY = "jepa_run_config"

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        checkpoint[self.KEY] = self.config
