"""Reading a table file for :class:`~datamodules.tabular.TabularDataModule`: ``.csv`` / ``.csv.gz`` through
pyarrow.csv (every cell read as text, trimmed, then each column typed as int, float, bool or string; empty and
``NA``-like cells are missing) or ``.parquet`` / ``.pq`` through pyarrow.parquet (the file's types), into a
:class:`Table` of typed :class:`Column` s. A missing, empty, header-only, unreadable or unsupported file, and
duplicate column names, are clear errors naming the file. pyarrow is imported only when a file is read
(``pip install jepa-lightning[tabular]``).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

CSV_EXTENSIONS = (".csv", ".csv.gz")
PARQUET_EXTENSIONS = (".parquet", ".pq")
FILE_EXTENSIONS = CSV_EXTENSIONS + PARQUET_EXTENSIONS


@dataclass
class Column:
    """One column: ``kind`` is ``"int"``, ``"float"``, ``"bool"`` (values 0/1), ``"string"`` (object array
    of str) or ``"null"`` (no value at all); ``missing`` marks null/NaN/empty cells (their ``values`` entry
    is a placeholder)."""

    kind: str
    values: np.ndarray
    missing: np.ndarray


@dataclass
class Table:
    """Columns in file order plus how to name a row in messages."""

    source: str  # "'data.csv'" or "scikit-learn's wine"
    columns: dict[str, Column]
    rows: int
    csv: bool = False  # rows also get the line number of the file (header = line 1)
    target_names: dict[str, list[str]] = field(default_factory=dict)  # known class names per target column

    def where(self, row: int) -> str:
        return f"row {row + 1} (line {row + 2})" if self.csv else f"row {row + 1}"


def _pyarrow(path: str) -> Any:
    try:
        import pyarrow
        import pyarrow.compute
        import pyarrow.csv
        import pyarrow.parquet
    except ImportError as err:
        raise ImportError(
            f"reading the tabular file '{path}' needs pyarrow, which is not installed:"
            f" pip install jepa-lightning[tabular]"
        ) from err
    return pyarrow


def _column_from_arrow(col: Any, pa: Any) -> Column:
    """A typed Arrow column as a :class:`Column` (integers stay integers, decimals become floats)."""
    pc = pa.compute
    n = len(col)
    missing = col.is_null().to_numpy(zero_copy_only=False).astype(bool)
    t = col.type
    if col.null_count == n:
        return Column("null", np.zeros(n), np.ones(n, bool))
    if pa.types.is_integer(t):
        try:
            return Column("int", pc.fill_null(col.cast(pa.int64()), 0).to_numpy(), missing)
        except pa.ArrowInvalid:  # uint64 beyond int64: as floats
            t = pa.float64()
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        values = pc.fill_null(col.cast(pa.float64()), math.nan).to_numpy()
        return Column("float", values, missing | np.isnan(values))
    if pa.types.is_boolean(t):
        values = pc.fill_null(col, False).to_numpy(zero_copy_only=False).astype(np.int64)
        return Column("bool", values, missing)
    try:
        text = col.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        as_str = [None if v is None else str(v) for v in col.to_pylist()]
        text = pa.chunked_array([pa.array(as_str, pa.string())])
    values = pc.fill_null(text, "").to_numpy(zero_copy_only=False).astype(object)
    return Column("string", values, missing | (values == ""))


def _column_from_text(col: Any, pa: Any) -> Column:
    """A CSV column read as text: trimmed; typed int, else float, else bool (true/false), else string."""
    pc = pa.compute
    col = pc.utf8_trim_whitespace(col)
    col = pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)
    if col.null_count == len(col):
        return _column_from_arrow(col, pa)
    for typ in (pa.int64(), pa.float64()):
        try:
            return _column_from_arrow(pc.cast(col, typ), pa)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    lower = pc.utf8_lower(col)
    if pc.all(pc.is_in(pc.drop_null(lower), value_set=pa.array(["true", "false"]))).as_py():
        return _column_from_arrow(pc.equal(lower, "true"), pa)
    return _column_from_arrow(col, pa)


def read_table(path: str) -> Table:
    """Read a ``.csv``/``.csv.gz`` or ``.parquet``/``.pq`` file into a :class:`Table`; clear errors for a
    missing, empty, header-only, unreadable or unsupported file and for duplicate column names."""
    path = os.fspath(path)
    lower = path.lower()
    if not lower.endswith(FILE_EXTENSIONS):
        raise ValueError(f"unsupported tabular file '{path}': expected a file ending in"
                         f" {', '.join(FILE_EXTENSIONS)}")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"tabular file '{path}' does not exist (or is not a file)")
    if os.path.getsize(path) == 0:
        raise ValueError(f"tabular file '{path}' is empty (0 bytes); expected a header row of column names"
                         f" followed by data rows")
    pa = _pyarrow(path)
    is_csv = lower.endswith(CSV_EXTENSIONS)
    try:
        if is_csv:
            reader = pa.csv.open_csv(path)  # the header (and type inference on the first block only)
            names = reader.schema.names
            reader.close()
            _check_duplicates(names, path)
            as_text = pa.csv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()),
                                            strings_can_be_null=True)
            arrow = pa.csv.read_csv(path, convert_options=as_text)
        else:
            arrow = pa.parquet.read_table(path)
            names = arrow.column_names
            _check_duplicates(names, path)
    except (pa.ArrowInvalid, OSError) as err:
        kind = "CSV" if is_csv else "Parquet"
        raise ValueError(f"could not read tabular file '{path}' as {kind}: {err}") from err
    if arrow.num_rows == 0:
        raise ValueError(f"tabular file '{path}' has a header (columns: {', '.join(names)}) but no data rows")
    convert = _column_from_text if is_csv else _column_from_arrow
    columns = {name: convert(arrow.column(i), pa) for i, name in enumerate(names)}
    return Table(f"'{path}'", columns, arrow.num_rows, csv=is_csv)


def _check_duplicates(names: list[str], path: str) -> None:
    dupes = sorted(n for n, k in Counter(names).items() if k > 1)
    if dupes:
        raise ValueError(f"tabular file '{path}' has duplicate column name(s) {dupes}; column names must be"
                         f" unique")
