"""Video sources (:func:`read_video_index`), one per split:

- a folder ``root/<class>/<video files>``: sorted class names give the label index (key ``"label"``);
  extensions :data:`VIDEO_EXTENSIONS`, hidden files ignored;
- a list file in V-JEPA's format (any extension but ``.csv``, typically ``.txt``): one
  ``<path> <integer label>`` per line, space-delimited, no header, blank lines ignored;
- a ``.csv`` with a header: a ``path`` column plus one or more integer label columns.

Relative paths in list and CSV files are resolved against the file's folder.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence

from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from ..common import list_class_folders

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".m4v")
_SOURCE_FORMS = (
    "a folder of class sub-folders (root/<class>/<video files>, extensions "
    + ", ".join(VIDEO_EXTENSIONS)
    + "), a list file in V-JEPA's format ('<path> <integer label>' per line, no header; any extension"
    " but .csv), or a .csv file with a header: a 'path' column plus integer label columns"
)


def _scan_folder(folder: str, classes: Sequence[str], extensions: Sequence[str]) -> list[tuple[str, dict[str, int]]]:
    exts = tuple(e.lower() for e in extensions)
    samples: list[tuple[str, dict[str, int]]] = []
    empty = []
    for label, name in enumerate(classes):
        found = []
        for dirpath, dirnames, filenames in os.walk(os.path.join(folder, name), followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            found += [os.path.join(dirpath, f) for f in sorted(filenames)
                      if f.lower().endswith(exts) and not f.startswith(".")]
        if not found:
            empty.append(name)
        samples += [(path, {"label": label}) for path in found]
    if not samples:
        raise FileNotFoundError(
            f"no videos found under '{folder}' (class folders {list(classes)}); accepted extensions: {', '.join(exts)}"
        )
    if empty:
        rank_zero_warn(f"class folder(s) with no videos under '{folder}': {empty} (accepted extensions: {exts})")
    return samples


def _resolve(path: str, base: str) -> str:
    path = os.path.expanduser(path)
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(base, path))


def _read_list_file(source: str) -> list[tuple[str, dict[str, int]]]:
    base = os.path.dirname(os.path.abspath(source))
    samples = []
    with open(source, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            text = line.strip()
            if not text:
                continue
            parts = text.rsplit(maxsplit=1)  # the path may contain spaces; the label is the last field
            label = None
            if len(parts) == 2:
                try:
                    label = int(parts[1])
                except ValueError:
                    pass
            if label is None:
                raise ValueError(
                    f"{source}:{lineno}: expected '<path> <integer label>' (space-delimited, V-JEPA's list format),"
                    f" got {text!r}"
                )
            samples.append((_resolve(parts[0], base), {"label": label}))
    return samples


def _read_csv(source: str, label: str) -> list[tuple[str, dict[str, int]]]:
    base = os.path.dirname(os.path.abspath(source))
    samples = []
    with open(source, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        columns = [c.strip() for c in header] if header else []
        if "path" not in columns:
            raise ValueError(f"{source}: the header must have a 'path' column, got columns {columns}")
        label_columns = [c for c in columns if c != "path"]
        if not label_columns:
            raise ValueError(f"{source}: expected one or more integer label columns besides 'path', got {columns}")
        if label not in label_columns:
            raise ValueError(f"{source}: no label column '{label}' (label={label!r}); its columns are {columns}")
        if label != "label" and "label" in label_columns:
            raise ValueError(
                f"{source}: has a 'label' column, which would clash with the batch key 'label' that label={label!r}"
                f" fills; rename the column or pass label='label'"
            )
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            line = reader.line_num
            if len(row) != len(columns):
                raise ValueError(f"{source}:{line}: expected {len(columns)} fields ({','.join(columns)}), got {row}")
            values = dict(zip(columns, (cell.strip() for cell in row)))
            if not values["path"]:
                raise ValueError(f"{source}:{line}: empty 'path'")
            labels = {}
            for col in label_columns:
                try:
                    labels[col] = int(values[col])
                except ValueError:
                    raise ValueError(
                        f"{source}:{line}: column '{col}' must be an integer label, got {values[col]!r}"
                    ) from None
            if label != "label":
                labels["label"] = labels[label]
            samples.append((_resolve(values["path"], base), labels))
    return samples


def read_video_index(
    source: str,
    label: str = "label",
    classes: Sequence[str] | None = None,
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
) -> list[tuple[str, dict[str, int]]]:
    """``(path, {label_name: int})`` for every video of ``source`` (a class folder tree, a V-JEPA list file or
    a CSV; see the module docstring). Every sample's dict has the key ``"label"`` (for a CSV: the column
    ``label``, besides every label column under its own name). ``classes``: for a folder, the class folders
    it must hold (those of the training folder). Files are not opened here."""
    source = os.fspath(source)
    if os.path.isdir(source):
        if label != "label":
            raise ValueError(
                f"label={label!r} names a CSV column, but '{source}' is a class folder tree whose only label is 'label'"
            )
        found = list_class_folders(source, "video", "video.mp4")
        if classes is not None and list(classes) != found:
            raise ValueError(
                f"class folders of '{source}' differ from the training classes: missing"
                f" {sorted(set(classes) - set(found))}, not in train {sorted(set(found) - set(classes))}"
            )
        samples = _scan_folder(source, found, extensions)
    elif os.path.isfile(source):
        if source.lower().endswith(".csv"):
            samples = _read_csv(source, label)
        else:
            if label != "label":
                raise ValueError(
                    f"label={label!r} names a CSV column, but '{source}' is a list file ('<path> <label>' per line)"
                    f" whose only label is 'label'"
                )
            samples = _read_list_file(source)
        if not samples:
            raise ValueError(f"{source}: no samples (the file has no non-blank line)")
    else:
        raise FileNotFoundError(f"video source '{source}' does not exist; expected {_SOURCE_FORMS}")
    return samples
