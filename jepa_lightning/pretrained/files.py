"""Reading checkpoint files and filling our modules from them: the helpers every format of
`jepa_lightning.pretrained` shares."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


class CheckpointError(ValueError):
    """A checkpoint that cannot become one of our modules: the message names the file, the key and the shapes."""


CHECKPOINT_SUFFIXES = (".ckpt", ".safetensors", ".pt", ".pth", ".tar", ".bin", ".json")


def is_hub_id(text: str) -> bool:
    """'owner/name' that is not a local path: one slash, no leading '.', '/' or '~', no checkpoint file suffix
    (so a mistyped local 'runs/last.ckpt' is reported as missing, not looked up on the hub)."""
    return (text.count("/") == 1 and not text.startswith((".", "/", "~"))
            and Path(text).suffix not in CHECKPOINT_SUFFIXES)


def resolve(source: str | Path) -> Path:
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
def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable JSON ({err})") from err


def torch_file(path: Path) -> Any:
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


def strip_prefix(state: dict[str, Any], prefix: str) -> dict[str, Any]:
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
        shards = sorted(set(read_json(index).get("weight_map", {}).values()))
        if not shards:
            raise CheckpointError(f"{index}: no weight_map")
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(safetensors_file(folder / shard))
        return state
    if (folder / "pytorch_model.bin").is_file():
        return torch_file(folder / "pytorch_model.bin")
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
                                  f"missing {key_list(missing)}" if missing else "",
                                  f"unexpected {key_list(unexpected)}" if unexpected else "") if part))
    for key, value in state.items():
        if tuple(value.shape) != tuple(ours[key].shape):
            raise CheckpointError(f"{source}: {key} has shape {list(value.shape)} in the checkpoint, the model "
                                  f"built from its config expects {list(ours[key].shape)}")
    model.load_state_dict({k: v.to(ours[k].dtype) for k, v in state.items()}, strict=True)
    return model


def key_list(keys: list[str], shown: int = 8) -> str:
    more = f" and {len(keys) - shown} more" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more


def int_pair(value: Any, what: str, config: Path) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return int(value[0]), int(value[1])
    raise CheckpointError(f"{config}: {what} must be an integer or a pair of integers, got {value!r}")


def mlp_ratio(hidden: int, width: int) -> float:
    """The ratio for which our blocks (timm: ``int(width * ratio)``) build exactly `hidden` MLP units (e.g. the
    official ViT-g's 48/11, which int() of the float product would round down by one)."""
    return (hidden + 0.5) / width
