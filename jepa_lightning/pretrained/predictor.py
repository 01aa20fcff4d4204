"""Published predictors -> our TransformerPredictor: the ``predictor`` of an official I-JEPA / V-JEPA / V-JEPA 2
training checkpoint, or of a Hugging Face ``VJEPA2Model`` folder.

Both predict a target token from the context tokens projected to the predictor's width plus one learned mask token
per target position, through pre-norm blocks, a final norm and a projection back: the layers map one to one onto
ours (``embed``, ``mask_tokens`` [n, P], ``transformer.blocks``, ``transformer.norm``, ``proj``). Positions: the
file's sin-cos table (our ``pos_embed="stored"``) or none (V-JEPA 2's rotary positions, ``"rope"``). The official
V-JEPA 2 code sorts the tokens by position before its blocks and back after; attention with rotary positions does
not depend on the order, so ours, which does not sort, gives the same predictions. The official V-JEPA / V-JEPA 2
forward uses mask token 1 by default (``mask_index=1``): pass ``mask_token_id=1`` to ours for the same output.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jepa_lightning.pretrained.files import CheckpointError, fill, read_state_dict, strip_prefix, torch_file
from jepa_lightning.pretrained.hf import VJEPA2_PREDICTOR_NAMES, to_ours


def official_predictor_state(path: Path) -> dict[str, torch.Tensor]:
    """The ``predictor`` of an official training checkpoint under our names."""
    checkpoint = torch_file(path)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("predictor"), dict) or \
            not checkpoint["predictor"]:
        raise CheckpointError(f"{path}: no 'predictor' network in the file")
    state = strip_prefix(strip_prefix(checkpoint["predictor"], "module."), "backbone.")
    out: dict[str, torch.Tensor] = {}
    tokens = sorted((k for k in state if re.fullmatch(r"mask_tokens\.\d+", k)), key=lambda k: int(k.split(".")[1]))
    if "mask_token" in state:  # I-JEPA: one token [1, 1, P]
        out["mask_tokens"] = state.pop("mask_token").reshape(1, -1)
    elif tokens:  # V-JEPA, V-JEPA 2: a ParameterList of [1, 1, P]
        out["mask_tokens"] = torch.cat([state.pop(k).reshape(1, -1) for k in tokens])
    for key, value in state.items():
        key = re.sub(r"^predictor_embed\.", "embed.", key)
        key = re.sub(r"^predictor_blocks\.", "transformer.blocks.", key)
        key = re.sub(r"^predictor_norm\.", "transformer.norm.", key)
        key = re.sub(r"^predictor_proj\.", "proj.", key)
        key = re.sub(r"^predictor_pos_embed$", "pos_embed", key)
        out[key] = value
    return out


def hf_vjepa2_predictor_state(folder: Path) -> dict[str, torch.Tensor]:
    """The predictor of a Hugging Face ``VJEPA2Model`` folder under our names."""
    state = {k[len("predictor."):]: v for k, v in read_state_dict(folder).items() if k.startswith("predictor.")}
    if not state:
        raise CheckpointError(f"{folder}: no predictor.* weights in the folder")
    out = {"embed.weight": state.pop("embeddings.predictor_embeddings.weight", None),
           "embed.bias": state.pop("embeddings.predictor_embeddings.bias", None),
           "proj.weight": state.pop("proj.weight", None), "proj.bias": state.pop("proj.bias", None)}
    if "embeddings.mask_tokens" in state:
        tokens = state.pop("embeddings.mask_tokens")
        out["mask_tokens"] = tokens.reshape(tokens.shape[0], -1)
    depth = len({k.split(".")[1] for k in state if k.startswith("layer.")})
    return {k: v for k, v in out.items() if v is not None} | to_ours(state, VJEPA2_PREDICTOR_NAMES, depth, True)


def load_predictor_into(module: nn.Module, source: str | Path) -> nn.Module:
    """Fill `module` (a TransformerPredictor built from a recipe) with the published predictor of `source` (see the
    module docstring): the same shapes, and the position mode the file implies (a table: ``pos_embed="stored"``;
    none: ``"rope"``), else a CheckpointError saying what to set."""
    from jepa_lightning.pretrained import detect_format, resolve

    path = resolve(source)
    fmt = detect_format(path)
    if fmt in ("ijepa", "vjepa"):
        state = official_predictor_state(path)
    elif fmt == "hf-vjepa2":
        state = hf_vjepa2_predictor_state(path)
    else:
        raise CheckpointError(f"{path}: a {fmt} checkpoint holds no predictor (predictors: official I-JEPA / V-JEPA "
                              f"/ V-JEPA 2 files, Hugging Face VJEPA2Model folders)")
    rope: Any = getattr(module, "rope", False)
    if "pos_embed" in state and "pos_embed" not in module.state_dict():
        raise CheckpointError(f"{path}: the predictor holds its own position table; build it with pos_embed: stored")
    if "pos_embed" not in state and not rope:
        raise CheckpointError(f"{path}: the predictor has no position table (V-JEPA 2's rotary positions); build it "
                              f"with pos_embed: rope")
    return fill(module, state, f"{path} [predictor]")


__all__ = ["hf_vjepa2_predictor_state", "load_predictor_into", "official_predictor_state"]
