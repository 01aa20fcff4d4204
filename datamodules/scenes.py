"""Multi-object scenes with per-pixel labels: several scikit-learn digits on one canvas (embedded, no download).

Batches: ``{"image": float32 [B, 3, H, W] normalized, "label": int64 [B], "segmentation": int64 [B, H, W]}``.

- ``segmentation``: 0 = background, ``1 + d`` = a pixel of digit ``d``.
- ``label`` (the image-level label): the *dominant* digit class, the class with the most labelled pixels in
  ``segmentation`` (ties: the smallest class). A single-label definition, so the image-level probe is ordinary
  10-class classification.

Generation (deterministic from ``scene_seed``, in memory): the bundled 8x8 digits are loaded, split and
upsampled by :class:`datamodules.images.DigitsDataModule` (train scenes use training digits only, val scenes
validation digits only); each scene draws 2-4 (``digits_per_scene``) digits uniformly and places each
``digit_size`` x ``digit_size`` digit at a uniform position fully inside the canvas. The image is the pixel-wise
maximum of the placed digits' intensities; a pixel is labelled with the digit of the highest intensity there
when that intensity exceeds ``threshold`` (so where digits overlap, the brighter stroke wins), else background.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from .common import JEPADataModule
from .images import DigitsDataModule, _check_crop


def render_scenes(digits: torch.Tensor, labels: torch.Tensor, num_scenes: int, canvas: int,
                  digits_per_scene: tuple[int, int], threshold: float, generator: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Scenes from digit images ``digits`` [N, S, S] (intensities in [0, 1]) with classes ``labels`` [N].

    Returns (images [num_scenes, canvas, canvas] in [0, 1], segmentation [num_scenes, canvas, canvas] int64,
    image labels [num_scenes] int64); see the module docstring for the rule. Vectorized over scenes and slots.
    """
    n, size = digits.size(0), digits.size(-1)
    lo, hi = digits_per_scene
    if not 1 <= lo <= hi:
        raise ValueError(f"digits_per_scene must satisfy 1 <= min <= max, got {(lo, hi)}")
    if size > canvas:
        raise ValueError(f"digit_size={size} does not fit on a {canvas}x{canvas} canvas")
    g = generator
    count = torch.randint(lo, hi + 1, (num_scenes,), generator=g)                           # digits per scene
    pick = torch.randint(0, n, (num_scenes, hi), generator=g)                               # [S, D]
    top = torch.randint(0, canvas - size + 1, (num_scenes, hi), generator=g)
    left = torch.randint(0, canvas - size + 1, (num_scenes, hi), generator=g)
    present = torch.arange(hi)[None] < count[:, None]                                        # [S, D]
    layers = torch.zeros(num_scenes, hi, canvas, canvas)
    s = torch.arange(num_scenes)[:, None, None, None]
    d = torch.arange(hi)[None, :, None, None]
    rows = (top[:, :, None, None] + torch.arange(size)[:, None]).expand(-1, -1, size, size)
    cols = (left[:, :, None, None] + torch.arange(size)[None, :]).expand(-1, -1, size, size)
    layers[s, d, rows, cols] = digits[pick] * present[:, :, None, None]
    intensity, which = layers.max(1)                                                        # [S, H, W]
    cls = labels[pick].gather(1, which.flatten(1)).view_as(which)
    seg = torch.where(intensity > threshold, cls + 1, torch.zeros_like(cls))
    # dominant class: the most labelled pixels (ties: the smallest class)
    area = torch.zeros(num_scenes, 11, dtype=torch.long).scatter_add_(1, seg.flatten(1), torch.ones_like(
        seg.flatten(1)))[:, 1:]
    return intensity, seg.long(), area.argmax(1)


class ScenesDataset(Dataset):
    """In-memory scenes: normalized images [N, 1, H, W], segmentation [N, H, W], labels [N]; an optional
    RandomResizedCrop applied jointly to image and mask (``tv_tensors``: bilinear for the image, nearest for
    the mask), drawn from torch's RNG (seeded per sample by the training sampler). Returns 3-channel views."""

    def __init__(self, images: torch.Tensor, segmentation: torch.Tensor, labels: torch.Tensor,
                 crop: v2.RandomResizedCrop | None = None) -> None:
        self.images, self.segmentation, self.labels, self.crop = images, segmentation, labels, crop

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        x, seg = self.images[index], self.segmentation[index]
        if self.crop is not None:
            x, seg = self.crop(tv_tensors.Image(x), tv_tensors.Mask(seg[None]))
            x, seg = x.as_subclass(torch.Tensor), seg.as_subclass(torch.Tensor)[0]
        return {"image": x.expand(3, -1, -1), "label": self.labels[index], "segmentation": seg}


