"""Import the official code of a method from a local checkout, at run time (it is never part of this repository).

The official repositories (facebookresearch/ijepa, facebookresearch/jepa, DMTJEPA/DMTJEPA) all name their top
package `src` (V-JEPA also `app`; marbaga/td_jepa_public's is `metamotivo`, rbalestr-lab/lejepa's `lejepa`): each checkout is imported with any of
these already imported set aside and put back afterwards, so two of them can be compared in one process. `benchmarks/fidelity/official.sh` clones
them at the commits the published parity results were measured against.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import logging
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

PACKAGES = ("src", "app", "metamotivo", "lejepa")


@contextlib.contextmanager
def own_packages(root: Path) -> Iterator[None]:
    """`root` first on sys.path, and the top packages in PACKAGES imported from it alone while inside."""
    def theirs(name: str) -> bool:
        return name.split(".")[0] in PACKAGES

    saved = {k: sys.modules.pop(k) for k in list(sys.modules) if theirs(k)}
    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path.remove(str(root))
        for k in [k for k in sys.modules if theirs(k)]:
            del sys.modules[k]
        sys.modules.update(saved)


def official_dir(arg: str | None, env: str) -> str | None:
    """The checkout to use: the command line's, else the environment variable `env`'s, else None."""
    return arg or os.environ.get(env) or None


def required_checkout(parser: argparse.ArgumentParser, arg: str | None, env: str, repo: str) -> str:
    """`official_dir`, or the parser's usage error naming `repo`, the `--official` option and `env`."""
    path = official_dir(arg, env)
    if not path:
        parser.error(f"name a checkout of {repo} with --official or env {env}")
    return path


def import_official(path: str | os.PathLike, repo: str, modules: list[str], marker: str,
                    patch: dict[str, Callable[[dict[str, ModuleType]], dict[str, Any]]] | None = None
                    ) -> dict[str, ModuleType]:
    """The official `modules` (dotted names, imported in order) from a checkout of `repo` at `path`.

    `marker`: a file every checkout of `repo` has (else FileNotFoundError naming both). `patch`: for a module
    that uses a name it never imports, a function of the modules imported so far giving the names to set in it
    before it runs. The official modules may configure the root logger or print at import: their stdout goes to
    stderr (our stdout carries JSON) and the root logger's level is put back to at least WARNING."""
    root = Path(path).expanduser().resolve()
    if not (root / marker).is_file():
        raise FileNotFoundError(f"'{root}' is not a checkout of {repo} (no {marker})")
    level = logging.getLogger().level
    loaded: dict[str, ModuleType] = {}
    with own_packages(root), contextlib.redirect_stdout(sys.stderr):
        for name in modules:
            if patch and name in patch:
                spec = importlib.util.spec_from_file_location(name, root / (name.replace(".", "/") + ".py"))
                module = importlib.util.module_from_spec(spec)
                for attr, value in patch[name](loaded).items():
                    setattr(module, attr, value)
                sys.modules[name] = module
                spec.loader.exec_module(module)
            else:
                module = importlib.import_module(name)
            loaded[name] = module
    logging.getLogger().setLevel(max(level, logging.WARNING))
    return loaded
