"""Sizes that must agree between the data and the model are given once, by the data.

Applied to the parsed config before anything is built (`JEPACLI.before_instantiate_classes`), for every model
and data class: each network inside `model` that takes `img_size` / `num_frames` gets the data's image size
(`image_size`, or `crop_size` for videos) / clip length (`frames_per_clip` or `num_frames`); a predictor's
`grid_size` follows from its encoder (frames / tubelet, height / patch, width / patch); a probe callback's
`num_classes` follows a data class that declares it; and a data class with a `model_sizes()` method (sizes
known only once the data is read, e.g. a table's `num_numeric` / `cardinalities` / `num_features`) is built once
here and each model argument of that name gets its value. A value a user set explicitly on the model side that
the link replaces is reported, naming both settings.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from jsonargparse import Namespace

from jepa_lightning.errors import UserError

IMAGE_KEYS = ("image_size", "crop_size")
FRAME_KEYS = ("frames_per_clip", "num_frames")


def _pair(value: Any) -> tuple[int, int]:
    return (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _default(class_path: str, key: str) -> Any:
    try:
        parameter = inspect.signature(import_object(class_path)).parameters.get(key)
    except (ImportError, ValueError, TypeError, AttributeError):
        return inspect.Parameter.empty
    return inspect.Parameter.empty if parameter is None else parameter.default


def _components(node: Any, path: str):
    """(dotted path, Namespace) of every class config (class_path + init_args) inside `node`."""
    if isinstance(node, Namespace):
        if "class_path" in node and isinstance(node.get("init_args"), Namespace):
            yield path, node
            node = node.init_args
            path = f"{path}.init_args"
        for key, value in vars(node).items():  # direct children (keys() lists every nested leaf)
            yield from _components(value, f"{path}.{key}")
    elif isinstance(node, (list, tuple)):
        for i, item in enumerate(node):
            yield from _components(item, f"{path}[{i}]")


class _Linker:
    def __init__(self) -> None:
        self.notes: list[str] = []

    def set(self, component: Namespace, path: str, key: str, value: Any, source: str) -> None:
        old = component.init_args.get(key)
        same = old == value or (isinstance(old, (list, tuple)) and list(old) == list(value)) or (
            key == "img_size" and old is not None and _pair(old) == _pair(value))
        default = _default(component.class_path, key)
        if not same and _plain(old) != _plain(default):
            self.notes.append(f"{path}.init_args.{key}={old!r} replaced by {source}={value!r} (linked: the data "
                              "sets it)")
        component.init_args[key] = list(value) if isinstance(value, tuple) else value


def link_sizes(config: Namespace) -> list[str]:
    """Writes the linked sizes into `config` (one subcommand's config); returns the notes on replaced values."""
    data, model = config.get("data"), config.get("model")
    if not isinstance(data, Namespace) or not isinstance(data.get("init_args"), Namespace):
        return []
    args, linker = data.init_args, _Linker()
    image = next(((f"data.init_args.{k}", args[k]) for k in IMAGE_KEYS if args.get(k) is not None), None)
    frames = next(((f"data.init_args.{k}", args[k]) for k in FRAME_KEYS if args.get(k) is not None), None)
    networks = list(_components(model, "model")) if isinstance(model, Namespace) else []
    for path, net in networks:
        if image and "img_size" in net.init_args:
            linker.set(net, path, "img_size", image[1], image[0])
        if frames and "num_frames" in net.init_args:
            linker.set(net, path, "num_frames", frames[1], frames[0])
    encoder = dict(networks).get("model.init_args.encoder")
    predictor = dict(networks).get("model.init_args.predictor")
    if encoder is not None and predictor is not None and "grid_size" in predictor.init_args \
            and {"img_size", "patch_size"} <= set(vars(encoder.init_args)):
        size, patch = _pair(encoder.init_args.img_size), _pair(encoder.init_args.patch_size)
        if any(s % p for s, p in zip(size, patch)):
            source = image[0] if image else "model.init_args.encoder.init_args.img_size"
            raise UserError(f"{source}={encoder.init_args.img_size} is not divisible by "
                            f"model.init_args.encoder.init_args.patch_size={encoder.init_args.patch_size}; "
                            "choose an image size that is a multiple of the patch size")
        grid = [s // p for s, p in zip(size, patch)]
        if int(encoder.init_args.get("num_frames") or 1) > 1:  # a video ViT: tubelets of tubelet_size frames
            grid = [int(encoder.init_args.num_frames) // int(encoder.init_args.get("tubelet_size") or 1), *grid]
        linker.set(predictor, "model.init_args.predictor", "grid_size", grid, "the encoder's size / patch")
    if callable(_class_attribute(data.class_path, "model_sizes")):
        sizes = import_object(data.class_path)(**args.as_dict()).model_sizes()
        for path, net in networks:
            for key, value in sizes.items():
                if key in net.init_args:
                    linker.set(net, path, key, value, f"the data's {key}")
    classes = _class_attribute(data.class_path, "num_classes")
    callbacks = config.get("trainer", Namespace()).get("callbacks") or []
    if isinstance(classes, int):
        for i, callback in enumerate(callbacks):
            if isinstance(callback, Namespace) and "num_classes" in callback.get("init_args", Namespace()) \
                    and callback.init_args.get("label_key", "label") == "label":
                linker.set(callback, f"trainer.callbacks[{i}]", "num_classes", classes, f"{data.class_path}.num_classes")
    return linker.notes


def import_object(class_path: str) -> Any:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _class_attribute(class_path: str, name: str) -> Any:
    try:
        return getattr(import_object(class_path), name, None)
    except (ImportError, ValueError, AttributeError):
        return None