class DigitScenesDataModule(JEPADataModule):
    """2-4 scikit-learn digits per canvas with per-pixel labels, for patch-level (segmentation) evaluation.

    Args:
        image_size: canvas side in pixels.
        digit_size: side of each placed digit (upsampled bilinearly from 8x8).
        digits_per_scene: (min, max) digits per scene.
        num_train, num_val: scenes per split (the test split is the val split).
        scene_seed: seed of the scene generator (train and val scenes draw from independent streams).
        threshold: intensity (in [0, 1]) above which a pixel belongs to a digit.
        crop_scale: RandomResizedCrop scale range of the training view (image and mask cropped identically).
        val_fraction, split_seed: the digits' stratified train/val split (as :class:`DigitsDataModule`).
        mean, std: normalization of the [0, 1] intensities (as :class:`DigitsDataModule`).
        **loader: the DataLoader settings of :class:`JEPADataModule` (batch_size, seed, ...).
    """

    num_classes = 10
    classes = [str(d) for d in range(10)]
    num_segmentation_classes = 11  # background + 10 digits

    def __init__(self, image_size: int = 32, digit_size: int = 14, digits_per_scene: tuple[int, int] = (2, 4),
                 num_train: int = 2000, num_val: int = 500, scene_seed: int = 0, threshold: float = 0.25,
                 crop_scale: tuple[float, float] = (0.6, 1.0), val_fraction: float = 0.2, split_seed: int = 0,
                 mean: float = 0.5, std: float = 0.5, num_workers: int = 0, **loader: Any) -> None:
        super().__init__(num_workers=num_workers, **loader)
        self.save_hyperparameters()
        self.crop_scale = _check_crop(image_size, crop_scale)
        if not 1 <= digit_size <= image_size:
            raise ValueError(f"digit_size must be in [1, image_size={image_size}], got {digit_size}")
        lo, hi = (int(v) for v in digits_per_scene)
        if not 1 <= lo <= hi:
            raise ValueError(f"digits_per_scene must satisfy 1 <= min <= max, got {tuple(digits_per_scene)}")
        if num_train < 1 or num_val < 1:
            raise ValueError(f"num_train and num_val must be >= 1, got {num_train} and {num_val}")
        if not 0.0 <= threshold < 1.0:
            raise ValueError(f"threshold must be in [0, 1), got {threshold}")
        if std <= 0:
            raise ValueError(f"std must be > 0, got {std}")
        self.image_size, self.digit_size, self.digits_per_scene = image_size, digit_size, (lo, hi)
        self.num_train, self.num_val, self.scene_seed, self.threshold = num_train, num_val, scene_seed, threshold
        self.val_fraction, self.split_seed, self.mean, self.std = val_fraction, split_seed, mean, std

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        # The digits at digit_size in [0, 1] and their train/val split, loaded once by DigitsDataModule.
        digits = DigitsDataModule(image_size=self.digit_size, val_fraction=self.val_fraction,
                                  split_seed=self.split_seed, mean=0.0, std=1.0)
        digits.setup()
        splits = {}
        for i, (name, ds, count) in enumerate((("train", digits.train_eval_dataset, self.num_train),
                                               ("val", digits.val_dataset, self.num_val))):
            g = torch.Generator().manual_seed(self.scene_seed * 2 + i)
            img, seg, lab = render_scenes(ds.images[:, 0].clamp(0, 1), ds.labels, count, self.image_size,
                                          self.digits_per_scene, self.threshold, g)
            splits[name] = (((img - self.mean) / self.std)[:, None].contiguous(), seg, lab)
        crop = v2.RandomResizedCrop(self.image_size, scale=self.crop_scale, antialias=True)
        self.train_dataset = ScenesDataset(*splits["train"], crop=crop)
        self.train_eval_dataset = ScenesDataset(*splits["train"])
        self.val_dataset = self.test_dataset = ScenesDataset(*splits["val"])
