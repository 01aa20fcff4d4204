import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TINY = str(ROOT / "recipes" / "ijepa" / "tiny.yaml")

# A very small I-JEPA on digits (16 px, 4x4 patch grid) for end-to-end tests: seconds, not minutes.
TINY_OVERRIDES = [
    "--model.init_args.encoder.init_args.embed_dim=32",
    "--model.init_args.encoder.init_args.depth=2",
    "--model.init_args.predictor.init_args.embed_dim=32",
    "--model.init_args.predictor.init_args.predictor_dim=16",
    "--model.init_args.predictor.init_args.depth=1",
    "--model.init_args.masks.init_args.min_keep=2",
    "--data.init_args.image_size=16",  # the encoder's img_size and the predictor's grid follow (linked)
    "--data.init_args.batch_size=32",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
]


def tiny_args(tmp_path: Path, *extra: str, subcommand: str = "fit") -> list[str]:
    return [subcommand, "--config", TINY, *TINY_OVERRIDES,
            f"--run_dir={tmp_path / 'runs'}",
            f"--checkpoint.dirpath={tmp_path / 'ckpt'}", *extra]


@pytest.fixture
def one_thread():
    """Tiny models: one intra-op thread is faster, and far faster when other processes share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch):
    monkeypatch.setenv("PYTHONWARNINGS", os.environ.get("PYTHONWARNINGS", "ignore::DeprecationWarning"))


# Video recipes shrunk for end-to-end tests: a 1-block ViT on 16 moving-digits videos of 16 frames.
RECIPES = ROOT / "recipes"
VIDEO_DATA = ["--data.init_args.num_train=32", "--data.init_args.num_val=16", "--data.init_args.video_frames=16",
              "--data.init_args.batch_size=8", "--data.init_args.num_workers=0"]
VIDEO_ENCODER = ["embed_dim=32", "depth=1", "num_heads=2"]
VIDEO_PREDICTOR = ["embed_dim=32", "predictor_dim=16", "depth=1", "num_heads=2"]


def video_args(recipe: str, tmp_path: Path, cache: Path, *extra: str, subcommand: str = "fit",
               encoders: tuple[str, ...] = ("encoder",), predictor: bool = True) -> list[str]:
    args = [subcommand, "--config", str(RECIPES / recipe), f"--data.init_args.cache_dir={cache}", *VIDEO_DATA,
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
            f"--run_dir={tmp_path / 'runs'}", f"--checkpoint.dirpath={tmp_path / 'ckpt'}"]
    for name in encoders:
        args += [f"--model.init_args.{name}.init_args.{a}" for a in VIDEO_ENCODER]
    if predictor:
        args += [f"--model.init_args.predictor.init_args.{a}" for a in VIDEO_PREDICTOR]
    return [*args, *extra]


@pytest.fixture(scope="session")
def video_cache(tmp_path_factory) -> Path:
    """One moving-digits cache for the whole session (the videos are generated on first use)."""
    return tmp_path_factory.mktemp("moving_digits")


def transition_batch(b: int, obs_dim: int, action_dim: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random batch of ``OfflineRLDataModule(mode="transitions")`` (TD-JEPA and FB tests); ~20% terminal."""
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.randn(b, obs_dim, generator=g), "action": torch.rand(b, action_dim, generator=g) * 2 - 1,
            "next_obs": torch.randn(b, obs_dim, generator=g),
            "terminal": (torch.rand(b, generator=g) < 0.2).float()}


def train_on_batch(model, batch: dict[str, torch.Tensor], steps: int, terms: tuple[str, ...]) -> list[float]:
    """``steps`` optimizer steps of a zero-shot agent (TD-JEPA, FB) on one batch, as its ``training_step`` without
    the Trainer (objective, Adam step, EMA update); the sum of the loss ``terms`` at each step."""
    opt = model.configure_optimizers()["optimizer"]
    values = []
    for step in range(steps):
        out = model.objective(batch, torch.Generator().manual_seed(step))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        model.update_targets()
        values.append(float(sum(out[t].detach() for t in terms)))
    return values


@pytest.fixture(scope="session")
def walker_episodes(tmp_path_factory) -> Path:
    """Six 60-step walker episodes (5 train, 1 val) with physics for relabeling (TD-JEPA and FB recipe fits)."""
    from jepa_lightning.rl.collect import collect

    folder = tmp_path_factory.mktemp("walker_tiny")
    collect(str(folder), "walker", task="stand", policy="mixed", episodes=6, seed=0, time_limit=60, progress=False)
    return folder


def load_benchmark(relpath: str, name: str):
    """A benchmark script imported as module `name` (once per process); its folder goes on sys.path first, as the
    scripts import their sibling common.py."""
    if name not in sys.modules:
        path = ROOT / relpath
        if str(path.parent) not in sys.path:
            sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def run_script(*args: str) -> dict:
    """A benchmark script run from the repository root; its stdout parsed as the JSON it prints."""
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)
