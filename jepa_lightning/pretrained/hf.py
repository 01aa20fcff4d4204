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


def read_config(path: Path, overrides: dict[str, Any], needed: tuple[str, ...]) -> dict[str, Any]:
    """A folder's config.json with `overrides` applied, checked for the `needed` keys and the one activation our
    blocks have (the exact GELU)."""
    config = read_json(path) | overrides
    absent = [k for k in needed if k not in config]
    if absent:
        raise CheckpointError(f"{path}: missing {', '.join(absent)}")
    act = config.get("hidden_act", "gelu")
    if act != "gelu":
        raise CheckpointError(f"{path}: hidden_act {act!r} is not supported (our blocks use the exact GELU, 'gelu')")
    return config


def load_hf_ijepa(folder: Path, **overrides: Any) -> VisionTransformer:
    """A Hugging Face ``IJepaModel`` folder as our VisionTransformer (see the module docstring)."""
    config_path = folder / "config.json"
    config = read_config(config_path, overrides, ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                                  "intermediate_size", "image_size", "patch_size"))
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
    return fill(model, hf_vit_to_ours(state, depth, qkv_bias, prefix), str(folder))


# Hugging Face ViT-family names: the files hold the legacy names (transformers 5 renames them at load time and
# back at save time); the in-memory names of transformers 5 are mapped to them first.
_HF_V5_TO_LEGACY = ((r"^layers\.", "encoder.layer."), (r"attention\.q_proj", "attention.attention.query"),
                    (r"attention\.k_proj", "attention.attention.key"),
                    (r"attention\.v_proj", "attention.attention.value"),
                    (r"attention\.o_proj", "attention.output.dense"), (r"mlp\.fc1", "intermediate.dense"),
                    (r"mlp\.fc2", "output.dense"))


def load_hf_vjepa2(folder: Path, **overrides: Any) -> VisionTransformer:
    """The encoder of a Hugging Face ``VJEPA2Model`` folder as our video VisionTransformer with RoPE positions
    (``pos_embed="rope"``, `jepa_lightning.nn.rope`): input clips [B, C, T, H, W] (transformers takes
    [B, T, C, H, W]); its output is the folder's ``encoder`` ``last_hidden_state``. The folder's predictor
    (``predictor.*``) is another network and is not read here."""
    config = read_config(folder / "config.json", overrides, ("hidden_size", "num_hidden_layers",
                                                             "num_attention_heads", "patch_size", "crop_size",
                                                             "frames_per_clip", "tubelet_size"))
    width, depth, qkv_bias = int(config["hidden_size"]), int(config["num_hidden_layers"]), bool(config.get("qkv_bias", True))
    model = VisionTransformer(img_size=int(config["crop_size"]), patch_size=int(config["patch_size"]),
                              in_chans=int(config.get("in_chans", 3)), num_frames=int(config["frames_per_clip"]),
                              tubelet_size=int(config["tubelet_size"]), embed_dim=width, depth=depth,
                              num_heads=int(config["num_attention_heads"]),
                              mlp_ratio=mlp_ratio(int(width * float(config.get("mlp_ratio", 4.0))), width),
                              qkv_bias=qkv_bias, pos_embed="rope", norm_eps=float(config.get("layer_norm_eps", 1e-6)))
    state = {k[len("encoder."):] if k.startswith("encoder.") else k: v
             for k, v in read_state_dict(folder).items() if not k.startswith("predictor.")}
    return fill(model, to_ours(state, VJEPA2_NAMES, depth, qkv_bias), str(folder))


class Names:
    """One family's names of what our VisionTransformer holds: block `i`'s prefix, its modules named one to one
    with ours (weight and bias alike), its separate q / k / v (fused into our qkv), and the stem and final norm."""

    def __init__(self, patch: str | None, block: str, same: dict[str, str], qkv: tuple[str, str, str],
                 norm: str) -> None:
        self.patch, self.block, self.same, self.qkv, self.norm = patch, block, same, qkv, norm

    def pairs(self, depth: int) -> list[tuple[str, str]]:
        """(their module, our module) mapped one to one, over `depth` blocks."""
        out = [(self.patch, "patch_embed.proj")] if self.patch else []
        for i in range(depth):
            out += [(self.block.format(i) + theirs, f"transformer.blocks.{i}.{ours}") for theirs, ours in self.same.items()]
        return out + [(self.norm, "transformer.norm")]

    def fused(self, i: int) -> tuple[list[str], str]:
        """Block `i`'s q, k, v modules and our fused one."""
        return [self.block.format(i) + n for n in self.qkv], f"transformer.blocks.{i}.attn.qkv"


# the names Hugging Face's ViT family (I-JEPA) writes to its files (transformers 5 renames them when it loads and
# back when it saves), and V-JEPA 2's encoder (under `encoder.` in a VJEPA2Model folder)
IJEPA_NAMES = Names("embeddings.patch_embeddings.projection", "encoder.layer.{}.",
                    {"attention.output.dense": "attn.proj", "layernorm_before": "norm1", "layernorm_after": "norm2",
                     "intermediate.dense": "mlp.fc1", "output.dense": "mlp.fc2"},
                    ("attention.attention.query", "attention.attention.key", "attention.attention.value"), "layernorm")
VJEPA2_BLOCK = {"attention.proj": "attn.proj", "norm1": "norm1", "norm2": "norm2", "mlp.fc1": "mlp.fc1",
                "mlp.fc2": "mlp.fc2"}
