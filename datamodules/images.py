"""Image DataModules. Batches: ``{"image": float32 [B, 3, H, W] normalized, "label": int64 [B]}``.

- :class:`ImageFolderDataModule`: ``root/train/<class>/*.jpg`` (+ ``root/val/<class>/...``), the
  I-JEPA augmentation (RandomResizedCrop, optional flip) for training, resize + center crop for
  evaluation. Unreadable files are skipped and reported (see :mod:`datamodules.common`).
- :class:`DigitsDataModule`: scikit-learn's bundled 8x8 digits (1797 real images, 10 classes), no
  download; the embedded default for tiny CPU recipes and tests.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from .common import JEPADataModule, SkipUnreadable, list_class_folders
from .digits import load_digits, stratified_split
from .multicrop import MultiCrop

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def _check_crop(image_size: int, crop_scale: Sequence[float]) -> tuple[float, float]:
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    lo, hi = (float(s) for s in crop_scale)
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"crop_scale must satisfy 0 < min <= max <= 1, got {tuple(crop_scale)}")
    return lo, hi


def train_transform(
    image_size: int,
    crop_scale: tuple[float, float],
    hflip: bool,
    mean: Sequence[float],
    std: Sequence[float],
) -> v2.Compose:
    """I-JEPA's training view: RandomResizedCrop (+ optional horizontal flip), then normalize."""
    ops: list[Any] = [v2.RandomResizedCrop(image_size, scale=crop_scale, antialias=True)]
    if hflip:
        ops.append(v2.RandomHorizontalFlip())
    ops += [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    return v2.Compose(ops)


def eval_transform(image_size: int, mean: Sequence[float], std: Sequence[float]) -> v2.Compose:
    """Evaluation view: resize the short side to ``image_size * 256/224``, center crop, normalize."""
    return v2.Compose(
        [
            v2.Resize(int(image_size * 256 / 224), antialias=True),
            v2.CenterCrop(image_size),
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean, std),
        ]
    )


# ---------------------------------------------------------------------------------- image folders
def scan_image_folder(
    folder: str, classes: Sequence[str], extensions: Sequence[str] = IMAGE_EXTENSIONS
) -> list[tuple[str, int]]:
    """``(path, label)`` for every file with an accepted extension under ``folder/<class>/`` (recursive,
    sorted); label = index of the class in ``classes``. Files are not opened here."""
    exts = tuple(e.lower() for e in extensions)
    samples: list[tuple[str, int]] = []
    empty = []
    for label, name in enumerate(classes):
        found = []
        for dirpath, dirnames, filenames in os.walk(os.path.join(folder, name), followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            found += [
                os.path.join(dirpath, f)
                for f in sorted(filenames)
                if f.lower().endswith(exts) and f[0] != "."
            ]
        if not found:
            empty.append(name)
        samples += [(path, label) for path in found]
    if not samples:
        raise FileNotFoundError(
            f"no images found under '{folder}' (class folders {list(classes)});"
            f" accepted extensions: {', '.join(exts)}"
        )
    if empty:
        rank_zero_warn(
            f"class folder(s) with no images under '{folder}': {empty} (accepted extensions: {exts})"
        )
    return samples


class ImageFolderDataset(SkipUnreadable):
    """``(path, label)`` samples read with PIL as RGB; unreadable files are skipped (see common). ``views``: multi-crop
    views of each image (LeJEPA's), added as ``global`` / ``local``, normalized with ``mean`` / ``std``."""

    unreadable_errors = (*SkipUnreadable.unreadable_errors, Image.DecompressionBombError)

    def __init__(self, samples: Sequence[tuple[str, int]], transform: Callable[[Image.Image], torch.Tensor],
                 views: MultiCrop | None = None, mean: tuple[float, float, float] = IMAGENET_MEAN,
                 std: tuple[float, float, float] = IMAGENET_STD):
        self.samples = list(samples)
        self.transform, self.views = transform, views
        self.mean, self.std = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.samples)

    def sample_path(self, index: int) -> str:
        return self.samples[index][0]

    def read(self, index: int) -> Image.Image:
        with Image.open(self.samples[index][0]) as img:
            if img.mode == "P" and "transparency" in img.info:
                img = img.convert("RGBA")  # palette + transparency: PIL asks to go through RGBA
            return img.convert("RGB")  # decodes the whole file: truncated data fails here

    def prepare(self, raw: Image.Image, index: int) -> dict[str, Any]:
        out = {"image": self.transform(raw), "label": self.samples[index][1]}
        if self.views is not None:
            pixels = v2.functional.to_dtype(v2.functional.to_image(raw), torch.float32, scale=True)
            out |= {k: (v - self.mean) / self.std for k, v in self.views(pixels).items()}
        return out


