"""What the paper-claim benchmarks share (each script imports it from its own folder)."""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any


def summary(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation over seeds (std 0 for a single seed), rounded for the JSON."""
    return {"mean": round(statistics.mean(values), 4),
            "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}


def cached(path: Path, compute: Callable[..., dict], *args: Any, fresh: bool = False, **kwargs: Any) -> dict:
    """A run's result, computed once and kept as JSON at ``path`` (reruns reuse it; ``fresh`` recomputes)."""
    if path.is_file() and not fresh:
        return json.loads(path.read_text())
    result = compute(*args, **kwargs)
    path.write_text(json.dumps(result, default=str))
    return result
