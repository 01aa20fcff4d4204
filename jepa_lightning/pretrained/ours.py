"""Our own checkpoints as sources of `load_encoder`: a run's Lightning ``last.ckpt`` and an encoder exported to
safetensors by `jepa_lightning.eval.checkpoint.export_encoder`.

The architecture comes from what the run recorded: a checkpoint's run folder holds the resolved ``config.yaml``
(LightningCLI writes it, sizes linked from the data included), whose ``model.init_args.encoder`` (class path and
arguments) builds the encoder; an export carries the same spec in its metadata. The weights are then those of the
network `which` (the checkpoint key: ``teacher`` by default, ``encoder`` for the student) and must fit key for key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from jepa_lightning.pretrained.files import CheckpointError, fill

ENCODER_SPEC = "encoder_spec"  # the safetensors metadata key of the encoder's class path + arguments (JSON)


def run_config(checkpoint: Path) -> Path | None:
    """The config.yaml of the run a checkpoint belongs to (<run>/checkpoints/x.ckpt -> <run>/config.yaml)."""
    for folder in (checkpoint.parent, checkpoint.parent.parent):
        if (folder / "config.yaml").is_file():
            return folder / "config.yaml"
    return None


def encoder_spec_of_run(config: Path) -> dict[str, Any]:
    """``model.init_args.encoder`` of a run's config.yaml: {"class_path": ..., "init_args": {...}}."""
    import yaml

    try:
        model = (yaml.safe_load(config.read_text()) or {}).get("model") or {}
    except (OSError, yaml.YAMLError) as err:
        raise CheckpointError(f"{config}: unreadable run config ({err})") from err
    spec = (model.get("init_args") or {}).get("encoder")
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise CheckpointError(f"{config}: no model.init_args.encoder with a class_path")
    return spec


def build(spec: dict[str, Any], source: str) -> nn.Module:
    """The module `spec` describes (nested class specs included), without re-loading a `pretrained` source."""
    from jsonargparse import ArgumentParser

    spec = {"class_path": spec["class_path"], "init_args": dict(spec.get("init_args") or {})}
    if "pretrained" in spec["init_args"]:
        spec["init_args"]["pretrained"] = None  # the checkpoint's weights replace it anyway
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--encoder", type=nn.Module)
    try:
        return parser.instantiate_classes(parser.parse_object({"encoder": spec})).encoder
    except Exception as err:
        raise CheckpointError(f"{source}: could not build the encoder {spec['class_path']} from the recorded "
                              f"config ({type(err).__name__}: {err})") from err


def load_ours(path: Path, which: str = "teacher") -> nn.Module:
    """Our Lightning checkpoint's network `which`, or an exported encoder, built from the recorded config."""
    from jepa_lightning.eval.checkpoint import read_encoder_state

    if path.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        if ENCODER_SPEC not in meta:
            raise CheckpointError(f"{path}: this export records no architecture (exports before it did): build the "
                                  f"encoder and load it with jepa_lightning.eval.load_encoder_weights(encoder, path)")
        spec = json.loads(meta[ENCODER_SPEC])
    else:
        config = run_config(path)
        if config is None:
            raise CheckpointError(f"{path}: no config.yaml in its run folder ({path.parent} or {path.parent.parent}) "
                                  f"to build the encoder from; load it with load_encoder_weights(encoder, path)")
        spec = encoder_spec_of_run(config)
    model = build(spec, str(path))
    try:
        state = read_encoder_state(path, which)
    except (KeyError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{path}: {err}") from err
    return fill(model, state, f"{path} [{which}]")


__all__ = ["ENCODER_SPEC", "build", "encoder_spec_of_run", "load_ours", "run_config"]
