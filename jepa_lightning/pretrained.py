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

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from jepa_lightning.nn.vit import VisionTransformer

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


class CheckpointError(ValueError):
    """A checkpoint that cannot become one of our modules: the message names the file, the key and the shapes."""


# --------------------------------------------------------------------------------------------- the entry point
def load_encoder(source: str | Path, **overrides: Any) -> nn.Module:
    """The encoder held by `source` (a folder, a file or a hub id; see the module docstring), in eval mode.
    `overrides` replace entries of the checkpoint's config (e.g. ``layer_norm_eps``) before the model is built."""
    path = _resolve(source)
    fmt = detect_format(path)
    return LOADERS[fmt](path, **overrides).eval()


def load_into(module: nn.Module, source: str | Path, key: str = "teacher") -> nn.Module:
    """Fill `module` (built from a recipe) with the published encoder of `source`: every weight and the position
    table, the same shapes, and the same LayerNorm epsilon (else a CheckpointError naming both values). `key` picks
    the network of an official I-JEPA file: "teacher" / "target_encoder" -> its target encoder, "encoder" /
    "student" / "context_encoder" -> its context encoder. The module needs ``pos_embed="stored"`` (its position
    table then is the checkpoint's and is saved with it)."""
    path = _resolve(source)
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
        state = _torch_file(path)
        if isinstance(state, dict) and any(isinstance(state.get(k), dict) for k in ("target_encoder", "encoder")):
            net = _strip(state.get("target_encoder") or state["encoder"], "module.")
            if "patch_embed.proj.weight" in net and net["patch_embed.proj.weight"].dim() == 4:
                return "ijepa"
        raise CheckpointError(f"{path}: not a supported checkpoint file; expected an official I-JEPA checkpoint "
                              f"(a dict with 'target_encoder' / 'encoder' state dicts of a 2-D ViT)")
    if path.is_dir():
        config = path / "config.json"
        if config.is_file():
            model_type = _read_json(config).get("model_type")
            if model_type == "ijepa":
                return "hf-ijepa"
            raise CheckpointError(f"{config}: model_type {model_type!r} is not a supported Hugging Face encoder "
                                  f"(supported: 'ijepa')")
        raise CheckpointError(f"{path}: a folder without config.json; expected a Hugging Face model folder "
                              f"(config.json + one of {', '.join(WEIGHT_FILES)})")
    raise CheckpointError(f"{path}: not a file or folder")


CHECKPOINT_SUFFIXES = (".ckpt", ".safetensors", ".pt", ".pth", ".tar", ".bin", ".json")


def is_hub_id(text: str) -> bool:
    """'owner/name' that is not a local path: one slash, no leading '.', '/' or '~', no checkpoint file suffix
    (so a mistyped local 'runs/last.ckpt' is reported as missing, not looked up on the hub)."""
    return (text.count("/") == 1 and not text.startswith((".", "/", "~"))
            and Path(text).suffix not in CHECKPOINT_SUFFIXES)


def _resolve(source: str | Path) -> Path:
    """A local path as is; otherwise a hub id, downloaded (or found in the local hub cache)."""
    path = Path(source).expanduser()
    if path.exists():
        return path
    text = str(source)
    if not is_hub_id(text):
        raise FileNotFoundError(f"{text}: no such file or folder (and not a hub id of the form 'owner/name')")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as err:
        raise ImportError(f"{text} is not a local path, and downloading it needs huggingface_hub "
                          f"(pip install 'jepa-lightning[hf]'); or pass the local folder of a downloaded copy") from err
    try:
        return Path(snapshot_download(text, allow_patterns=["config.json", "*.safetensors", "*.json", "*.bin"]))
    except Exception as err:  # offline, unknown repository, gated model: all end the same way for the user
        raise OSError(f"could not download {text} from the Hugging Face hub ({type(err).__name__}: {err}); "
                      f"without internet, download the folder elsewhere (huggingface-cli download {text} "
                      f"--local-dir DIR) and pass DIR") from err


# --------------------------------------------------------------------------------------------- reading files
def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable JSON ({err})") from err


