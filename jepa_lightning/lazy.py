"""Lazy package exports (PEP 562): a package lists which submodule defines each of its public names, and a
name is imported on first use, with only its own submodule.

Why: a run builds one method, one encoder and one DataModule from their `class_path`, but a package that
imported all of its submodules pulled every method, the RL and LiDAR stacks and their optional dependencies
into every process (benchmarks/footprint.py measures it). ``from jepa_lightning.methods import IJEPA`` and
``class_path: jepa_lightning.methods.IJEPA`` still work: both go through the package's ``__getattr__``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable


def lazy_exports(package: str, table: dict[str, list[str]]
                 ) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for `package` (its ``__name__``), given ``{submodule: [names]}``.

    The first access of a name imports ``package.submodule`` and caches the object in the package's namespace
    (later accesses are plain attribute lookups); any other name raises AttributeError as usual, so submodules
    that are not listed still import as ``package.submodule``. A name cannot be a submodule's too: importing
    the submodule (from anywhere) binds the package's attribute to the module, so that name must stay eager
    (``datamodules.rotations`` exports a function ``render`` of its module ``render``)."""
    where = {name: module for module, names in table.items() for name in names}
    if clash := sorted(set(where) & set(table)):
        raise ValueError(f"{package}: {clash} name submodules too; export them eagerly")

    def __getattr__(name: str) -> object:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__
