"""What a process imports (issue 25): `import jepa_lightning` nothing heavy; the CLI and one method not the other
methods' stacks; the lazy packages (`jepa_lightning.lazy`) still export every name of their `__all__`.
`benchmarks/footprint.py` measures the memory this saves."""

import importlib
import json
import subprocess
import sys
import types

import pytest
from conftest import ROOT, TINY

# Loaded by a run that uses them, never by the CLI and an image method on the digits.
NOT_IN_AN_IMAGE_RUN = ("jepa_lightning.rl", "jepa_lightning.nn.rl", "jepa_lightning.nn.bev",
                       "jepa_lightning.methods.td_jepa", "jepa_lightning.methods.adl_jepa",
                       "jepa_lightning.methods.ui_jepa", "dm_control", "av", "sklearn", "tensorboard")
LAZY = ("jepa_lightning.methods", "jepa_lightning.nn", "jepa_lightning.eval", "jepa_lightning.masks",
        "jepa_lightning.launch", "datamodules", "datamodules.lidar", "datamodules.tabular", "datamodules.ui",
        "datamodules.video")


def modules_after(code: str) -> tuple[set[str], str]:
    """The names in sys.modules after running `code` in a fresh interpreter (the repository's code), and what
    it printed before them."""
    code += "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    printed, _, last = proc.stdout.rstrip("\n").rpartition("\n")
    return set(json.loads(last)), printed


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if n in modules or any(m.startswith(n + ".") for m in modules))


def test_import_jepa_lightning_loads_nothing_heavy():
    modules, _ = modules_after("import jepa_lightning")
    assert loaded(modules, ("torch", "lightning", "numpy", "datamodules")) == []
    assert sorted(m for m in modules if m.startswith("jepa_lightning")) == ["jepa_lightning"]


def test_cli_and_one_method_leave_the_other_stacks_out():
    """The CLI, I-JEPA (through the package, as a recipe's class_path), the digits (loaded) and the resolved
    config of the tiny recipe: none of the RL, LiDAR or UI stacks nor their packages; `fsdp2` is registered."""
    code = f"""
import jepa_lightning.cli
import jepa_lightning.methods.ijepa
from jepa_lightning.methods import IJEPA
from lightning.pytorch.strategies import StrategyRegistry
import datamodules
assert "fsdp2" in StrategyRegistry
data = datamodules.DigitsDataModule(image_size=8)
data.setup()
assert len(data.train_dataset) + len(data.val_dataset) == 1797
try:
    jepa_lightning.cli.main(["fit", "--config", {TINY!r}, "--print_config"])
except SystemExit as exit_:
    assert exit_.code in (0, None), exit_.code
"""
    modules, config = modules_after(code)
    assert loaded(modules, NOT_IN_AN_IMAGE_RUN) == []
    assert "class_path: jepa_lightning.methods.IJEPA" in config  # the short path of a lazy name, as before
    assert "class_path: jepa_lightning.nn.VisionTransformer" in config
    assert "class_path: datamodules.DigitsDataModule" in config


@pytest.mark.parametrize("name", LAZY)
def test_lazy_package_exports_its_all(name):
    """Every name of `__all__` resolves, `dir()` lists exactly those besides the submodules, `import *` works and
    any other name is an AttributeError."""
    package = importlib.import_module(name)
    for export in package.__all__:
        getattr(package, export)
    public = {n for n in dir(package) if not n.startswith("_") and n != "lazy_exports"
              and not isinstance(getattr(package, n), types.ModuleType)}
    assert public == set(package.__all__)
    namespace: dict = {}
    exec(f"from {name} import *", namespace)
    assert set(package.__all__) <= set(namespace)
    with pytest.raises(AttributeError, match="no attribute 'NotAName'"):
        package.NotAName  # noqa: B018
