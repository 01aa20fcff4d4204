"""Write the official-format checkpoint fixtures that tests/test_pretrained.py loads, from the official code itself.

    python tests/data/make_official_fixtures.py --ijepa runs/official/ijepa --vjepa runs/official/jepa \
        --vjepa2 runs/official/vjepa2      # benchmarks/fidelity/official.sh clones them

For each official repository given (facebookresearch/ijepa, facebookresearch/jepa, facebookresearch/vjepa2), the
script imports its model code from that checkout (never copied here), builds its ViT at a tiny config with a
fixed seed, moves every weight away from its initialisation (so a mapping error cannot hide behind zeros and
ones), and writes into tests/data/official/:

- ``<name>.pth.tar``: a checkpoint in the repository's own training format (its ``train.py``'s ``save_dict``:
  ``encoder`` / ``predictor`` / ``target_encoder`` with DDP's ``module.`` prefix, and the video repositories'
  wrapper's ``backbone.``; ``epoch`` ...), the encoder and the target encoder with different weights;
- ``<name>_io.pt``: an input batch, the official forward's output of each network on it, the tiny config and the
  repository's commit.

A few tens of KB each; committed, so the tests need no checkout.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from functools import partial
from pathlib import Path

import torch
from torch import nn

OUT = Path(__file__).resolve().parent / "official"


def commit_of(checkout: Path) -> str:
    return subprocess.run(["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def perturb(model: nn.Module, seed: int) -> nn.Module:
    """Every trainable tensor redrawn (the fixed sin-cos position table kept, as training keeps it)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model.eval()


def official_modules(checkout: Path):
    """The checkout's `src` package, imported fresh (the three repositories all call their package `src`)."""
    for name in [m for m in sys.modules if m == "src" or m.startswith("src.")]:
        del sys.modules[name]
    sys.path.insert(0, str(checkout))
    import src.models.vision_transformer as vit

    sys.path.remove(str(checkout))
    return vit


def write(name: str, checkout: Path, networks: dict[str, nn.Module], x: torch.Tensor, config: dict,
          prefix: str) -> None:
    """The checkpoint in the official format (state dicts under `prefix`) and the io file."""
    with torch.no_grad():
        outputs = {which: net(x) for which, net in networks.items()}
    save = {which: {prefix + k: v for k, v in net.state_dict().items()} for which, net in networks.items()}
    save |= {"predictor": {}, "opt": {}, "scaler": None, "epoch": 1, "loss": 0.5, "batch_size": 2,
             "world_size": 1, "lr": 1e-3}
    OUT.mkdir(exist_ok=True)
    torch.save(save, OUT / f"{name}.pth.tar")
    repository = {"ijepa": "facebookresearch/ijepa", "vjepa": "facebookresearch/jepa",
                  "vjepa2": "facebookresearch/vjepa2"}[name.split("_")[0]]
    torch.save({"input": x, "outputs": outputs, "config": config, "layer_norm_eps": 1e-6, "repository": repository,
                "commit": commit_of(checkout)}, OUT / f"{name}_io.pt")
    print(f"wrote {OUT / name}.pth.tar and its io file ({repository} @ {commit_of(checkout)})")


def build(vit, config: dict, seed: int = 1) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {which: perturb(vit.VisionTransformer(**config, norm_layer=partial(nn.LayerNorm, eps=1e-6)), s)
            for which, s in (("encoder", seed), ("target_encoder", seed + 1))}


def ijepa(checkout: Path) -> None:
    vit = official_modules(checkout)
    config = {"img_size": [16], "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 4, "mlp_ratio": 4,
              "qkv_bias": True}
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    write("ijepa_tiny", checkout, build(vit, config), x, config, "module.")


def vjepa(checkout: Path) -> None:
    """V-JEPA: a video ViT with the 3-D sin-cos table (uniform power, as the paper's runs)."""
    vit = official_modules(checkout)
    config = {"img_size": 16, "patch_size": 4, "num_frames": 4, "tubelet_size": 2, "embed_dim": 32, "depth": 2,
              "num_heads": 4, "mlp_ratio": 2, "qkv_bias": True, "uniform_power": True}
    x = torch.randn(2, 3, 4, 16, 16, generator=torch.Generator().manual_seed(4))
    write("vjepa_tiny", checkout, build(vit, config), x, config, "module.backbone.")


def vjepa2(checkout: Path) -> None:
    """V-JEPA 2: rotary positions (no table); head dim 16, so 4 features of each head are not rotated."""
    vit = official_modules(checkout)
    config = {"img_size": (16, 16), "patch_size": 4, "num_frames": 4, "tubelet_size": 2, "embed_dim": 32,
              "depth": 2, "num_heads": 2, "mlp_ratio": 2, "qkv_bias": True, "use_rope": True, "use_sdpa": True}
    x = torch.randn(2, 3, 4, 16, 16, generator=torch.Generator().manual_seed(4))
    write("vjepa2_tiny", checkout, build(vit, config), x, config, "module.backbone.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ijepa", type=Path, help="a checkout of facebookresearch/ijepa")
    ap.add_argument("--vjepa", type=Path, help="a checkout of facebookresearch/jepa (V-JEPA)")
    ap.add_argument("--vjepa2", type=Path, help="a checkout of facebookresearch/vjepa2")
    args = ap.parse_args()
    makers = {"ijepa": ijepa, "vjepa": vjepa, "vjepa2": vjepa2}
    given = {name: path for name in makers if (path := getattr(args, name)) is not None}
    if not given:
        ap.error("give at least one checkout (--ijepa, --vjepa, --vjepa2)")
    for name, path in given.items():
        makers[name](path.resolve())


if __name__ == "__main__":
    main()
