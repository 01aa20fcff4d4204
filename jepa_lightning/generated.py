"""Embedded data sets that the project generates itself (no download), once, into a cache folder.

:func:`embedded_root` names the folder from a hash of the generation parameters, :func:`generate_once` fills it
atomically (a temporary folder renamed when complete, so an interrupted generation is simply redone and concurrent
processes, e.g. DDP ranks, never read a half-written set), and :class:`GeneratedOnce` is the ``prepare_data`` of a
DataModule whose data is made that way. Used by the DataModules and by the embedded offline RL sets
(:mod:`jepa_lightning.rl.embedded`).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from typing import Any

from lightning.pytorch.utilities.rank_zero import rank_zero_info


def cache_base() -> str:
    """The project's cache folder: ``$JEPA_LIGHTNING_CACHE`` if set and not empty, else ``~/.cache/jepa_lightning``
    (absolute, ``~`` expanded)."""
    base = os.environ.get("JEPA_LIGHTNING_CACHE") or os.path.join("~", ".cache", "jepa_lightning")
    return os.path.abspath(os.path.expanduser(base))


def embedded_root(cache_dir: str | None, kind: str, params: dict[str, Any]) -> tuple[str, str]:
    """Where an embedded dataset generated from ``params`` lives: ``(cache folder, cache folder/<hash of params>)``.
    ``cache_dir`` defaults to ``cache_base()/<kind>``."""
    key = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    cache_dir = os.path.join(cache_base(), kind) if cache_dir is None else os.path.abspath(os.path.expanduser(cache_dir))
    return cache_dir, os.path.join(cache_dir, key)


def generate_once(root: str, params: dict[str, Any], generate: Callable[[str], dict[str, Any]]
                  ) -> tuple[dict[str, Any], float] | None:
    """Runs ``generate(folder) -> counts`` into a temporary folder next to ``root``, writes ``params.json``
    (``params`` + counts) and renames the folder to ``root`` atomically (safe with concurrent processes).
    Returns ``(counts, seconds)``, or None when another process finished first."""
    parent = os.path.dirname(root)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(root)}.", dir=parent)
    try:
        t0 = time.perf_counter()
        counts = generate(tmp)
        seconds = time.perf_counter() - t0
        with open(os.path.join(tmp, "params.json"), "w") as f:
            json.dump({**params, "counts": counts, "seconds": seconds}, f, indent=1, sort_keys=True)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
        try:
            os.replace(tmp, root)
        except OSError:
            if not os.path.isfile(os.path.join(root, "params.json")):
                raise
            return None  # another process finished first
        return counts, seconds
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class GeneratedOnce:
    """Mixin of a DataModule whose embedded data is generated once into ``self.data_dir`` (from
    :func:`embedded_root`) from the parameters ``self.generation``: ``generated``, and a ``prepare_data`` that runs
    ``self._generate(folder) -> counts`` through :func:`generate_once` (atomic; safe with concurrent processes) unless
    the folder already holds the data, setting ``generation_seconds`` when this object generated it."""

    data_dir: str
    generation: dict[str, Any]
    generation_seconds: float | None = None
    generated_what = "samples"  # the noun of the log line

    def _generate(self, folder: str) -> dict[str, int]:
        raise NotImplementedError

    @property
    def generated(self) -> bool:
        return os.path.isfile(os.path.join(self.data_dir, "params.json"))

    def prepare_data(self) -> None:
        if self.generated:
            return
        done = generate_once(self.data_dir, self.generation, self._generate)
        if done is not None:  # None: another process finished first, use theirs
            counts, self.generation_seconds = done
            rank_zero_info(
                f"{type(self).__name__}: generated {'+'.join(str(c) for c in counts.values())} {self.generated_what} "
                f"in {self.data_dir} in {self.generation_seconds:.1f}s")
