"""Scaling of the numeric features, fitted on the training split only (:func:`fit_scaling`) and applied to every
split (:func:`apply_scaling`): ``minmax`` (as the T-JEPA paper), ``quantile`` (each feature mapped to a uniform
[0, 1] through the training split's empirical quantiles), ``standard`` or ``none``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SCALINGS = ("minmax", "quantile", "standard", "none")


def fit_scaling(train: np.ndarray, scaling: str) -> dict[str, Any]:
    """Per-column statistics of the training values ``[n, p]`` (no NaN) for :func:`apply_scaling`.

    minmax: ``(x - min) / (max - min)``; standard: ``(x - mean) / std``; a constant column keeps scale 1.
    quantile: each column's sorted distinct training values with their mid-rank quantile levels
    (``mean position / (n - 1)``; ties share a level), so training values map to their empirical CDF in
    [0, 1] (uniform up to ties) and any value is interpolated, clipped to the ends."""
    if scaling == "minmax":
        lo, hi = train.min(0), train.max(0)
        return {"shift": lo, "scale": np.where(hi > lo, hi - lo, 1.0)}
    if scaling == "standard":
        sd = train.std(0)
        return {"shift": train.mean(0), "scale": np.where(sd > 0, sd, 1.0)}
    if scaling == "quantile":
        knots = []
        for j in range(train.shape[1]):  # per column, vectorized over rows
            values, first, counts = np.unique(np.sort(train[:, j]), return_index=True, return_counts=True)
            level = (first + (counts - 1) / 2) / max(len(train) - 1, 1)
            knots.append((values, level if len(values) > 1 else np.full(1, 0.5)))
        return {"knots": knots}
    return {}


def apply_scaling(x: np.ndarray, stats: dict[str, Any]) -> np.ndarray:
    if "knots" in stats:
        out = np.empty_like(x)
        for j, (values, level) in enumerate(stats["knots"]):
            out[:, j] = np.interp(x[:, j], values, level)
        return out
    if "shift" in stats:
        return (x - stats["shift"]) / stats["scale"]
    return x
