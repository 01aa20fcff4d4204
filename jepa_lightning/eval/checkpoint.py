"""Read an encoder out of a training checkpoint, and export it to safetensors."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn


def _prefixes(keys) -> list[str]:
    return sorted({k.split(".", 1)[0] + "." for k in keys if "." in k})


def _read_sharded(path: Path) -> dict:
    """`{"state_dict": full tensors}` of a sharded checkpoint directory (`torch.distributed.checkpoint`, as
    saved by Lightning's ModelParallelStrategy / FSDP2), read in this process without a process group; the
    optimizer states in it are not read."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.default_planner import _EmptyStateDictLoadPlanner
    from torch.distributed.checkpoint.state_dict_loader import _load_state_dict

    if not (path / ".metadata").is_file():
        raise FileNotFoundError(f"{path} is a directory without '.metadata': not a sharded checkpoint")
    ckpt: dict = {}
    _load_state_dict(ckpt, storage_reader=FileSystemReader(path),
                     planner=_EmptyStateDictLoadPlanner(keys={"state_dict"}), no_dist=True)
    return ckpt


def read_encoder_state(path: str | Path, key: str = "teacher") -> dict[str, torch.Tensor]:
    """The encoder's state dict from a Lightning `.ckpt` (entries of `state_dict` under `f"{key}."`, prefix
    stripped, with a wrapper's `module.` (the EMA/frozen teacher, DDP) and `torch.compile`'s `_orig_mod.` removed) or from a `.safetensors` file (the bare encoder state
    dict, `key` unused). Loads with `weights_only=True` onto the CPU. A directory is read as a sharded
    checkpoint (FSDP2 under ModelParallelStrategy), its shards assembled into full tensors."""
    path = Path(path)
    if not (path.is_file() or path.is_dir()):
        raise FileNotFoundError(f"encoder checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        return load_file(str(path), device="cpu")
    try:
        if path.is_dir():
            ckpt = _read_sharded(path)
        else:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        how = "as a sharded checkpoint directory" if path.is_dir() else "with torch.load(weights_only=True)"
        raise RuntimeError(f"could not read checkpoint {path} {how}: {err}") from err
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        found = sorted(ckpt)[:20] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path} is not a Lightning checkpoint: no 'state_dict' entry (found {found})")
    prefix = f"{key}."
    out = {k[len(prefix):].replace("_orig_mod.", ""): v for k, v in state.items() if k.startswith(prefix)}
    if out and all(k.startswith("module.") for k in out):  # a wrapper (our teachers, DDP) holds the encoder
        out = {k[len("module."):]: v for k, v in out.items()}
    if not out:
        raise KeyError(f"no weights under prefix '{prefix}' in {path}; available prefixes: "
                       f"{_prefixes(state)} (pass one of them, without the dot, as the checkpoint key)")
    return out


def load_encoder_weights(encoder: nn.Module, path: str | Path, key: str = "teacher") -> nn.Module:
    """Load `encoder` (strictly) from a Lightning checkpoint's `f"{key}."` entries or a `.safetensors` file, or
    from a published checkpoint (a Hugging Face folder or hub id, an official I-JEPA file:
    `jepa_lightning.pretrained.load_into`); returns the encoder."""
    from jepa_lightning.pretrained import load_into, published_format

    if published_format(path) is not None:
        return load_into(encoder, path, key)
    state = read_encoder_state(path, key)
    try:
        encoder.load_state_dict(state, strict=True)
    except RuntimeError as err:
        src = f"'{key}.' weights in {path}" if Path(path).suffix != ".safetensors" else str(path)
        raise RuntimeError(f"{src} do not fit {type(encoder).__name__}: {err}") from err
    return encoder


def export_encoder(ckpt_path: str | Path, out_path: str | Path, key: str = "teacher", format: str = "safetensors",
                   encoder: nn.Module | None = None) -> Path:
    """Write the `f"{key}."` encoder of a Lightning checkpoint (prefix stripped) to a safetensors file
    (`format="safetensors"`; with the encoder's class path and arguments from the run's config.yaml in its metadata
    when the checkpoint sits in its run folder, so `jepa_lightning.pretrained.load_encoder` rebuilds it), or as a Hugging Face ``transformers`` folder (`format="hf"`: an ``IJepaModel``
    folder, `jepa_lightning.pretrained.save_hf`; `encoder` is then a module of the checkpoint's architecture, e.g.
    the recipe's ``cli.model.encoder``, into which the weights are loaded first)."""
    if format == "hf":
        if encoder is None:
            raise ValueError("export_encoder(format='hf') needs `encoder`, a module of the checkpoint's architecture "
                             "(e.g. the recipe's cli.model.encoder)")
        from jepa_lightning.pretrained import save_hf

        return save_hf(load_encoder_weights(encoder, ckpt_path, key), out_path)
    if format != "safetensors":
        raise ValueError(f"export_encoder: format must be 'safetensors' or 'hf', got {format!r}")
    import json

    from jepa_lightning.pretrained.ours import ENCODER_SPEC, encoder_spec_of_run, run_config

    state = read_encoder_state(ckpt_path, key)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"source": str(ckpt_path), "key": key}
    config = run_config(Path(ckpt_path)) if Path(ckpt_path).is_file() else None
    if config is not None:  # the architecture, so that jepa_lightning.pretrained.load_encoder rebuilds it
        metadata[ENCODER_SPEC] = json.dumps(encoder_spec_of_run(config))
    # clone: safetensors refuses tensors that share storage (e.g. tied weights)
    save_file({k: v.detach().clone().contiguous() for k, v in state.items()}, str(out_path), metadata=metadata)
    return out_path
