"""scikit-learn's bundled digits and their stratified train/val split, without importing scikit-learn.

Why: importing anything of scikit-learn imports pandas (``sklearn.utils.fixes``), ~80 MB more in every process
(the DataLoader workers included) of a run that only needs 1797 8x8 images and a fixed split. Both functions give
exactly what scikit-learn gives (``tests/test_images_data.py`` compares them bit for bit):

- :func:`load_digits`: ``sklearn.datasets.load_digits()``'s ``data`` and ``target``, read from the file scikit-learn
  ships (``sklearn/datasets/data/digits.csv.gz``, found without importing the package);
- :func:`stratified_split`: ``train_test_split(np.arange(n), test_size=f, stratify=labels, random_state=seed)``,
  scikit-learn's ``StratifiedShuffleSplit`` (BSD-3-Clause) step for step, random draws in the same order.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import os

import numpy as np


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """(data [1797, 64] float64 in 0..16, target [1797] int64): ``sklearn.datasets.load_digits()``'s arrays."""
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the digits are scikit-learn's bundled set: pip install scikit-learn")
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
    with gzip.open(path, mode="rt", encoding="utf-8") as f:
        table = np.loadtxt(f, delimiter=",")
    return table[:, :-1], table[:, -1].astype(int, copy=False)


def stratified_split(labels: np.ndarray, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices) of ``len(labels)`` samples: ``ceil(test_fraction * n)`` test samples, every
    class in both splits in proportion, each split shuffled; the same arrays as scikit-learn's
    ``train_test_split(np.arange(n), test_size=test_fraction, stratify=labels, random_state=seed)``."""
    n = len(labels)
    n_test = math.ceil(test_fraction * n)
    n_train = n - n_test
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if counts.min() < 2 or min(n_train, n_test) < len(classes):
        raise ValueError(f"cannot split {n} samples of {len(classes)} classes (smallest {counts.min()}) into "
                         f"{n_train} train and {n_test} test samples with every class in both")
    by_class = np.split(np.argsort(inverse, kind="stable"), np.cumsum(counts)[:-1])
    rng = np.random.RandomState(seed)
    n_i = _approximate_mode(counts, n_train, rng)
    t_i = _approximate_mode(counts - n_i, n_test, rng)
    train: list[np.integer] = []
    test: list[np.integer] = []
    for i in range(len(classes)):
        members = by_class[i].take(rng.permutation(counts[i]), mode="clip")
        train.extend(members[: n_i[i]])
        test.extend(members[n_i[i]: n_i[i] + t_i[i]])
    return rng.permutation(train), rng.permutation(test)


def _approximate_mode(counts: np.ndarray, draws: int, rng: np.random.RandomState) -> np.ndarray:
    """Per-class draws summing to `draws`, in proportion to `counts`: the floors, then one more for the largest
    remainders, ties broken at random (scikit-learn's ``sklearn.utils.extmath._approximate_mode``)."""
    continuous = counts / counts.sum() * draws
    floored = np.floor(continuous)
    need = int(draws - floored.sum())
    if need > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (tied,) = np.where(remainder == value)
            add = min(len(tied), need)
            floored[rng.choice(tied, size=add, replace=False)] += 1
            need -= add
            if need == 0:
                break
    return floored.astype(int)