VJEPA2_NAMES = Names("embeddings.patch_embeddings.proj", "layer.{}.", VJEPA2_BLOCK,
                     ("attention.query", "attention.key", "attention.value"), "layernorm")
VJEPA2_PREDICTOR_NAMES = Names(None, "layer.{}.", VJEPA2_BLOCK, ("attention.query", "attention.key", "attention.value"),
                               "layernorm")


def to_ours(state: dict[str, torch.Tensor], names: Names, depth: int, qkv_bias: bool) -> dict[str, torch.Tensor]:
    """`state` under our VisionTransformer's names (q, k, v concatenated into timm's fused qkv); keys it does not
    know stay under their own names, so `fill` names them as unexpected."""
    rest, out = dict(state), {}
    for theirs, ours in names.pairs(depth):
        for suffix in (".weight", ".bias"):
            if theirs + suffix in rest:
                out[ours + suffix] = rest.pop(theirs + suffix)
    for i in range(depth):
        parts, fused = names.fused(i)
        for suffix in (".weight",) + ((".bias",) if qkv_bias else ()):
            if all(name + suffix in rest for name in parts):
                out[fused + suffix] = torch.cat([rest.pop(name + suffix) for name in parts], 0)
    return out | rest


def hf_vit_to_ours(state: dict[str, torch.Tensor], depth: int, qkv_bias: bool, prefix: str = "") -> dict[str, torch.Tensor]:
    """A Hugging Face I-JEPA encoder's tensors (the files' names, or transformers 5's in-memory names) under our
    VisionTransformer's names, the position table included."""
    state = strip_prefix(state, prefix) if prefix else state
    legacy = {}
    for key, value in state.items():
        for pattern, repl in _HF_V5_TO_LEGACY:
            key = re.sub(pattern, repl, key)
        legacy[key] = value
    out = to_ours(legacy, IJEPA_NAMES, depth, qkv_bias)
    if "embeddings.position_embeddings" in out:
        out["pos_embed"] = out.pop("embeddings.position_embeddings")
    return out


def _their_tensors(encoder: VisionTransformer, names: Names, prefix: str = "") -> dict[str, torch.Tensor]:
    """`encoder`'s tensors under a family's names (qkv split into q, k, v), each name after `prefix`."""
    blocks = encoder.transformer.blocks
    state = {k: v.detach() for k, v in encoder.state_dict().items()}
    out = {}
    for theirs, ours in names.pairs(len(blocks)):
        for suffix in (".weight", ".bias"):
            out[prefix + theirs + suffix] = state[ours + suffix]
    for i in range(len(blocks)):
        parts, fused = names.fused(i)
        for suffix in (".weight", ".bias"):
            if fused + suffix in state:
                out |= dict(zip([prefix + n + suffix for n in parts], state[fused + suffix].chunk(3, 0), strict=True))
    return out


def save_hf(encoder: VisionTransformer, folder: str | Path) -> Path:
    """Write `encoder` as a Hugging Face folder that ``transformers`` loads with ``from_pretrained`` and that gives
    the same output: an image ViT with a position table as an ``IJepaModel`` (``last_hidden_state``; the table is
    written whether ours is computed or stored), a video ViT with rotary positions (``pos_embed="rope"``, square
    frames) as a ``VJEPA2Model`` (its encoder's ``last_hidden_state`` on clips [B, T, C, H, W]; the folder holds
    no predictor weights, which transformers then initialises at random and says so)."""
    from safetensors.torch import save_file

    if not isinstance(encoder, VisionTransformer):
        raise ValueError(f"save_hf: a VisionTransformer is needed, got {type(encoder).__name__}")
    video = len(encoder.grid_size) == 3
    patch, blocks = encoder.patch_embed, encoder.transformer.blocks
    attn, fc1 = blocks[0].attn, blocks[0].mlp.fc1
    common = {"hidden_size": encoder.embed_dim, "num_hidden_layers": len(blocks), "num_attention_heads": attn.num_heads,
              "hidden_act": "gelu", "initializer_range": 0.02, "layer_norm_eps": encoder.transformer.norm.eps,
              "patch_size": patch.patch_size, "qkv_bias": attn.qkv.bias is not None}
    if video and encoder.rope and patch.img_size[0] == patch.img_size[1]:
        out = _their_tensors(encoder, VJEPA2_NAMES, "encoder.")
        config = {"architectures": ["VJEPA2Model"], "model_type": "vjepa2", **common,
                  "mlp_ratio": fc1.out_features / encoder.embed_dim, "crop_size": patch.img_size[0],
                  "frames_per_clip": patch.num_frames, "tubelet_size": patch.tubelet_size, "in_chans": patch.in_chans,
                  "attention_probs_dropout_prob": 0.0, "drop_path_rate": 0.0}
    elif not video and not encoder.rope:
        out = _their_tensors(encoder, IJEPA_NAMES) | {"embeddings.position_embeddings": encoder.pos_embed.detach()}
        config = {"architectures": ["IJepaModel"], "model_type": "ijepa", **common,
                  "intermediate_size": fc1.out_features, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
                  "image_size": list(patch.img_size), "num_channels": patch.in_chans}
    else:
        raise ValueError(f"save_hf: writes image ViTs with a position table (IJepaModel) and video ViTs with rotary "
                         f"positions on square frames (VJEPA2Model); got a {'video' if video else 'image'} ViT with "
                         f"{'rotary positions' if encoder.rope else 'a position table'} at {list(patch.img_size)} px")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.clone().contiguous() for k, v in out.items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return folder
