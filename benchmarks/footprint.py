"""Import footprint of a run (issue 25): memory and time of `import jepa_lightning.cli`, the peak memory of a short
CLI fit, and which heavy third-party packages each has loaded.

    python benchmarks/footprint.py [--recipes recipes/ijepa/tiny.yaml ...] [--before 8df073e]
                                   [--repeats 1] [--out benchmarks/footprint.json]

Every number comes from a fresh Python process (this interpreter, OMP_NUM_THREADS=1 unless set), so nothing is
shared between measurements:

- ``import``: ``ru_maxrss`` (MiB) and wall seconds right after ``import jepa_lightning.cli``, and the heavy
  packages (:data:`HEAVY`) then loaded;
- per recipe, ``fit``: the peak ``ru_maxrss`` of ``fit --config R --trainer.max_steps=3 --run_dir=<tmp>
  --resume=false`` run in-process by ``jepa_lightning.cli.main``, the heavy packages and our own modules
  (``jepa_lightning.*``, ``datamodules.*``) loaded by its end;
- ``layers`` (this checkout only): the ``ru_maxrss`` after importing, in one process, torch and then what
  ``import lightning.pytorch`` brings in through torchmetrics (:data:`LAYERS`), then ``jepa_lightning.cli``:
  where the memory after import goes.

``--before COMMIT`` measures the same on that commit's code: a temporary ``git worktree`` of it, run with this
interpreter and its installed packages (the code's root first on ``sys.path``, as the working directory), removed
afterwards. The JSON holds ``after`` (this checkout: its HEAD commit, and whether it has uncommitted changes) and
``before`` (the commit); without ``--before``, a ``before`` already in ``--out`` is kept. With ``--repeats N``
each number is the median of N processes. Prints the JSON; ``--out`` also writes it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = "recipes/ijepa/tiny.yaml"
# Optional or heavy third-party packages (top-level names) whose presence in sys.modules is reported.
HEAVY = ("tensorboard", "tensorboardX", "timm", "transformers", "huggingface_hub", "dm_control", "mujoco", "av",
         "torchvision", "sklearn", "scipy", "matplotlib", "pandas", "PIL", "gymnasium", "peft",
         "sentence_transformers", "numba")

# What `import lightning.pytorch` brings in (through torchmetrics), in the order `--layers` imports them.
LAYERS = ("torch", "torch._dynamo", "torchvision", "scipy.signal", "matplotlib.pyplot", "transformers.models.auto",
          "lightning.pytorch")

# Run in the child: `mode` "import", "fit" or "layers", `heavy` the comma-separated HEAVY; writes one JSON object
# to `out`. "layers": the ru_maxrss after importing each module of `args` in turn (those not installed skipped),
# then after jepa_lightning.cli.
CHILD = r"""
import importlib, importlib.util, json, resource, sys, time
mode, out, heavy, args = sys.argv[1], sys.argv[2], sys.argv[3].split(","), sys.argv[4:]
rss = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
record = {"layers": []}
for name in args if mode == "layers" else ():
    if importlib.util.find_spec(name.split(".")[0]) is not None:
        importlib.import_module(name)
        record["layers"].append([name, rss()])
start = time.perf_counter()
import jepa_lightning.cli
record["code"] = jepa_lightning.cli.__file__
if mode == "layers":
    record["layers"].append(["jepa_lightning.cli", rss()])
elif mode == "import":
    record |= {"rss_mib": rss(), "seconds": time.perf_counter() - start}
    del record["layers"]
else:
    del record["layers"]
    try:
        jepa_lightning.cli.main(args)
        record["exit"] = 0
    except SystemExit as exit_:
        record["exit"] = exit_.code
    record |= {"peak_rss_mib": rss(), "seconds": time.perf_counter() - start}
    record["ours"] = sorted(m for m in sys.modules if m.split(".")[0] in ("jepa_lightning", "datamodules"))