def _torch_file(path: Path) -> Any:
    """A PyTorch pickle read with ``weights_only`` (tensors and plain containers, no code), or a clear error."""
    try:  # memory-mapped where the file allows it: reading the format of a large file costs little
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        pass
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(f"{path}: unreadable PyTorch checkpoint, corrupt, truncated or not a weights file "
                              f"({type(err).__name__}: {err})") from err


def _strip(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """The tensors of a Hugging Face model folder: one safetensors file, a sharded one, or a PyTorch pickle."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    def safetensors_file(path: Path) -> dict[str, torch.Tensor]:
        try:
            return load_file(path)
        except (SafetensorError, OSError, RuntimeError) as err:
            raise CheckpointError(f"{path}: unreadable safetensors file, corrupt or truncated ({err})") from err

    if (folder / "model.safetensors").is_file():
        return safetensors_file(folder / "model.safetensors")
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(_read_json(index).get("weight_map", {}).values()))
        if not shards:
            raise CheckpointError(f"{index}: no weight_map")
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(safetensors_file(folder / shard))
        return state
    if (folder / "pytorch_model.bin").is_file():
        return _torch_file(folder / "pytorch_model.bin")
    raise CheckpointError(f"{folder}: no weights; expected one of {', '.join(WEIGHT_FILES)}")


# --------------------------------------------------------------------------------------------- mapping
def fill(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> nn.Module:
    """Copy `state` (already in our key names) into `model`: every key of each present once, the same shapes;
    otherwise a CheckpointError naming `source`, the keys and the shapes, and `model` untouched."""
    ours = model.state_dict()
    missing, unexpected = sorted(set(ours) - set(state)), sorted(set(state) - set(ours))
    if missing or unexpected:
        raise CheckpointError(f"{source}: the checkpoint does not match the model: "
                              + "; ".join(part for part in (
                                  f"missing {_names(missing)}" if missing else "",
                                  f"unexpected {_names(unexpected)}" if unexpected else "") if part))
    for key, value in state.items():
        if tuple(value.shape) != tuple(ours[key].shape):
            raise CheckpointError(f"{source}: {key} has shape {list(value.shape)} in the checkpoint, the model "
                                  f"built from its config expects {list(ours[key].shape)}")
    model.load_state_dict({k: v.to(ours[k].dtype) for k, v in state.items()}, strict=True)
    return model


def _names(keys: list[str], shown: int = 8) -> str:
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more


# Hugging Face ViT-family names: the files hold the legacy names (transformers 5 renames them at load time and
# back at save time); the in-memory names of transformers 5 are mapped to them first.
_HF_V5_TO_LEGACY = ((r"^layers\.", "encoder.layer."), (r"attention\.q_proj", "attention.attention.query"),
                    (r"attention\.k_proj", "attention.attention.key"),
                    (r"attention\.v_proj", "attention.attention.value"),
                    (r"attention\.o_proj", "attention.output.dense"), (r"mlp\.fc1", "intermediate.dense"),
                    (r"mlp\.fc2", "output.dense"))


def hf_vit_to_ours(state: dict[str, torch.Tensor], depth: int, qkv_bias: bool, source: str,
                   prefix: str = "") -> dict[str, torch.Tensor]:
    """A Hugging Face ViT-family encoder's tensors (I-JEPA) under our VisionTransformer's names: q, k, v
    concatenated into timm's fused qkv. Keys outside the encoder are left under their own names (so `fill` names
    them as unexpected)."""
    state = _strip(state, prefix) if prefix else state
    legacy = {}
    for key, value in state.items():
        for pattern, repl in _HF_V5_TO_LEGACY:
            key = re.sub(pattern, repl, key)
        legacy[key] = value
    out: dict[str, torch.Tensor] = {}
    take = legacy.pop

    def move(theirs: str, ours: str) -> None:
        for suffix in (".weight", ".bias"):
            if theirs + suffix in legacy:
                out[ours + suffix] = take(theirs + suffix)

    move("embeddings.patch_embeddings.projection", "patch_embed.proj")
    if "embeddings.position_embeddings" in legacy:
        out["pos_embed"] = take("embeddings.position_embeddings")
    for i in range(depth):
        theirs, ours = f"encoder.layer.{i}.", f"transformer.blocks.{i}."
        qkv = [f"{theirs}attention.attention.{n}" for n in ("query", "key", "value")]
        for suffix in (".weight",) + ((".bias",) if qkv_bias else ()):
            parts = [legacy.get(name + suffix) for name in qkv]
            if all(p is not None for p in parts):
                out[f"{ours}attn.qkv{suffix}"] = torch.cat(parts, 0)
                for name in qkv:
                    take(name + suffix)
        move(theirs + "attention.output.dense", ours + "attn.proj")
        move(theirs + "layernorm_before", ours + "norm1")
        move(theirs + "layernorm_after", ours + "norm2")
        move(theirs + "intermediate.dense", ours + "mlp.fc1")
        move(theirs + "output.dense", ours + "mlp.fc2")
    move("layernorm", "transformer.norm")
    return out | legacy  # what is left could not be mapped: fill() names it


# --------------------------------------------------------------------------------------------- formats
def _pair(value: Any, what: str, config: Path) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    raise CheckpointError(f"{config}: {what} must be an integer or a pair of integers, got {value!r}")


def _mlp_ratio(hidden: int, width: int) -> float:
    """The ratio for which our blocks (timm: ``int(width * ratio)``) build exactly `hidden` MLP units (e.g. the
    official ViT-g's 48/11, which int() of the float product would round down by one)."""
    return (hidden + 0.5) / width


def load_hf_ijepa(folder: Path, **overrides: Any) -> VisionTransformer:
    """A Hugging Face ``IJepaModel`` folder as our VisionTransformer (see the module docstring)."""
    config_path = folder / "config.json"
    config = _read_json(config_path) | overrides
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
    patch = _pair(config["patch_size"], "patch_size", config_path)
    if patch[0] != patch[1]:
        raise CheckpointError(f"{config_path}: patch_size {list(patch)}: only square patches are supported")
    depth, qkv_bias = int(config["num_hidden_layers"]), bool(config.get("qkv_bias", True))
    model = VisionTransformer(img_size=_pair(config["image_size"], "image_size", config_path), patch_size=patch[0],
                              in_chans=int(config.get("num_channels", 3)), embed_dim=width, depth=depth,
                              num_heads=heads, mlp_ratio=_mlp_ratio(int(config["intermediate_size"]), width),
                              qkv_bias=qkv_bias, pos_embed="stored",
                              norm_eps=float(config.get("layer_norm_eps", 1e-12)))
    state = read_state_dict(folder)
    prefix = "ijepa." if any(k.startswith("ijepa.") for k in state) else ""
    return fill(model, hf_vit_to_ours(state, depth, qkv_bias, str(folder), prefix), str(folder))


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
    checkpoint = _torch_file(path)
    if which not in ("target_encoder", "encoder") or not isinstance(checkpoint.get(which), dict):
        present = [k for k in ("target_encoder", "encoder") if isinstance(checkpoint.get(k), dict)]
        raise CheckpointError(f"{path}: no {which!r} network in the file (it holds {present})")
    state = _strip(checkpoint[which], "module.")
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
                              mlp_ratio=_mlp_ratio(int(state["blocks.0.mlp.fc1.weight"].shape[0]), int(width)),
                              qkv_bias="blocks.0.attn.qkv.bias" in state, pos_embed="stored",
                              norm_eps=float(overrides.get("layer_norm_eps", 1e-6)))
    # the official names are timm's, as ours, under two roots: blocks.* and norm.* live in our transformer stack
    ours = {re.sub(r"^(blocks|norm)\.", r"transformer.\1.", k): v for k, v in state.items()}
    return fill(model, ours, source)


LOADERS: dict[str, Callable[..., nn.Module]] = {"hf-ijepa": load_hf_ijepa, "ijepa": load_official_ijepa}

__all__ = ["CheckpointError", "LOADERS", "OFFICIAL_HEADS", "detect_format", "fill", "hf_vit_to_ours", "load_encoder",
           "load_into", "published_format",
           "read_state_dict"]
