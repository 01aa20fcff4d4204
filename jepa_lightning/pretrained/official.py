"""Checkpoint files of the official I-JEPA code (facebookresearch/ijepa) -> our VisionTransformer."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from jepa_lightning.nn.vit import VisionTransformer
from jepa_lightning.pretrained.files import CheckpointError, fill, mlp_ratio, strip_prefix, torch_file

# the official I-JEPA models' head counts by width (facebookresearch/ijepa src/models/vision_transformer.py vit_*)
OFFICIAL_HEADS = {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16, 1408: 16}


def load_official_ijepa(path: Path, which: str = "target_encoder", num_heads: int | None = None,
                        **overrides: Any) -> VisionTransformer:
    """An official I-JEPA checkpoint file's `which` network as our VisionTransformer (see the module docstring).
    `overrides`: ``layer_norm_eps`` (default 1e-6), ``img_size`` (default: square, from the position table)."""
    unknown = set(overrides) - {"layer_norm_eps", "img_size"}
    if unknown:
        raise TypeError(f"load_encoder({path}): unknown options {sorted(unknown)} for an official I-JEPA file "
                        f"(which, num_heads, layer_norm_eps, img_size)")
    checkpoint = torch_file(path)
    if which not in ("target_encoder", "encoder") or not isinstance(checkpoint.get(which), dict):
        present = [k for k in ("target_encoder", "encoder") if isinstance(checkpoint.get(k), dict)]
        raise CheckpointError(f"{path}: no {which!r} network in the file (it holds {present})")
    state = strip_prefix(checkpoint[which], "module.")
    source = f"{path} [{which}]"
    for key in ("patch_embed.proj.weight", "pos_embed", "blocks.0.mlp.fc1.weight"):
        if key not in state:
            raise CheckpointError(f"{source}: missing {key}; not an official I-JEPA encoder")
    width, in_chans, patch, _ = state["patch_embed.proj.weight"].shape
    tokens = state["pos_embed"].shape[1]
    side = round(tokens ** 0.5)
    img_size = overrides.get("img_size") or (side * patch if side * side == tokens else None)
    if img_size is None:
        raise CheckpointError(f"{source}: pos_embed holds {tokens} positions, not a square grid; give img_size")
    heads = num_heads or OFFICIAL_HEADS.get(int(width))
    if heads is None:
        raise CheckpointError(f"{source}: width {width} is none of the official models' "
                              f"({sorted(OFFICIAL_HEADS)}); give num_heads")
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    model = VisionTransformer(img_size=img_size, patch_size=int(patch), in_chans=int(in_chans), embed_dim=int(width),
                              depth=depth, num_heads=heads,
                              mlp_ratio=mlp_ratio(int(state["blocks.0.mlp.fc1.weight"].shape[0]), int(width)),
                              qkv_bias="blocks.0.attn.qkv.bias" in state, pos_embed="stored",
                              norm_eps=float(overrides.get("layer_norm_eps", 1e-6)))
    # the official names are timm's, as ours, under two roots: blocks.* and norm.* live in our transformer stack
    ours = {re.sub(r"^(blocks|norm)\.", r"transformer.\1.", k): v for k, v in state.items()}
    return fill(model, ours, source)