record["modules"] = len(sys.modules)
record["heavy"] = sorted(m for m in heavy if m in sys.modules)
json.dump(record, open(out, "w"))
"""


def child(code_root: Path, mode: str, *args: str) -> dict:
    """One fresh process over the code at `code_root` (its working directory, first on sys.path)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(code_root), os.environ.get("PYTHONPATH", "")]))
    env.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "record.json"
        argv = [a.replace("{tmp}", tmp) for a in args]
        proc = subprocess.run([sys.executable, "-c", CHILD, mode, str(out), ",".join(HEAVY), *argv],
                              cwd=code_root, env=env, capture_output=True, text=True, timeout=900)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"{mode} {' '.join(args)} in {code_root} failed:\n{proc.stderr[-3000:]}")
        record = json.loads(out.read_text())
    if not Path(record.pop("code")).resolve().is_relative_to(code_root.resolve()):
        raise RuntimeError(f"the child imported jepa_lightning from outside {code_root}")
    if mode == "fit" and record["exit"] not in (0, None):
        raise RuntimeError(f"fit {' '.join(args)} exited with {record['exit']}:\n{proc.stderr[-3000:]}")
    return record


def median_of(records: list[dict]) -> dict:
    """The first record, its numbers replaced by the median over `records`."""
    out = dict(records[0])
    for key, value in out.items():
        if isinstance(value, float):
            out[key] = round(statistics.median(r[key] for r in records), 2 if "seconds" in key else 1)
    return out


def measure(code_root: Path, recipes: list[str], repeats: int) -> dict:
    result = {"import": median_of([child(code_root, "import") for _ in range(repeats)]), "fit": {}}
    for recipe in recipes:
        fit = ["fit", "--config", recipe, "--trainer.max_steps=3", "--run_dir={tmp}/run", "--resume=false"]
        records = [child(code_root, "fit", *fit) for _ in range(repeats)]
        result["fit"][recipe] = median_of(records) | {"command": "jepa-lightning " + " ".join(fit)}
        print(f"{code_root} {recipe}: import {result['import']['rss_mib']} MiB, "
              f"fit peak {result['fit'][recipe]['peak_rss_mib']} MiB", file=sys.stderr, flush=True)
    return result


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def measure_commit(commit: str, recipes: list[str], repeats: int) -> dict:
    """`measure` on `commit`'s code, checked out into a temporary git worktree that is removed afterwards."""
    full = git("rev-parse", "--verify", f"{commit}^{{commit}}")
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "before"
        git("worktree", "add", "--detach", str(tree), full)
        try:
            return {"commit": full} | measure(tree, recipes, repeats)
        finally:
            git("worktree", "remove", "--force", str(tree))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="+", default=[RECIPE], help="paths relative to the repository root")
    parser.add_argument("--before", default=None, help="a commit to measure too (a temporary git worktree)")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args()
    results = {"after": {"commit": git("rev-parse", "HEAD"),
                         "uncommitted_changes": bool(git("status", "--porcelain"))}
               | measure(ROOT, args.recipes, args.repeats)}
    layers = child(ROOT, "layers", *LAYERS)["layers"]
    results["layers"] = [{"import": name, "rss_mib": round(mib, 1), "added_mib": round(mib - prev, 1)}
                         for (name, mib), prev in zip(layers, [0.0] + [m for _, m in layers])]
    if args.before:
        results["before"] = measure_commit(args.before, args.recipes, args.repeats)
    elif args.out is not None and args.out.exists():
        kept = json.loads(args.out.read_text()).get("before")
        if kept is not None:
            results["before"] = kept
    results["machine"] = {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                          "python": platform.python_version(), "repeats": args.repeats,
                          "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "1")}
    results["notes"] = ("MiB are ru_maxrss of a fresh process (KiB / 1024): after `import jepa_lightning.cli`, and "
                        "the peak of the whole fit; heavy: optional or large third-party packages then in "
                        "sys.modules")
    text = json.dumps(results, indent=1, sort_keys=True)
    if args.out is not None:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
