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
- ``<name>_io.pt``: an input batch, the official forward's output of each network on it, the predictor's inputs
  (context and target indices, the context encoder's tokens on the context) and output, the tiny config and the
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


def official_modules(checkout: Path, predictor_module: str):
    """The checkout's ViT and predictor modules, imported fresh (the three repositories all call their package
    `src`)."""
    import importlib

    for name in [m for m in sys.modules if m == "src" or m.startswith("src.")]:
        del sys.modules[name]
    sys.path.insert(0, str(checkout))
    vit = importlib.import_module("src.models.vision_transformer")
    pred = importlib.import_module(predictor_module)
    sys.path.remove(str(checkout))
    return vit, pred


def masks(tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Context and target indices [2, K] (different per sample, disjoint, unsorted targets)."""
    g = torch.Generator().manual_seed(5)
    rows = [torch.randperm(tokens, generator=g) for _ in range(2)]
    k = tokens // 2
    return torch.stack([r[:k].sort().values for r in rows]), torch.stack([r[k:k + tokens // 4] for r in rows])


def write(name: str, checkout: Path, networks: dict[str, nn.Module], x: torch.Tensor, config: dict,
          prefix: str, predictor: nn.Module, predict, pred_config: dict) -> None:
    """The checkpoint in the official format (state dicts under `prefix`) and the io file; `predict(z, ctx, tgt)`
    runs the official predictor on the context encoder's tokens `z`."""
    context, target = masks(config["tokens"])
    with torch.no_grad():
        outputs = {which: net(x) for which, net in networks.items()}
        tokens = networks["encoder"](x, masks=[context])
        predicted = predict(tokens, context, target)
    save = {which: {prefix + k: v for k, v in net.state_dict().items()} for which, net in networks.items()}
    save |= {"predictor": {prefix + k: v for k, v in predictor.state_dict().items()}, "opt": {}, "scaler": None,
             "epoch": 1, "loss": 0.5, "batch_size": 2, "world_size": 1, "lr": 1e-3}
    OUT.mkdir(exist_ok=True)
    torch.save(save, OUT / f"{name}.pth.tar")
    repository = {"ijepa": "facebookresearch/ijepa", "vjepa": "facebookresearch/jepa",
                  "vjepa2": "facebookresearch/vjepa2"}[name.split("_")[0]]
    torch.save({"input": x, "outputs": outputs, "config": config, "layer_norm_eps": 1e-6, "repository": repository,
                "predictor": {"context": context, "target": target, "context_tokens": tokens, "output": predicted,
                              "config": pred_config},
                "commit": commit_of(checkout)}, OUT / f"{name}_io.pt")
    print(f"wrote {OUT / name}.pth.tar and its io file ({repository} @ {commit_of(checkout)})")


def build(vit, config: dict, seed: int = 1) -> dict[str, nn.Module]:
    torch.manual_seed(0)
    config = {k: v for k, v in config.items() if k != "tokens"}
    return {which: perturb(vit.VisionTransformer(**config, norm_layer=partial(nn.LayerNorm, eps=1e-6)), s)
            for which, s in (("encoder", seed), ("target_encoder", seed + 1))}


def ijepa(checkout: Path) -> None:
    vit, pred = official_modules(checkout, "src.models.vision_transformer")
    config = {"img_size": [16], "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 4, "mlp_ratio": 4,
              "qkv_bias": True, "tokens": 16}
    pred_config = {"embed_dim": 32, "predictor_embed_dim": 16, "depth": 1, "num_heads": 4}
    predictor = perturb(pred.vit_predictor(num_patches=16, **pred_config), 3)
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    write("ijepa_tiny", checkout, build(vit, config), x, config, "module.", predictor,
          lambda z, c, t: predictor(z, [c], [t]), pred_config | {"mask_index": 0})


def vjepa(checkout: Path) -> None:
    """V-JEPA: a video ViT with the 3-D sin-cos table (uniform power, as the paper's runs)."""
    vit, pred = official_modules(checkout, "src.models.predictor")
    config = {"img_size": 16, "patch_size": 4, "num_frames": 4, "tubelet_size": 2, "embed_dim": 32, "depth": 2,
              "num_heads": 4, "mlp_ratio": 2, "qkv_bias": True, "uniform_power": True, "tokens": 32}
    pred_config = {"embed_dim": 32, "predictor_embed_dim": 16, "depth": 1, "num_heads": 4}
    predictor = perturb(pred.vit_predictor(img_size=16, patch_size=4, num_frames=4, tubelet_size=2,
                                           uniform_power=True, use_mask_tokens=True, num_mask_tokens=2,
                                           **pred_config), 3)
    x = torch.randn(2, 3, 4, 16, 16, generator=torch.Generator().manual_seed(4))
    write("vjepa_tiny", checkout, build(vit, config), x, config, "module.backbone.", predictor,
          lambda z, c, t: predictor(z, None, [c], [t], mask_index=1), pred_config | {"mask_index": 1})


def vjepa2(checkout: Path) -> None:
    """V-JEPA 2: rotary positions (no table); head dim 16, so 4 features of each head are not rotated."""
    vit, pred = official_modules(checkout, "src.models.predictor")
    config = {"img_size": (16, 16), "patch_size": 4, "num_frames": 4, "tubelet_size": 2, "embed_dim": 32,
              "depth": 2, "num_heads": 2, "mlp_ratio": 2, "qkv_bias": True, "use_rope": True, "use_sdpa": True,
              "tokens": 32}
    pred_config = {"embed_dim": 32, "predictor_embed_dim": 32, "depth": 1, "num_heads": 2}
    predictor = perturb(pred.vit_predictor(img_size=(16, 16), patch_size=4, num_frames=4, tubelet_size=2,
                                           use_mask_tokens=True, num_mask_tokens=2, use_rope=True, use_sdpa=True,
                                           **pred_config), 3)
    x = torch.randn(2, 3, 4, 16, 16, generator=torch.Generator().manual_seed(4))
    write("vjepa2_tiny", checkout, build(vit, config), x, config, "module.backbone.", predictor,
          lambda z, c, t: predictor(z, [c], [t], mask_index=1), pred_config | {"mask_index": 1})


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
