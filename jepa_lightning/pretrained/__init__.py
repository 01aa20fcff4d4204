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

- ``ijepa``: a checkpoint file of the official I-JEPA code (facebookresearch/ijepa ``src/train.py``: a dict with
  ``encoder``, ``predictor``, ``target_encoder`` state dicts, ``module.`` prefixes from DDP, optimizer state ...).
  ``which`` picks the network (default ``target_encoder``, the one the paper evaluates; or ``encoder``). The
  file stores no config: width, patch, image size (square), depth, MLP width and qkv bias are read from the
  tensors' shapes, the head count from the official model table by width (``OFFICIAL_HEADS``; ``num_heads=``
  for other widths), LayerNorm epsilon 1e-6 as the official models; the position table is the file's.

Hub ids download with ``huggingface_hub`` (``pip install jepa-lightning[hf]``); without it, or without internet,
the error says how to pass a local folder instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from jepa_lightning.pretrained.files import (
    WEIGHT_FILES,
    CheckpointError,
    fill,
    is_hub_id,
    read_json,
    resolve,
    strip_prefix,
    torch_file,
)
from jepa_lightning.pretrained.hf import load_hf_ijepa, load_hf_vjepa2, save_hf
from jepa_lightning.pretrained.official import OFFICIAL_HEADS, load_official_ijepa

LOADERS: dict[str, Callable[..., nn.Module]] = {"hf-ijepa": load_hf_ijepa, "hf-vjepa2": load_hf_vjepa2,
                                                "ijepa": load_official_ijepa}


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
    the network of an official I-JEPA file: "teacher" / "target_encoder" -> its target encoder, "encoder" /
    "student" / "context_encoder" -> its context encoder. The module needs ``pos_embed="stored"`` (its position
    table then is the checkpoint's and is saved with it)."""
    path = resolve(source)
    fmt = detect_format(path)
    options: dict[str, Any] = {}
    if fmt == "ijepa":
        which = {"teacher": "target_encoder", "target_encoder": "target_encoder", "encoder": "encoder",
                 "student": "encoder", "context_encoder": "encoder"}.get(key)
        if which is None:
            raise CheckpointError(f"{path}: checkpoint key {key!r} names no network of an official I-JEPA file "
                                  f"(teacher / target_encoder or encoder / student)")
        blocks = getattr(getattr(module, "transformer", None), "blocks", None)
        options = {"which": which} | ({"num_heads": blocks[0].attn.num_heads} if blocks else {})
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
    if path.is_file():
        state = torch_file(path)
        if isinstance(state, dict) and any(isinstance(state.get(k), dict) for k in ("target_encoder", "encoder")):
            net = strip_prefix(state.get("target_encoder") or state["encoder"], "module.")
            if "patch_embed.proj.weight" in net and net["patch_embed.proj.weight"].dim() == 4:
                return "ijepa"
        raise CheckpointError(f"{path}: not a supported checkpoint file; expected an official I-JEPA checkpoint "
                              f"(a dict with 'target_encoder' / 'encoder' state dicts of a 2-D ViT)")
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


__all__ = ["CheckpointError", "LOADERS", "OFFICIAL_HEADS", "detect_format", "fill", "load_encoder", "load_into",
           "published_format", "save_hf"]
