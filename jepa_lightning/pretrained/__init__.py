"""Published JEPA encoders into our modules: `load_encoder(source)`.

`source` is a local folder or file, or a Hugging Face hub id (``facebook/ijepa_vith14_1k``). The format is
detected from what the source holds; the architecture (width, depth, heads, patch, image size, LayerNorm epsilon,
qkv bias) is read from the checkpoint's own config, and every weight, the position table included, comes from the
checkpoint: nothing is re-derived. Every checkpoint tensor must map onto exactly one of ours with the same shape,
and every one of ours must be given; otherwise the load fails naming the keys (and both shapes). The model is
built and filled before it is returned, so a failed load leaves nothing half-loaded.

Formats:
- ``hf-ijepa``: a Hugging Face ``transformers`` folder of an ``IJepaModel`` (``config.json`` with
  ``model_type: ijepa`` + ``model.safetensors``, a sharded ``model.safetensors.index.json`` or
  ``pytorch_model.bin``), as ``save_pretrained`` writes it and the hub serves it. Read with ``safetensors`` and
  ``json`` only: loading needs neither ``transformers`` nor ``huggingface_hub``. Becomes our
  :class:`~jepa_lightning.nn.vit.VisionTransformer` (``pos_embed="stored"``); its output on the same pixels is
  ``IJepaModel``'s ``last_hidden_state``.

- ``hf-vjepa2``: a Hugging Face ``VJEPA2Model`` folder: its encoder as our video ViT with V-JEPA 2's rotary
  positions (``pos_embed="rope"``); input clips ``[B, C, T, H, W]``.
- ``ours``: our Lightning ``.ckpt`` (the network ``which``, default ``teacher``) or an encoder exported to
  ``.safetensors``, built from the architecture the run recorded (`jepa_lightning.pretrained.ours`).
- ``ijepa`` / ``vjepa``: a training checkpoint file of the official code, images (facebookresearch/ijepa) or
  video (facebookresearch/jepa, facebookresearch/vjepa2): see `jepa_lightning.pretrained.official`. ``which``
  picks the network (default ``target_encoder``, the one the papers evaluate; or ``encoder``).

Hub ids download with ``huggingface_hub`` (``pip install jepa-lightning[hf]``); without it, or without internet,
the error says how to pass a local folder instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from jepa_lightning.nn.vit import VisionTransformer
from jepa_lightning.pretrained.files import (
    WEIGHT_FILES,
    CheckpointError,
    fill,
    is_hub_id,
    read_json,
    resolve,
    torch_file,
)
from jepa_lightning.pretrained.hf import load_hf_ijepa, load_hf_vjepa2, save_hf
from jepa_lightning.pretrained.official import HEADS, NETWORKS, load_official, network_state
from jepa_lightning.pretrained.ours import load_ours
from jepa_lightning.pretrained.predictor import load_predictor_into

LOADERS: dict[str, Callable[..., nn.Module]] = {"hf-ijepa": load_hf_ijepa, "hf-vjepa2": load_hf_vjepa2,
                                                "ijepa": load_official, "vjepa": load_official, "ours": load_ours}
# the checkpoint key of our methods -> the network of an official file
OFFICIAL_NETWORK = {"teacher": "target_encoder", "target_encoder": "target_encoder", "encoder": "encoder",
                    "student": "encoder", "context_encoder": "encoder"}


# --------------------------------------------------------------------------------------------- the entry point
def load_encoder(source: str | Path, **overrides: Any) -> nn.Module:
    """The encoder held by `source` (a folder, a file or a hub id; see the module docstring), in eval mode.
    `overrides` replace entries of the checkpoint's config (e.g. ``layer_norm_eps``) before the model is built."""
    path = resolve(source)
    fmt = detect_format(path)
    return LOADERS[fmt](path, **overrides).eval()


