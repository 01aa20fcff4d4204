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
    fd = os.open(path.parent, os.O_RDONLY)  # make the rename itself durable
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """`TorchCheckpointIO` whose local saves are atomic (see the module docstring); remote paths as before."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_torch_save(checkpoint, path)
