"""What the paper-claim benchmarks share (each script imports it from its own folder)."""

from __future__ import annotations

import statistics


def summary(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation over seeds (std 0 for a single seed), rounded for the JSON."""
    return {"mean": round(statistics.mean(values), 4),
            "std": round(statistics.stdev(values), 4) if len(values) > 1 else 0.0}
