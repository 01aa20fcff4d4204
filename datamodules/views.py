"""Sequences of views of one image, each made by a known transformation: the data of seq-JEPA.

A sample is ``M = seq_len`` views of one image together with the parameters that made each view, and
``seq_len - 1`` relative actions (view i -> view i+1). Batch keys:

- ``views``: float32 ``[B, M, C, h, w]`` normalized with ``mean``/``std``;
- ``actions``: float32 ``[B, M, A]``, the absolute transformation parameters of each view;
- ``rel_actions``: float32 ``[B, M - 1, A]``, ``actions[:, i + 1] - actions[:, i]``;
- ``label``: int64 ``[B]``.

Two modes:

``transforms``: each view is ``colour(affine(crop(image)))`` with independently drawn parameters, the
kinds listed in ``transformations`` (in this order of application):

====================  ==================================================================  =====================
kind                  what                                                                action entries
====================  ==================================================================  =====================
``crop``              square box of side ``s * size`` (``s`` in ``crop_size``) at a       ``crop_top``,
                      uniform position inside the image, resized back to ``size``         ``crop_left`` (of the
                                                                                          size), ``crop_size``
``rotation``          rotation about the centre by ``angle`` degrees (``rotation``)       ``angle`` / 180
``scale``             zoom about the centre by ``s`` (``scale``)                          ``log_scale`` = ln s
``translation``       shift by ``(tx, ty)`` fractions of the size (``translation``)       ``tx``, ``ty``
``color``             brightness, contrast, saturation factors and hue shift, in this     ``brightness - 1``,
                      order (each drawn from its range; a range ``[v, v]`` is off and     ``contrast - 1``, ...
                      left out of the action vector)                                      ``hue``
====================  ==================================================================  =====================

Rotation, scale and translation are one affine map (``torchvision.transforms.v2.functional.affine``,
bilinear, zero fill); colour uses ``adjust_brightness/contrast/saturation/hue`` on ``[0, 1]`` images before
normalization. ``action_names`` lists the entries of the action vector.

``saccades``: the views are ``glimpse_size`` glimpses of the image at fixation points drawn uniformly
(the glimpse lies inside the image); the action is the fixation centre ``(y, x)`` as a fraction of the image
size, so a relative action is the eye movement between two fixations.

Image sources: scikit-learn's bundled digits (``source: digits``, loaded by :class:`~datamodules.images.
DigitsDataModule`, no download) or an image folder ``root/<train_dir>/<class>/*`` (``source: folder``, read
by :class:`~datamodules.images.ImageFolderDataset`, resized + centre-cropped to ``image_size``).
Training views are drawn with the global torch RNG, which the training sampler seeds per (seed, epoch,
index) (see :class:`~datamodules.common.SeededSamples`); evaluation views are fixed per index (seeded by
``(seed, index)``), so validation sees the same sequences every time.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from jepa_lightning.seeding import mix_seed

from .common import JEPADataModule, list_class_folders
from .images import IMAGE_EXTENSIONS, DigitsDataModule, ImageFolderDataset, scan_image_folder

Transformation = Literal["crop", "rotation", "scale", "translation", "color"]
TRANSFORMATIONS: tuple[str, ...] = ("crop", "rotation", "scale", "translation", "color")
COLOR_PARAMS = ("brightness", "contrast", "saturation", "hue")


def _range(name: str, value: Sequence[float], low: float = -math.inf, high: float = math.inf) -> tuple[float, float]:
    lo, hi = (float(v) for v in value)
    if not (low <= lo <= hi <= high):
        raise ValueError(f"ViewSequence: {name} must be a range [min, max] with {low} <= min <= max <= {high}, "
                         f"got {list(value)}")
    return lo, hi


def _uniform(n: int, bounds: tuple[float, float]) -> torch.Tensor:
    lo, hi = bounds
    return torch.rand(n) * (hi - lo) + lo


class ViewSequenceTransform:
    """Turns one image ``[C, H, W]`` with values in ``[0, 1]`` into a sequence of views and their actions.

    ``__call__(image, seq_len)`` draws parameters with the global torch RNG and returns ``views``
    ``[M, C, h, w]`` (normalized), ``actions`` ``[M, A]``, ``rel_actions`` ``[M - 1, A]``. ``sample`` and
    ``apply`` are the two halves (parameters as a dict of ``[M]`` tensors, then the views), so that tests and
    evaluation can apply known parameters. See the module docstring for the modes and the action layout.
    """

    def __init__(self, mode: Literal["transforms", "saccades"] = "transforms",
                 transformations: Sequence[Transformation] = ("rotation", "scale", "translation", "color"),
                 rotation: tuple[float, float] = (-60.0, 60.0), scale: tuple[float, float] = (0.75, 1.25),
                 translation: tuple[float, float] = (-0.15, 0.15), crop_size: tuple[float, float] = (0.6, 1.0),
                 brightness: tuple[float, float] = (0.6, 1.4), contrast: tuple[float, float] = (0.6, 1.4),
                 saturation: tuple[float, float] = (1.0, 1.0), hue: tuple[float, float] = (0.0, 0.0),
                 glimpse_size: int = 16, mean: Sequence[float] = (0.5,), std: Sequence[float] = (0.5,)) -> None:
        if mode not in ("transforms", "saccades"):
            raise ValueError(f"ViewSequence: mode must be 'transforms' or 'saccades', got {mode!r}")
        unknown = [t for t in transformations if t not in TRANSFORMATIONS]
        if unknown or len(set(transformations)) != len(transformations):
            raise ValueError(f"ViewSequence: transformations must be distinct names from {list(TRANSFORMATIONS)}, "
                             f"got {list(transformations)}")
        if mode == "transforms" and not transformations:
            raise ValueError("ViewSequence: mode 'transforms' needs at least one entry in transformations")
        if glimpse_size < 1:
            raise ValueError(f"ViewSequence: glimpse_size must be >= 1, got {glimpse_size}")
        self.mode = mode
        self.kinds = [t for t in TRANSFORMATIONS if t in transformations]  # fixed order of application
        self.rotation = _range("rotation", rotation, -180, 180)
        self.scale = _range("scale", scale, 1e-3)
        self.translation = _range("translation", translation, -1, 1)
        self.crop_size = _range("crop_size", crop_size, 1e-3, 1)
        self.color = {"brightness": _range("brightness", brightness, 0), "contrast": _range("contrast", contrast, 0),
                      "saturation": _range("saturation", saturation, 0), "hue": _range("hue", hue, -0.5, 0.5)}
        self.color_active = [k for k in COLOR_PARAMS if self.color[k][0] < self.color[k][1]]
        if mode == "transforms" and "color" in self.kinds and not self.color_active:
            raise ValueError("ViewSequence: 'color' is in transformations but every colour range (brightness, "
                             "contrast, saturation, hue) is a single value; widen one or drop 'color'")
        self.glimpse_size = glimpse_size
        self.mean, self.std = [float(m) for m in mean], [float(s) for s in std]
        if min(self.std) <= 0:
            raise ValueError(f"ViewSequence: std must be > 0, got {self.std}")

    # --------------------------------------------------------------------------------------- action layout
    @property
    def action_names(self) -> list[str]:
        if self.mode == "saccades":
            return ["fix_y", "fix_x"]
        names: list[str] = []
        for kind in self.kinds:
            names += {"crop": ["crop_top", "crop_left", "crop_size"], "rotation": ["angle"], "scale": ["log_scale"],
                      "translation": ["tx", "ty"], "color": [f"{k}" for k in self.color_active]}[kind]
        return names

    @property
    def action_dim(self) -> int:
        return len(self.action_names)

    def view_size(self, image_size: int) -> int:
        return self.glimpse_size if self.mode == "saccades" else image_size

    # ------------------------------------------------------------------------------------------- sampling
    def sample(self, m: int, size: tuple[int, int]) -> dict[str, torch.Tensor]:
        """Parameters of ``m`` views of an image of ``size = (H, W)``, each a ``[m]`` tensor, drawn with the global
        torch RNG: ``fix_y``/``fix_x`` (saccades, glimpse centres in pixels), or per kind ``crop_top``/
        ``crop_left``/``crop_size`` (pixels), ``angle`` (degrees), ``scale``, ``tx``/``ty`` (fractions),
        ``brightness``, ``contrast``, ``saturation``, ``hue``."""
        h, w = size
        if self.mode == "saccades":
            g = self.glimpse_size
            if g > min(h, w):
                raise ValueError(f"ViewSequence: glimpse_size={g} is larger than the image ({h}x{w})")
            top = torch.randint(0, h - g + 1, (m,))
            left = torch.randint(0, w - g + 1, (m,))
            return {"top": top, "left": left}
        p: dict[str, torch.Tensor] = {}
        if "crop" in self.kinds:
            side = (_uniform(m, self.crop_size) * min(h, w)).round().clamp(min=1).long()
            p["crop_size"] = side
            p["crop_top"] = (torch.rand(m) * (h - side + 1)).floor().long()
            p["crop_left"] = (torch.rand(m) * (w - side + 1)).floor().long()
        if "rotation" in self.kinds:
            p["angle"] = _uniform(m, self.rotation)
        if "scale" in self.kinds:
            lo, hi = self.scale  # log-uniform: zooming in and out by the same factor are equally likely
            p["scale"] = torch.exp(_uniform(m, (math.log(lo), math.log(hi))))
        if "translation" in self.kinds:
            p["tx"], p["ty"] = _uniform(m, self.translation), _uniform(m, self.translation)
        if "color" in self.kinds:
            for k in self.color_active:
                p[k] = _uniform(m, self.color[k])
        return p

    def actions(self, p: dict[str, torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """The action vectors ``[m, A]`` of parameters ``p`` (layout: ``action_names``)."""
        h, w = size
        if self.mode == "saccades":
            g = self.glimpse_size
            return torch.stack([(p["top"] + g / 2) / h, (p["left"] + g / 2) / w], -1).float()
        cols: list[torch.Tensor] = []
        for kind in self.kinds:
            if kind == "crop":
                cols += [p["crop_top"] / h, p["crop_left"] / w, p["crop_size"] / min(h, w)]
            elif kind == "rotation":
                cols.append(p["angle"] / 180.0)
            elif kind == "scale":
                cols.append(torch.log(p["scale"]))
            elif kind == "translation":
                cols += [p["tx"], p["ty"]]
            else:
                cols += [p[k] - (0.0 if k == "hue" else 1.0) for k in self.color_active]
        return torch.stack([c.float() for c in cols], -1)

    # ------------------------------------------------------------------------------------------ rendering
    def apply(self, image: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        """Views ``[m, C, h, w]`` of ``image`` ``[C, H, W]`` (values in ``[0, 1]``) under parameters ``p``, before
        normalization."""
        c, h, w = image.shape
        if self.mode == "saccades":
            g = self.glimpse_size
            rows = p["top"][:, None] + torch.arange(g)                         # [m, g]
            cols = p["left"][:, None] + torch.arange(g)
            return image[:, rows[:, :, None], cols[:, None, :]].transpose(0, 1).contiguous()   # [m, C, g, g]
        m = next(iter(p.values())).numel()
        views = []
        for i in range(m):  # M (a handful) views per image; each op is one torchvision call on the whole view
            x = image
            if "crop_size" in p:
                x = TF.resized_crop(x, int(p["crop_top"][i]), int(p["crop_left"][i]), int(p["crop_size"][i]),
                                    int(p["crop_size"][i]), [h, w], antialias=True)
            if any(k in p for k in ("angle", "scale", "tx")):
                x = TF.affine(x, angle=float(p["angle"][i]) if "angle" in p else 0.0,
                              translate=[float(p["tx"][i]) * w, float(p["ty"][i]) * h] if "tx" in p else [0.0, 0.0],
                              scale=float(p["scale"][i]) if "scale" in p else 1.0, shear=[0.0, 0.0],
                              interpolation=v2.InterpolationMode.BILINEAR)
            if "brightness" in p:
                x = TF.adjust_brightness(x, float(p["brightness"][i]))
            if "contrast" in p:
                x = TF.adjust_contrast(x, float(p["contrast"][i]))
            if "saturation" in p:
                x = TF.adjust_saturation(x, float(p["saturation"][i]))
            if "hue" in p:
                x = TF.adjust_hue(x, float(p["hue"][i]))
            views.append(x)
        return torch.stack(views)

    def normalize(self, views: torch.Tensor) -> torch.Tensor:
        c = views.shape[-3]
        mean = torch.tensor(self.mean * (c if len(self.mean) == 1 else 1)).view(c, 1, 1)
        std = torch.tensor(self.std * (c if len(self.std) == 1 else 1)).view(c, 1, 1)
        return (views - mean) / std

    def __call__(self, image: torch.Tensor, seq_len: int) -> dict[str, torch.Tensor]:
        size = (image.shape[-2], image.shape[-1])
        p = self.sample(seq_len, size)
        actions = self.actions(p, size)
        return {"views": self.normalize(self.apply(image, p)), "actions": actions,
                "rel_actions": actions[1:] - actions[:-1]}


class ViewSequenceDataset(Dataset):
    """Sequences of ``seq_len`` views of the images of ``source`` (a dataset returning ``{"image": [C, H, W]
    in [0, 1], "label": ...}``). ``fixed_seed=None``: views drawn with the global torch RNG (seeded per sample
    by the training sampler); an integer: views fixed per index (seeded by ``(fixed_seed, index)``)."""

    def __init__(self, source: Dataset, transform: ViewSequenceTransform, seq_len: int,
                 fixed_seed: int | None = None) -> None:
        self.source, self.transform, self.seq_len, self.fixed_seed = source, transform, seq_len, fixed_seed

    def __len__(self) -> int:
        return len(self.source)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        sample = self.source[index]
        if not isinstance(sample, dict):  # a Skipped marker of an unreadable file passes through
            return sample
        if self.fixed_seed is None:
            out = self.transform(sample["image"], self.seq_len)
        else:
            with torch.random.fork_rng(devices=[]):
                torch.default_generator.manual_seed(mix_seed(self.fixed_seed, index))
                out = self.transform(sample["image"], self.seq_len)
        out["label"] = torch.as_tensor(sample["label"]).long()
        return out


class _Images(Dataset):
    """In-memory images ``[N, C, H, W]`` in ``[0, 1]`` and labels as ``{"image", "label"}`` samples."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[index], "label": self.labels[index]}