class ImageFolderDataModule(JEPADataModule):
    """Images in class sub-folders, as torchvision's ImageFolder: ``root/<train_dir>/<class>/*``.

    Class names and ``num_classes`` come from the class folders of ``train_dir`` (listed at init);
    ``val_dir``/``test_dir`` (``None`` to leave out) must hold the same class folders. Training view:
    RandomResizedCrop(image_size, scale=crop_scale) (+ flip if ``hflip``); evaluation view (val,
    test, ``train_eval_dataloader``): Resize(image_size*256/224) + CenterCrop(image_size).
    Unreadable or non-image files are skipped and reported in ``skipped_files``.
    """

    def __init__(
        self,
        root: str,
        train_dir: str = "train",
        val_dir: str | None = "val",
        test_dir: str | None = None,
        image_size: int = 224,
        crop_scale: tuple[float, float] = (0.3, 1.0),
        hflip: bool = False,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
        views: MultiCrop | None = None,
        **loader: Any,
    ) -> None:
        """``loader``: the DataLoader settings of :class:`JEPADataModule` (batch_size, num_workers, ...);
        ``views``: multi-crop views added to each training sample (LeJEPA; :mod:`datamodules.multicrop`)."""
        super().__init__(**loader)
        self.save_hyperparameters(ignore=["views"])
        self.views = views
        self.crop_scale = _check_crop(image_size, crop_scale)
        self.root = os.fspath(root)
        self.image_size = image_size
        self.hflip = hflip
        self.mean, self.std = tuple(mean), tuple(std)
        self.extensions = tuple(extensions)
        if not os.path.isdir(self.root):
            raise FileNotFoundError(
                f"ImageFolderDataModule root '{self.root}' does not exist; expected a folder with"
                f" '{train_dir}/'" + (f" and '{val_dir}/'" if val_dir else "") + " sub-folders, each"
                f" holding one sub-folder per class (e.g. {os.path.join(self.root, train_dir, '<class>', 'image.jpg')})"
            )
        self.split_dirs = {
            split: os.path.join(self.root, d)
            for split, d in (("train", train_dir), ("val", val_dir), ("test", test_dir))
            if d is not None
        }
        self.classes = list_class_folders(self.split_dirs["train"])
        self.num_classes = len(self.classes)
        for split in ("val", "test"):
            if split in self.split_dirs:
                self._check_same_classes(self.split_dirs[split])

    def _check_same_classes(self, folder: str) -> None:
        other = list_class_folders(folder)
        if other != self.classes:
            missing = sorted(set(self.classes) - set(other))
            extra = sorted(set(other) - set(self.classes))
            raise ValueError(
                f"class folders of '{folder}' differ from those of '{self.split_dirs['train']}':"
                f" missing {missing}, not in train {extra}"
            )

    def _dataset(self, split: str, augment: bool) -> ImageFolderDataset:
        samples = scan_image_folder(self.split_dirs[split], self.classes, self.extensions)
        if augment:
            transform = train_transform(self.image_size, self.crop_scale, self.hflip, self.mean, self.std)
            return ImageFolderDataset(samples, transform, self.views, self.mean, self.std)
        return ImageFolderDataset(samples, eval_transform(self.image_size, self.mean, self.std))

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit") and self.train_dataset is None:
            self.train_dataset = self._dataset("train", augment=True)
            self.train_eval_dataset = ImageFolderDataset(
                self.train_dataset.samples, eval_transform(self.image_size, self.mean, self.std)
            )
        if stage in (None, "fit", "validate") and self.val_dataset is None and "val" in self.split_dirs:
            self.val_dataset = self._dataset("val", augment=False)
        if stage in (None, "test") and self.test_dataset is None and "test" in self.split_dirs:
            self.test_dataset = self._dataset("test", augment=False)


# ------------------------------------------------------------------------------------------ digits
class DigitsDataset(Dataset):
    """In-memory images ``[N, 1, S, S]`` (already normalized) and labels; optional per-sample
    RandomResizedCrop (torch RNG: seeded per sample by the training sampler, see common.EpochSampler). Returns 3-channel views."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, crop: v2.RandomResizedCrop | None = None):
        self.images, self.labels, self.crop = images, labels, crop

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        x = self.images[index]
        if self.crop is not None:
            x = self.crop(x)
        return {"image": x.expand(3, -1, -1), "label": self.labels[index]}


class DigitsDataModule(JEPADataModule):
    """scikit-learn's bundled digits (1797 real 8x8 images, 10 classes); nothing is downloaded.

    Values 0..16 are scaled to [0, 1], upsampled (bilinear) to ``image_size``, normalized with
    ``mean``/``std`` and replicated to 3 channels. Fixed stratified train/val split from
    ``split_seed`` (``train_indices``/``val_indices``); the test split is the val split. Training
    view: RandomResizedCrop(image_size, scale=crop_scale), no flip (digits are not flip-invariant).
    Everything is held in memory (``1797 * image_size**2 * 4`` bytes).
    """

    num_classes = 10
    classes = [str(d) for d in range(10)]

    def __init__(
        self,
        image_size: int = 32,
        crop_scale: tuple[float, float] = (0.3, 1.0),
        val_fraction: float = 0.2,
        split_seed: int = 0,
        mean: float = 0.5,
        std: float = 0.5,
        num_workers: int = 0,
        **loader: Any,
    ) -> None:
        """``loader``: the other DataLoader settings of :class:`JEPADataModule` (batch_size, seed, ...)."""
        super().__init__(num_workers=num_workers, **loader)
        self.save_hyperparameters()
        self.crop_scale = _check_crop(image_size, crop_scale)
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if std <= 0:
            raise ValueError(f"std must be > 0, got {std}")
        self.image_size = image_size
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.mean, self.std = mean, std
        self.train_indices: np.ndarray | None = None
        self.val_indices: np.ndarray | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        data, target = load_digits()
        labels = torch.from_numpy(target).long()
        pixels = torch.from_numpy(data).float().view(-1, 1, 8, 8) / 16.0
        images = F.interpolate(pixels, size=(self.image_size,) * 2, mode="bilinear", align_corners=False)
        images = ((images - self.mean) / self.std).contiguous()
        self.train_indices, self.val_indices = stratified_split(target, self.val_fraction, self.split_seed)
        tr, va = torch.from_numpy(self.train_indices), torch.from_numpy(self.val_indices)
        crop = v2.RandomResizedCrop(self.image_size, scale=self.crop_scale, antialias=True)
        train_images, train_labels = images[tr], labels[tr]
        self.train_dataset = DigitsDataset(train_images, train_labels, crop)
        self.train_eval_dataset = DigitsDataset(train_images, train_labels)
        self.val_dataset = self.test_dataset = DigitsDataset(images[va], labels[va])
