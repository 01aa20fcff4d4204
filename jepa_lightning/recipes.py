"""`jepa-lightning recipes [--all]`: the recipes, one line each: what it trains (the first line of its header
comment), which data it needs (embedded, or a dataset you provide) and its expected time on CPU.

Times come from `benchmarks/recipe_times.json`, written by `benchmarks/recipe_times.py` (measured, never
typed); a recipe at paper scale says "GPU cluster".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
TIMES = ROOT / "benchmarks" / "recipe_times.json"  # not in results/: those are fidelity results (report.py)
EMBEDDED_KEYS = ("embedded", "synthetic", "dataset")  # data arguments that select a generated set
USER_DATA_KEYS = ("root", "path", "train", "data_dir")  # data arguments that point at your files
CHECKPOINT_KEYS = ("checkpoint", "teacher_checkpoint", "init_encoder")  # another run's output it starts from


def describe(path: Path) -> dict[str, str]:
    """Name, one-line description, data and CPU time of one recipe."""
    text = path.read_text()
    header = [line[1:].strip() for line in text.splitlines() if line.startswith("#")]
    config = yaml.safe_load(text) or {}
    first = header[0] if header else ""
    data = config.get("data", {}) or {}
    data_class = str(data.get("class_path", "")).rpartition(".")[2] or "-"
    args = data.get("init_args") or {}
    embedded = any(args.get(k) not in (None, False) for k in EMBEDDED_KEYS) or (
        all(args.get(k) is None for k in USER_DATA_KEYS) and not any(k in args for k in EMBEDDED_KEYS))
    model_args = (config.get("model") or {}).get("init_args") or {}
    after = [str(model_args[k]) for k in CHECKPOINT_KEYS if isinstance(model_args.get(k), str)]
    devices = (config.get("trainer") or {}).get("accelerator", "cpu")
    needs = f"{data_class} (embedded)" if embedded else f"{data_class} (yours: see the recipe)"
    return {"recipe": str(path.relative_to(RECIPES)), "about": first,
            "data": needs + (f", after {', '.join(after)}" if after else ""), "accelerator": str(devices)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="jepa-lightning recipes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    times = json.loads(TIMES.read_text()).get("recipes", {}) if TIMES.is_file() else {}
    rows = []
    for path in sorted(p for p in RECIPES.rglob("*.yaml")):
        row = describe(path)
        measured = times.get(row["recipe"])
        row["cpu_time"] = (f"~{measured['minutes']:.0f} min" if measured and measured["minutes"] >= 1 else
                           f"~{measured['minutes'] * 60:.0f} s" if measured else
                           "GPU cluster" if row["accelerator"] != "cpu" else "not measured")
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    width = max(len(r["recipe"]) for r in rows)
    for r in rows:
        about = r["about"] if len(r["about"]) <= 100 else r["about"][:97] + "..."
        print(f"{r['recipe']:<{width}}  {r['cpu_time']:>12}  {r['data']}\n{'':<{width}}  {'':>12}  {about}")
    print(f"\nrun one: jepa-lightning fit --config recipes/<recipe>   (times: {TIMES.relative_to(ROOT)})")
    return 0
