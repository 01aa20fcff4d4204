"""Checkpoint files that are never half-written, wherever they live.

Lightning's `TorchCheckpointIO` writes through an fsspec transaction whose temporary file is made by
`tempfile.mkstemp()` in the system temp directory and then `shutil.move`d into place: when `/tmp` and the
checkpoint directory are on different filesystems (local disk vs. a cluster's shared filesystem, the usual
case on SLURM), that move is a copy, and a job killed during it leaves a truncated `last.ckpt`. Here the bytes
go to a hidden file next to the target, are flushed to disk, and `os.replace` publishes them in one atomic
step; a kill at any moment leaves either the previous checkpoint or the new one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """`torch.save` to `path` through `.<name>.partial` in the same directory, fsync, then `os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")  # one writer per path: a leftover is overwritten
    with open(partial, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make a rename inside `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def last_checkpoint_path(trainer) -> Path:
    """Where `last.ckpt` lives: the ModelCheckpoint's folder, else the Trainer's root folder."""
    cb = trainer.checkpoint_callback
    if cb is not None and getattr(cb, "dirpath", None):
        return Path(cb.dirpath) / f"{cb.CHECKPOINT_NAME_LAST}{cb.FILE_EXTENSION}"
    return Path(trainer.default_root_dir) / "last.ckpt"


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` whose local saves are atomic (see the module docstring); remote paths as before."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_torch_save(checkpoint, path)


# ------------------------------------------------------------------ sharded checkpoints (directories)
# A sharded checkpoint is a directory written by every rank; it cannot be renamed over its predecessor in one
# step. So `last.ckpt` is a symbolic link to one of two hidden slots next to it: a save writes the slot the
# link does not point to, then swaps the link with `os.replace` (atomic). A kill at any moment leaves the link
# on a complete checkpoint: the previous one, or the new one.

def next_slot(path: str | os.PathLike) -> Path:
    """The slot directory the next save of the sharded checkpoint `path` writes (not the one in use)."""
    path = Path(path)
    slots = [path.with_name(f".{path.name}.{i}") for i in (0, 1)]
    current = path.resolve() if path.is_symlink() else None
    return slots[1] if current == slots[0].resolve() else slots[0]


def publish_directory(path: str | os.PathLike, slot: str | os.PathLike) -> None:
    """Point `path` at the complete directory `slot` (same parent) in one atomic step."""
    path, slot = Path(path), Path(slot)
    if slot.parent.resolve() != path.parent.resolve():
        raise ValueError(f"slot {slot} must be next to {path}")
    link = path.with_name(f".{path.name}.link")
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(slot.name, link)  # relative: the run directory can be moved or copied
    if path.is_dir() and not path.is_symlink():  # a plain directory from an older save: replaced once
        shutil.rmtree(path)
    os.replace(link, path)
    _fsync_dir(path.parent)
