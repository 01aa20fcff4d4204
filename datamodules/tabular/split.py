"""The seeded train/val/test split of a table's rows (:func:`split_rows`): ``split`` fractions of the rows (sizes
rounded, train takes the rest), random from a seed and, for classification, stratified by class (every class is
dealt to the splits in proportion).
"""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "val", "test")


def split_rows(n: int, fractions: tuple[float, float, float], seed: int,
               labels: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices (sorted) of the train/val/test splits of ``n`` rows.

    Sizes: ``round(f * n)`` for val and test, the rest for train. The rows are shuffled with
    ``numpy.random.default_rng(seed)``; with ``labels`` each class is dealt to the splits in proportion:
    class ``c`` gets ``floor(n_c * size_s / n)`` rows of split ``s`` and the leftover rows (fewer than three
    per class) go to the (class, split) pairs with the largest fractional remainders, so the split sizes
    stay exact and every class is within two rows of its proportional share in every split.
    """
    sizes = np.array([0, round(fractions[1] * n), round(fractions[2] * n)])
    sizes[0] = n - sizes[1:].sum()
    if sizes[0] < 1:
        raise ValueError(f"{n} row(s) are too few for split={tuple(fractions)}: the training split would be"
                         f" empty")
    order = np.random.default_rng(seed).permutation(n)
    if labels is None:
        parts = np.split(order, np.cumsum(sizes)[:2])
        return tuple(np.sort(p) for p in parts)  # type: ignore[return-value]
    labels = labels[order]
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts[:, None] * sizes[None, :] / n
    alloc = np.floor(quota).astype(np.int64)
    left_class, left_split = counts - alloc.sum(1), sizes - alloc.sum(0)
    ranked = np.argsort(-(quota - alloc), axis=None, kind="stable")
    while left_class.sum() > 0:  # at most a few passes over (class, split) pairs, never over rows
        for c, s in zip(*np.unravel_index(ranked, alloc.shape)):
            if left_class[c] > 0 and left_split[s] > 0:
                alloc[c, s] += 1
                left_class[c] -= 1
                left_split[s] -= 1
    parts: list[list[np.ndarray]] = [[], [], []]
    for c, cls in enumerate(classes):
        rows = order[labels == cls]
        for s, chunk in enumerate(np.split(rows, np.cumsum(alloc[c])[:2])):
            parts[s].append(chunk)
    return tuple(np.sort(np.concatenate(p)) for p in parts)  # type: ignore[return-value]
