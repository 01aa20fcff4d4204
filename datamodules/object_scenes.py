"""Object scenes: textured geometric shapes of 10 classes on crops of real photographs (embedded, no download).

Batches: ``{"image": float32 [B, 3, H, W] normalized, "label": int64 [B], "segmentation": int64 [B, H, W]}``.

- ``label``: the class of the scene's main object (the object with the largest visible area; see
  :mod:`datamodules.object_render` for why that is tie-free), one of :data:`~datamodules.object_render.SHAPES`.
- ``segmentation``: 0 = background, ``1 + c`` = a visible pixel of an object of class ``c`` (top-most wins).

The scenes are rendered once (:func:`~datamodules.object_render.render_object_scenes`, train and val from
independent streams of ``scene_seed``) and cached as uint8 tensors in
``cache_dir/<hash of the generation parameters>/{train,val}.pt`` (``cache_dir`` defaults to
``$JEPA_LIGHTNING_CACHE/object_scenes``, else ``~/.cache/jepa_lightning/object_scenes``), written atomically, so a
second ``setup`` only reads them. Training view: RandomResizedCrop (``crop_scale``; + a horizontal flip if
``hflip``: every shape class is closed under mirroring) applied jointly to image and mask (bilinear for the
image, nearest for the mask); evaluation views (val, test = val, ``train_eval_dataloader``) are the scenes as
rendered. With ``views`` (a :class:`~datamodules.multicrop.MultiCrop`, LeJEPA's), each training sample also holds
``global`` [Vg, 3, G, G] and ``local`` [Vl, 3, L, L] crops of the rendered scene, normalized like ``image``.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from .common import GeneratedOnce, JEPADataModule, embedded_root
from .images import _check_crop
from .multicrop import MultiCrop
from .object_render import NUM_SHAPES, SHAPES, SceneSpec, render_object_scenes

_VERSION = 1  # bump when the renderer's output changes, so old caches are not reused


class ObjectScenesDataset(Dataset):
    """Scenes held as uint8 images [N, 3, H, W], segmentation uint8 [N, H, W] and labels int64 [N]; each sample
    is normalized on load. ``crop``: an optional joint transform of (``tv_tensors.Image``, ``tv_tensors.Mask``)
    drawn from torch's RNG (seeded per sample by the training sampler). ``views``: multi-crop views of the scene
    as rendered, added as ``global`` / ``local``."""

    def __init__(self, images: torch.Tensor, segmentation: torch.Tensor, labels: torch.Tensor,
                 mean: tuple[float, float, float], std: tuple[float, float, float],
                 crop: v2.Transform | None = None, views: MultiCrop | None = None) -> None:
        if images.dtype != torch.uint8 or images.dim() != 4 or images.size(1) != 3:
            raise ValueError(f"images must be uint8 [N, 3, H, W], got {images.dtype} {list(images.shape)}")
        if segmentation.shape != (images.size(0), *images.shape[2:]) or labels.shape != images.shape[:1]:
            raise ValueError(f"segmentation {list(segmentation.shape)} / labels {list(labels.shape)} do not match "
                             f"images {list(images.shape)}")
        self.images, self.segmentation, self.labels, self.crop, self.views = images, segmentation, labels, crop, views
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        x = self.images[index].float().div_(255)
        seg = self.segmentation[index].long()
        views = self.views(x) if self.views is not None else {}
        if self.crop is not None:
            x, seg = self.crop(tv_tensors.Image(x), tv_tensors.Mask(seg[None]))
            x, seg = x.as_subclass(torch.Tensor), seg.as_subclass(torch.Tensor)[0]
        return {"image": (x - self.mean) / self.std, "label": self.labels[index], "segmentation": seg,
                **{k: (v - self.mean) / self.std for k, v in views.items()}}


class ObjectScenesDataModule(GeneratedOnce, JEPADataModule):
    """One large textured shape (the label) among small distractor shapes on a photograph crop, per-pixel labels.

    Args:
        image_size: canvas side in pixels.
        num_train, num_val: scenes per split (the test split is the val split).
        num_train_eval: how many training scenes the frozen probes train on (the first ones; default and when
            num_train is smaller: all), so pretraining can use many scenes while the probe protocol stays the same.
        scene_seed: seed of the scene generator (train and val scenes come from independent streams).
        objects_per_scene, main_scale, distractor_scale, rotation, background_scale, background_blur,
            background_contrast, texture_strength, min_contrast: the scene generator's
            :class:`~datamodules.object_render.SceneSpec` (object counts, radii as fractions of image_size, largest
            rotation in degrees, photograph crop size, background blur and contrast, texture contrast, least RGB
            distance of object colours from their local background).
        crop_scale: RandomResizedCrop scale range of the training view (image and mask cropped identically).
        hflip: also flip the training view horizontally (jointly).
        views: multi-crop views added to each training sample (LeJEPA; see the module docstring).
        mean, std: per-channel normalization of the [0, 1] images.
        cache_dir: where rendered scenes are cached (see the module docstring).
        **loader: the DataLoader settings of :class:`JEPADataModule` (batch_size, seed, ...).
    """

    num_classes = NUM_SHAPES
    classes = list(SHAPES)
    num_segmentation_classes = NUM_SHAPES + 1  # background + 10 shapes
    generated_what = "scenes"

    def __init__(self, image_size: int = 64, num_train: int = 4000, num_val: int = 1000,
                 num_train_eval: int | None = None, scene_seed: int = 0,
                 objects_per_scene: tuple[int, int] = (2, 4), main_scale: tuple[float, float] = (0.24, 0.32),
                 distractor_scale: tuple[float, float] = (0.05, 0.09), rotation: float = 15.0,
                 background_scale: tuple[float, float] = (0.15, 0.35), background_blur: float = 1.0,
                 background_contrast: float = 0.6, texture_strength: tuple[float, float] = (0.2, 0.45),
                 min_contrast: float = 0.35, crop_scale: tuple[float, float] = (0.6, 1.0), hflip: bool = False,
                 mean: tuple[float, float, float] = (0.5, 0.5, 0.5), std: tuple[float, float, float] = (0.25, 0.25, 0.25),
                 cache_dir: str | None = None, views: MultiCrop | None = None, num_workers: int = 0,
                 **loader: Any) -> None:
        super().__init__(num_workers=num_workers, **loader)
        self.save_hyperparameters(ignore=["views"])
        self.views = views
        self.crop_scale = _check_crop(image_size, crop_scale)
        for name, value in (("num_train", num_train), ("num_val", num_val)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if num_train_eval is not None and not (isinstance(num_train_eval, int) and num_train_eval >= 1):
            raise ValueError(f"num_train_eval must be None or an integer >= 1, got {num_train_eval!r}")
        self.num_train_eval = num_train_eval
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std must be 3 values (RGB) with std > 0, got mean={mean}, std={std}")
        # checks every scene argument (a clear error here, not at the first setup)
        self.spec = SceneSpec(image_size=image_size, objects_per_scene=tuple(int(v) for v in objects_per_scene),
                              main_scale=tuple(main_scale), distractor_scale=tuple(distractor_scale),
                              rotation=float(rotation), background_scale=tuple(background_scale),
                              background_blur=float(background_blur), background_contrast=float(background_contrast),
                              texture_strength=tuple(texture_strength), min_contrast=float(min_contrast))
        self.generation = {**asdict(self.spec), "num_train": num_train, "num_val": num_val,
                           "scene_seed": scene_seed, "version": _VERSION}
        self.cache_dir, self.data_dir = embedded_root(cache_dir, "object_scenes", self.generation)
        self.image_size, self.num_train, self.num_val, self.scene_seed = image_size, num_train, num_val, scene_seed
        self.hflip = hflip
        self.mean, self.std = tuple(float(m) for m in mean), tuple(float(s) for s in std)
        self.generation_seconds: float | None = None  # set when this object rendered the scenes

    def _generate(self, folder: str) -> dict[str, int]:
        """Renders both splits into ``folder`` (:class:`~datamodules.common.GeneratedOnce`'s ``prepare_data``)."""
        for stream, split in enumerate(("train", "val")):
            out = render_object_scenes(getattr(self, f"num_{split}"), seed=self.scene_seed * 2 + stream,
                                       **asdict(self.spec))
            torch.save({"image": out["image"].mul(255).round_().to(torch.uint8),
                        "segmentation": out["segmentation"].to(torch.uint8), "label": out["label"]},
                       os.path.join(folder, f"{split}.pt"))
        return {"train": self.num_train, "val": self.num_val}

    def _load(self, split: str) -> dict[str, torch.Tensor]:
        path = os.path.join(self.data_dir, f"{split}.pt")
        try:
            data = torch.load(path, weights_only=True)
        except (OSError, RuntimeError, EOFError) as err:
            raise OSError(f"cannot read cached scenes '{path}' ({err}); delete the folder '{self.data_dir}' to "
                          "render them again") from err
        expected = getattr(self, f"num_{split}")
        if not isinstance(data, dict) or len(data.get("label", ())) != expected:
            raise ValueError(f"cached scenes '{path}' do not hold {expected} scenes; delete the folder "
                             f"'{self.data_dir}' to render them again")
        return data

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is not None:
            return
        if not self.generated:
            self.prepare_data()
        train, val = self._load("train"), self._load("val")
        ops: list[v2.Transform] = [v2.RandomResizedCrop(self.image_size, scale=self.crop_scale, antialias=True)]
        if self.hflip:
            ops.append(v2.RandomHorizontalFlip())
        norm = (self.mean, self.std)
        fields = ("image", "segmentation", "label")
        self.train_dataset = ObjectScenesDataset(*(train[f] for f in fields), *norm, crop=v2.Compose(ops),
                                                 views=self.views)
        first = slice(0, self.num_train_eval)  # the probes' training scenes (all by default)
        self.train_eval_dataset = ObjectScenesDataset(*(train[f][first] for f in fields), *norm)
        self.val_dataset = self.test_dataset = ObjectScenesDataset(*(val[f] for f in fields), *norm)