def load_into(module: nn.Module, source: str | Path, key: str = "teacher") -> nn.Module:
    """Fill `module` (built from a recipe) with the published encoder of `source`: every weight and the position
    table, the same shapes, and the same LayerNorm epsilon (else a CheckpointError naming both values). `key` picks
    the network of an official file: "teacher" / "target_encoder" -> its target encoder, "encoder" / "student" /
    "context_encoder" -> its context encoder (whose head count and clip size are then the module's). The module
    needs ``pos_embed="stored"`` for a checkpoint with a position table (it is then the checkpoint's and is saved
    with it), ``"rope"`` for V-JEPA 2."""
    path = resolve(source)
    fmt = detect_format(path)
    options: dict[str, Any] = {}
    if fmt in ("ijepa", "vjepa"):
        which = OFFICIAL_NETWORK.get(key)
        if which is None:
            raise CheckpointError(f"{path}: checkpoint key {key!r} names no network of an official file "
                                  f"(teacher / target_encoder or encoder / student)")
        options = {"which": which}
        if isinstance(module, VisionTransformer):
            options |= {"num_heads": module.transformer.blocks[0].attn.num_heads,
                        "img_size": module.patch_embed.img_size}
            options |= {"num_frames": module.patch_embed.num_frames} if len(module.grid_size) == 3 else {}
    published = LOADERS[fmt](path, **options)
    norm = getattr(getattr(module, "transformer", None), "norm", None)
    if isinstance(norm, nn.LayerNorm) and norm.eps != published.transformer.norm.eps:
        raise CheckpointError(f"{path}: its LayerNorms use eps {published.transformer.norm.eps:g}, the model built "
                              f"here {norm.eps:g}; set norm_eps: {published.transformer.norm.eps:g}")
    state = published.state_dict()
    if "pos_embed" in state and "pos_embed" not in module.state_dict():
        raise CheckpointError(f"{path}: the checkpoint holds its own position table; build the encoder with "
                              f"pos_embed: stored so that it is loaded (and saved)")
    return fill(module, state, str(path))


def published_format(path: str | Path) -> str | None:
    """The format of `path` when it is a published checkpoint `load_encoder` reads, None for anything else (our
    Lightning checkpoints, safetensors exports, sharded checkpoint folders)."""
    p = Path(path).expanduser()
    if not p.exists():
        return "hub" if is_hub_id(str(path)) else None
    if p.is_dir():
        return "hf" if (p / "config.json").is_file() else None
    if p.suffix in (".ckpt", ".safetensors"):
        return None
    try:
        return detect_format(p)
    except CheckpointError:
        return None


def detect_format(path: Path) -> str:
    """The format name of a local checkpoint folder or file (a key of `LOADERS`)."""
    if path.is_file() and path.suffix in (".ckpt", ".safetensors"):
        return "ours"
    if path.is_file():
        checkpoint = torch_file(path)
        present = [k for k in NETWORKS if isinstance(checkpoint, dict) and isinstance(checkpoint.get(k), dict)]
        if present:
            patch = network_state(checkpoint, present[0], path).get("patch_embed.proj.weight")
            if patch is not None and patch.dim() in (4, 5):
                return "ijepa" if patch.dim() == 4 else "vjepa"
        raise CheckpointError(f"{path}: not a supported checkpoint file; expected an official I-JEPA / V-JEPA / "
                              f"V-JEPA 2 checkpoint (a dict with 'target_encoder' / 'encoder' state dicts of a ViT)")
    if path.is_dir():
        config = path / "config.json"
        if config.is_file():
            model_type = read_json(config).get("model_type")
            if model_type in ("ijepa", "vjepa2"):
                return f"hf-{model_type}"
            raise CheckpointError(f"{config}: model_type {model_type!r} is not a supported Hugging Face encoder "
                                  f"(supported: 'ijepa', 'vjepa2')")
        raise CheckpointError(f"{path}: a folder without config.json; expected a Hugging Face model folder "
                              f"(config.json + one of {', '.join(WEIGHT_FILES)})")
    raise CheckpointError(f"{path}: not a file or folder")


__all__ = ["CheckpointError", "HEADS", "LOADERS", "detect_format", "fill", "load_encoder", "load_into",
           "load_predictor_into", "published_format", "save_hf"]
