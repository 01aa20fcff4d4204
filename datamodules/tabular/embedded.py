"""The embedded tables of :class:`~datamodules.tabular.TabularDataModule`: scikit-learn's bundled
``breast_cancer``, ``wine``, ``digits`` (classification) and ``diabetes`` (regression), read as a
:class:`~datamodules.tabular.reader.Table` whose target column is ``"target"``; nothing is downloaded.
"""

from __future__ import annotations

import numpy as np

from .reader import Column, Table

EMBEDDED_TASKS = {"breast_cancer": "classification", "wine": "classification", "digits": "classification",
                  "diabetes": "regression"}


def load_embedded(name: str) -> Table:
    """scikit-learn's bundled table ``name`` (features + a ``"target"`` column); no download. Diabetes comes
    unscaled (``scaled=False``): the DataModule scales."""
    from sklearn import datasets

    loaders = {"breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine,
               "digits": datasets.load_digits, "diabetes": datasets.load_diabetes}
    if name not in loaders:
        raise ValueError(f"unknown embedded dataset '{name}'; expected one of {', '.join(loaders)}")
    bunch = loaders[name](scaled=False) if name == "diabetes" else loaders[name]()
    data = np.asarray(bunch.data, dtype=np.float64)
    columns = {str(c): Column("float", data[:, j].copy(), np.isnan(data[:, j])) for j, c in
               enumerate(bunch.feature_names)}
    y = np.asarray(bunch.target)
    n = len(y)
    if EMBEDDED_TASKS[name] == "classification":
        columns["target"] = Column("int", y.astype(np.int64), np.zeros(n, bool))
        names = {"target": [str(c) for c in bunch.target_names]}
    else:
        columns["target"] = Column("float", y.astype(np.float64), np.zeros(n, bool))
        names = {}
    return Table(f"scikit-learn's {name}", columns, n, target_names=names)
