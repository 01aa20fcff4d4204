"""Write the official-format checkpoint fixtures that tests/test_pretrained.py loads, from the official code itself.

    python tests/data/make_official_fixtures.py --ijepa runs/official/ijepa    # benchmarks/fidelity/official.sh clones it

For each official repository given (only facebookresearch/ijepa so far), the script imports its model code from
that checkout (never copied here), builds its ViT at a tiny config with a fixed seed, moves every weight away from
its initialisation (so a mapping error cannot hide behind zeros and ones), and writes into tests/data/official/:

- ``<name>.pth.tar``: a checkpoint in the repository's own training format (for I-JEPA, ``src/train.py``'s
  ``save_dict``: ``encoder`` / ``predictor`` / ``target_encoder`` with DDP's ``module.`` prefix, ``epoch`` ...),
  the encoder and the target encoder with different weights;
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


def ijepa(checkout: Path) -> None:
    sys.path.insert(0, str(checkout))
    from src.models.vision_transformer import VisionTransformer, vit_predictor

    config = {"img_size": [16], "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 4, "mlp_ratio": 4,
              "qkv_bias": True}
    torch.manual_seed(0)
    networks = {name: perturb(VisionTransformer(**config, norm_layer=partial(nn.LayerNorm, eps=1e-6)), seed)
                for name, seed in (("encoder", 1), ("target_encoder", 2))}
    predictor = perturb(vit_predictor(num_patches=16, embed_dim=32, predictor_embed_dim=16, depth=1, num_heads=4), 3)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        outputs = {name: net(x) for name, net in networks.items()}
    save = {name: {f"module.{k}": v for k, v in net.state_dict().items()} for name, net in networks.items()}
    save |= {"predictor": {f"module.{k}": v for k, v in predictor.state_dict().items()}, "opt": {}, "scaler": None,
             "epoch": 1, "loss": 0.5, "batch_size": 2, "world_size": 1, "lr": 1e-3}
    OUT.mkdir(exist_ok=True)
    torch.save(save, OUT / "ijepa_tiny.pth.tar")
    torch.save({"input": x, "outputs": outputs, "config": config, "layer_norm_eps": 1e-6,
                "repository": "facebookresearch/ijepa", "commit": commit_of(checkout)}, OUT / "ijepa_tiny_io.pt")
    print(f"wrote {OUT / 'ijepa_tiny.pth.tar'} and its io file (facebookresearch/ijepa @ {commit_of(checkout)})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ijepa", type=Path, help="a checkout of facebookresearch/ijepa")
    args = ap.parse_args()
    if args.ijepa is None:
        ap.error("give at least one checkout (--ijepa)")
    ijepa(args.ijepa.resolve())


if __name__ == "__main__":
    main()
