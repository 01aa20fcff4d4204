"""Checkpoint files of the official JEPA code -> our VisionTransformer: I-JEPA (facebookresearch/ijepa), V-JEPA
(facebookresearch/jepa) and V-JEPA 2 (facebookresearch/vjepa2).

The three training scripts save the same kind of file: a dict with ``encoder``, ``predictor`` and
``target_encoder`` state dicts (DDP's ``module.`` prefix; the video repositories' wrapper adds ``backbone.``),
optimizer state and counters. Their ViTs name their layers as timm (and we) do, under ``blocks.*`` and ``norm.*``.
No config is stored, so the architecture is read from the tensors: width, channels, patch (and tubelet) from the
patch embedding, depth from the blocks, MLP width, qkv bias; positions: a stored table (I-JEPA, V-JEPA; its length
gives a square image size) or none (V-JEPA 2: rotary positions, ``pos_embed="rope"``). What the tensors cannot
tell is given or taken from the official model tables: the head count (`HEADS` by width; ``num_heads=``
otherwise), the clip size of a video file (``img_size``, ``num_frames``: the size of the clips you will feed; a
V-JEPA file's table fixes their product), LayerNorm epsilon 1e-6 as every official model.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from jepa_lightning.nn.vit import VisionTransformer
from jepa_lightning.pretrained.files import CheckpointError, fill, mlp_ratio, strip_prefix, torch_file

# the official models' head counts by width (src/models/vision_transformer.py vit_* of each repository); V-JEPA 2's
# ViT-g is vit_giant_xformers (22 heads), I-JEPA's and V-JEPA's vit_giant has 16
HEADS = {"table": {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16, 1408: 16, 1664: 16},
         "rope": {192: 3, 384: 6, 768: 12, 1024: 16, 1280: 16, 1408: 22}}
NETWORKS = ("target_encoder", "encoder")


def network_state(checkpoint: Any, which: str, path: Path) -> dict[str, Any]:
    """The `which` state dict of an official checkpoint, wrapper prefixes removed."""
    if which not in NETWORKS or not isinstance(checkpoint, dict) or not isinstance(checkpoint.get(which), dict):
        present = [k for k in NETWORKS if isinstance(checkpoint, dict) and isinstance(checkpoint.get(k), dict)]
        raise CheckpointError(f"{path}: no {which!r} network in the file (it holds {present})")
    return strip_prefix(strip_prefix(checkpoint[which], "module."), "backbone.")


def load_official(path: Path, which: str = "target_encoder", num_heads: int | None = None,
                  img_size: int | tuple[int, int] | None = None, num_frames: int | None = None,
                  layer_norm_eps: float = 1e-6) -> VisionTransformer:
    """An official I-JEPA / V-JEPA / V-JEPA 2 checkpoint file's `which` network (default the target encoder, the
    one the papers evaluate; or ``encoder``) as our VisionTransformer (see the module docstring)."""
    state = network_state(torch_file(path), which, path)
    source = f"{path} [{which}]"
    for key in ("patch_embed.proj.weight", "blocks.0.mlp.fc1.weight"):
        if key not in state:
            raise CheckpointError(f"{source}: missing {key}; not an official JEPA encoder")
    patch = state["patch_embed.proj.weight"]
    width, in_chans = int(patch.shape[0]), int(patch.shape[1])
    video, rope = patch.dim() == 5, "pos_embed" not in state
    tubelet = int(patch.shape[2]) if video else 1
    tokens = None if rope else int(state["pos_embed"].shape[1])
    if img_size is None and not rope and not video:
        side = round(tokens ** 0.5)
        img_size = side * int(patch.shape[-1]) if side * side == tokens else None
    if img_size is None or (video and num_frames is None):
        raise CheckpointError(f"{source}: give img_size{' and num_frames' if video else ''} (the size of the "
                              f"{'clips' if video else 'images'} you will feed): the file does not store it")
    heads = num_heads or HEADS["rope" if rope else "table"].get(width)
    if heads is None:
        raise CheckpointError(f"{source}: width {width} is none of the official models' "
                              f"({sorted(HEADS['rope' if rope else 'table'])}); give num_heads")
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    model = VisionTransformer(img_size=img_size, patch_size=int(patch.shape[-1]), in_chans=in_chans,
                              num_frames=num_frames if video else 1, tubelet_size=tubelet or 1, embed_dim=width,
                              depth=depth, num_heads=heads,
                              mlp_ratio=mlp_ratio(int(state["blocks.0.mlp.fc1.weight"].shape[0]), width),
                              qkv_bias="blocks.0.attn.qkv.bias" in state,
                              pos_embed="rope" if rope else "stored", norm_eps=float(layer_norm_eps))
    if tokens is not None and tokens != model.num_patches:
        raise CheckpointError(f"{source}: pos_embed holds {tokens} positions, a model of {img_size} px"
                              f"{f' x {num_frames} frames' if video else ''} has {model.num_patches}")
    # the official names are timm's, as ours, under two roots: blocks.* and norm.* live in our transformer stack
    ours = {re.sub(r"^(blocks|norm)\.", r"transformer.\1.", k): v for k, v in state.items()}
    return fill(model, ours, source)


__all__ = ["HEADS", "NETWORKS", "load_official", "network_state"]