class ViewSequenceDataModule(JEPADataModule):
    """Sequences of transformed views (or saccade glimpses) of images, with their actions (seq-JEPA).

    Args:
        source: ``digits`` (scikit-learn's bundled digits, grey, replicated to 3 channels) or ``folder``
            (``root/<train_dir>/<class>/*`` and ``root/<val_dir>/<class>/*``).
        root, train_dir, val_dir, extensions: the image folder (``source: folder`` only).
        image_size: images are resized to this size first (digits: upsampled from 8x8; folder: resize of the
            short side + centre crop); the views of ``transforms`` mode have this size.
        mode: ``transforms`` or ``saccades`` (see the module docstring).
        seq_len: views per training sequence, the held-out view included (``M``; the paper trains with 3
            observed views, ``seq_len=4``).
        val_seq_len: views per evaluation sequence (default ``seq_len``); evaluation can aggregate up to this many.
        transformations, rotation, scale, translation, crop_size, brightness, contrast, saturation, hue,
            glimpse_size: see :class:`ViewSequenceTransform`.
        mean, std: normalization of the views (one value per channel, or one for all).
        val_fraction, split_seed: the digits' stratified train/val split (as :class:`DigitsDataModule`).
        loader: the DataLoader settings of :class:`JEPADataModule` (batch_size, num_workers, seed, ...).
    """

    def __init__(
        self,
        source: Literal["digits", "folder"] = "digits",
        root: str | None = None,
        train_dir: str = "train",
        val_dir: str = "val",
        extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
        image_size: int = 32,
        mode: Literal["transforms", "saccades"] = "transforms",
        seq_len: int = 4,
        val_seq_len: int | None = None,
        transformations: list[Transformation] | tuple[Transformation, ...] = ("rotation", "scale", "translation",
                                                                                "color"),
        rotation: tuple[float, float] = (-60.0, 60.0),
        scale: tuple[float, float] = (0.75, 1.25),
        translation: tuple[float, float] = (-0.15, 0.15),
        crop_size: tuple[float, float] = (0.6, 1.0),
        brightness: tuple[float, float] = (0.6, 1.4),
        contrast: tuple[float, float] = (0.6, 1.4),
        saturation: tuple[float, float] = (1.0, 1.0),
        hue: tuple[float, float] = (0.0, 0.0),
        glimpse_size: int = 16,
        mean: tuple[float, ...] = (0.5,),
        std: tuple[float, ...] = (0.5,),
        val_fraction: float = 0.2,
        split_seed: int = 0,
        num_workers: int = 0,
        **loader: Any,
    ) -> None:
        super().__init__(num_workers=num_workers, **loader)
        self.save_hyperparameters()
        if source not in ("digits", "folder"):
            raise ValueError(f"ViewSequenceDataModule: source must be 'digits' or 'folder', got {source!r}")
        if seq_len < 2:
            raise ValueError(f"ViewSequenceDataModule: seq_len must be >= 2 (observed views + the held-out view), "
                             f"got {seq_len}")
        self.val_seq_len = seq_len if val_seq_len is None else val_seq_len
        if self.val_seq_len < 1:
            raise ValueError(f"ViewSequenceDataModule: val_seq_len must be >= 1, got {val_seq_len}")
        if image_size < 1:
            raise ValueError(f"ViewSequenceDataModule: image_size must be >= 1, got {image_size}")
        if mode == "saccades" and glimpse_size > image_size:
            raise ValueError(f"ViewSequenceDataModule: glimpse_size={glimpse_size} must be <= image_size={image_size} "
                             "in saccade mode")
        self.source, self.image_size, self.seq_len = source, image_size, seq_len
        self.extensions = tuple(extensions)
        self.val_fraction, self.split_seed = val_fraction, split_seed
        self.transform = ViewSequenceTransform(mode, transformations, rotation, scale, translation, crop_size,
                                               brightness, contrast, saturation, hue, glimpse_size, mean, std)
        if source == "folder":
            if root is None:
                raise ValueError("ViewSequenceDataModule: source 'folder' needs root (a folder with "
                                 f"'{train_dir}/<class>/' and '{val_dir}/<class>/' sub-folders)")
            self.split_dirs = {"train": os.path.join(os.fspath(root), train_dir),
                               "val": os.path.join(os.fspath(root), val_dir)}
            self.classes = list_class_folders(self.split_dirs["train"])
        else:
            self.classes = list(DigitsDataModule.classes)
        self.num_classes = len(self.classes)

    @property
    def action_dim(self) -> int:
        """Length ``A`` of the action vectors (what the method's ``action_dim`` must be)."""
        return self.transform.action_dim

    @property
    def action_names(self) -> list[str]:
        return self.transform.action_names

    def _images(self) -> tuple[Dataset, Dataset]:
        """The train and val image sources, ``{"image": [3, S, S] in [0, 1], "label"}``."""
        if self.source == "digits":
            digits = DigitsDataModule(image_size=self.image_size, val_fraction=self.val_fraction,
                                      split_seed=self.split_seed, mean=0.0, std=1.0)  # values in [0, 1]
            digits.setup("fit")
            tr, va = digits.train_eval_dataset, digits.val_dataset
            rgb = (lambda d: d.images.clamp(0, 1).expand(-1, 3, -1, -1))  # noqa: E731
            return _Images(rgb(tr), tr.labels), _Images(rgb(va), va.labels)
        to_tensor = v2.Compose([v2.Resize(self.image_size, antialias=True), v2.CenterCrop(self.image_size),
                                v2.ToImage(), v2.ToDtype(torch.float32, scale=True)])
        out = []
        for split in ("train", "val"):
            other = list_class_folders(self.split_dirs[split])
            if other != self.classes:
                raise ValueError(f"class folders of '{self.split_dirs[split]}' differ from those of "
                                 f"'{self.split_dirs['train']}': {other} vs {self.classes}")
            out.append(ImageFolderDataset(scan_image_folder(self.split_dirs[split], self.classes, self.extensions),
                                          to_tensor))
        return out[0], out[1]

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        train, val = self._images()
        self.train_dataset = ViewSequenceDataset(train, self.transform, self.seq_len)
        self.train_eval_dataset = ViewSequenceDataset(train, self.transform, self.val_seq_len, fixed_seed=self.seed)
        self.val_dataset = self.test_dataset = ViewSequenceDataset(val, self.transform, self.val_seq_len,
                                                                   fixed_seed=self.seed + 1)


__all__ = ["ViewSequenceTransform", "ViewSequenceDataset", "ViewSequenceDataModule"]
