"""Hugging Face ``transformers`` I-JEPA folders (``IJepaModel``) <-> our VisionTransformer."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from jepa_lightning.nn.vit import VisionTransformer
from jepa_lightning.pretrained.files import (
    CheckpointError,
    fill,
    int_pair,
    mlp_ratio,
    read_json,
    read_state_dict,
    strip_prefix,
)


def load_hf_ijepa(folder: Path, **overrides: Any) -> VisionTransformer:
    """A Hugging Face ``IJepaModel`` folder as our VisionTransformer (see the module docstring)."""
    config_path = folder / "config.json"
    config = read_json(config_path) | overrides
    needed = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "image_size",
              "patch_size")
    absent = [k for k in needed if k not in config]
    if absent:
        raise CheckpointError(f"{config_path}: missing {', '.join(absent)}")
    act = config.get("hidden_act", "gelu")
    if act != "gelu":
        raise CheckpointError(f"{config_path}: hidden_act {act!r} is not supported (our blocks use the exact GELU, "
                              f"'gelu')")
    width, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    if config.get("head_dim") not in (None, width // heads) or width % heads:
        raise CheckpointError(f"{config_path}: hidden_size {width} must split into {heads} heads of equal size "
                              f"(head_dim {config.get('head_dim')})")
    patch = int_pair(config["patch_size"], "patch_size", config_path)
    if patch[0] != patch[1]:
        raise CheckpointError(f"{config_path}: patch_size {list(patch)}: only square patches are supported")
    depth, qkv_bias = int(config["num_hidden_layers"]), bool(config.get("qkv_bias", True))
    model = VisionTransformer(img_size=int_pair(config["image_size"], "image_size", config_path), patch_size=patch[0],
                              in_chans=int(config.get("num_channels", 3)), embed_dim=width, depth=depth,
                              num_heads=heads, mlp_ratio=mlp_ratio(int(config["intermediate_size"]), width),
                              qkv_bias=qkv_bias, pos_embed="stored",
                              norm_eps=float(config.get("layer_norm_eps", 1e-12)))
    state = read_state_dict(folder)
    prefix = "ijepa." if any(k.startswith("ijepa.") for k in state) else ""
    return fill(model, hf_vit_to_ours(state, depth, qkv_bias, str(folder), prefix), str(folder))


# Hugging Face ViT-family names: the files hold the legacy names (transformers 5 renames them at load time and
# back at save time); the in-memory names of transformers 5 are mapped to them first.
_HF_V5_TO_LEGACY = ((r"^layers\.", "encoder.layer."), (r"attention\.q_proj", "attention.attention.query"),
                    (r"attention\.k_proj", "attention.attention.key"),
                    (r"attention\.v_proj", "attention.attention.value"),
                    (r"attention\.o_proj", "attention.output.dense"), (r"mlp\.fc1", "intermediate.dense"),
                    (r"mlp\.fc2", "output.dense"))


def _same_name_pairs(depth: int) -> list[tuple[str, str]]:
    """(Hugging Face legacy name, our name) of the modules mapped one to one (weight and bias alike); the
    position table and the fused qkv are handled apart."""
    pairs = [("embeddings.patch_embeddings.projection", "patch_embed.proj")]
    for i in range(depth):
        theirs, ours = f"encoder.layer.{i}.", f"transformer.blocks.{i}."
        pairs += [(theirs + "attention.output.dense", ours + "attn.proj"), (theirs + "layernorm_before", ours + "norm1"),
                  (theirs + "layernorm_after", ours + "norm2"), (theirs + "intermediate.dense", ours + "mlp.fc1"),
                  (theirs + "output.dense", ours + "mlp.fc2")]
    return pairs + [("layernorm", "transformer.norm")]


def _qkv(i: int) -> tuple[list[str], str]:
    return [f"encoder.layer.{i}.attention.attention.{n}" for n in ("query", "key", "value")], \
        f"transformer.blocks.{i}.attn.qkv"


def hf_vit_to_ours(state: dict[str, torch.Tensor], depth: int, qkv_bias: bool, source: str,
                   prefix: str = "") -> dict[str, torch.Tensor]:
    """A Hugging Face ViT-family encoder's tensors (I-JEPA) under our VisionTransformer's names: q, k, v
    concatenated into timm's fused qkv. Keys outside the encoder are left under their own names (so `fill` names
    them as unexpected)."""
    state = strip_prefix(state, prefix) if prefix else state
    legacy = {}
    for key, value in state.items():
        for pattern, repl in _HF_V5_TO_LEGACY:
            key = re.sub(pattern, repl, key)
        legacy[key] = value
    out: dict[str, torch.Tensor] = {}
    for theirs, ours in _same_name_pairs(depth):
        for suffix in (".weight", ".bias"):
            if theirs + suffix in legacy:
                out[ours + suffix] = legacy.pop(theirs + suffix)
    if "embeddings.position_embeddings" in legacy:
        out["pos_embed"] = legacy.pop("embeddings.position_embeddings")
    for i in range(depth):
        names, fused = _qkv(i)
        for suffix in (".weight",) + ((".bias",) if qkv_bias else ()):
            if all(name + suffix in legacy for name in names):
                out[fused + suffix] = torch.cat([legacy.pop(name + suffix) for name in names], 0)
    return out | legacy  # what is left could not be mapped: fill() names it


def save_hf(encoder: VisionTransformer, folder: str | Path) -> Path:
    """Write `encoder` (an image VisionTransformer) as a Hugging Face ``IJepaModel`` folder (config.json +
    model.safetensors, the names ``save_pretrained`` writes) that ``transformers`` loads with
    ``IJepaModel.from_pretrained`` and gives the same ``last_hidden_state``; the position table is written
    whether ours is computed (sincos) or stored. Video encoders (V-JEPA 2 format) are not supported yet."""
    from safetensors.torch import save_file

    if not isinstance(encoder, VisionTransformer) or len(encoder.grid_size) != 2:
        raise ValueError(f"save_hf: an image VisionTransformer is needed (V-JEPA 2's video format is not supported "
                         f"yet), got {type(encoder).__name__} with grid {getattr(encoder, 'grid_size', None)}")
    blocks = encoder.transformer.blocks
    attn, fc1 = blocks[0].attn, blocks[0].mlp.fc1
    state = {k: v.detach() for k, v in encoder.state_dict().items()}
    out = {"embeddings.position_embeddings": encoder.pos_embed.detach()}
    for theirs, ours in _same_name_pairs(len(blocks)):
        for suffix in (".weight", ".bias"):
            out[theirs + suffix] = state[ours + suffix]
    for i in range(len(blocks)):
        names, fused = _qkv(i)
        for suffix in (".weight", ".bias"):
            if fused + suffix in state:
                out |= dict(zip([n + suffix for n in names], state[fused + suffix].chunk(3, 0), strict=True))
    patch = encoder.patch_embed
    config = {"architectures": ["IJepaModel"], "model_type": "ijepa", "hidden_size": encoder.embed_dim,
              "num_hidden_layers": len(blocks), "num_attention_heads": attn.num_heads,
              "intermediate_size": fc1.out_features, "hidden_act": "gelu", "hidden_dropout_prob": 0.0,
              "attention_probs_dropout_prob": 0.0, "initializer_range": 0.02,
              "layer_norm_eps": encoder.transformer.norm.eps, "image_size": list(patch.img_size),
              "patch_size": patch.patch_size, "num_channels": patch.in_chans, "qkv_bias": attn.qkv.bias is not None}
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.clone().contiguous() for k, v in out.items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder
