"""Per-clip views: the training view (:class:`VideoTrainTransform`), the evaluation views
(:class:`VideoEvalTransform`) and the uint8 -> normalized float32 step they share (:class:`ScaleNormalize`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ScaleNormalize:
    """uint8 ``[..., C, H, W]`` -> float32 ``(x / 255 - mean) / std``: ``v2.ToDtype(float32, scale=True)`` then
    ``v2.Normalize(mean, std)`` in one multiply-add, run along the channels-last memory layout decoded frames
    keep through the resize (per-channel float ops on channels-last tensors are slow in ``[C, H, W]`` order).
    Equal to the two v2 ops up to float rounding (~1e-6)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        self.scale = torch.tensor([1.0 / (255.0 * s) for s in std])
        self.shift = torch.tensor([-m / s for m, s in zip(mean, std)])

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        y = x.movedim(-3, -1).to(torch.float32)  # [..., H, W, C]: contiguous for channels-last frames
        return torch.addcmul(self.shift, y, self.scale, out=y).movedim(-1, -3)


class VideoTrainTransform:
    """Training view of one clip: RandomResizedCrop (the same crop for every frame), optional horizontal flip,
    scale to [0, 1], normalize. ``uint8 [T, C, H, W]`` -> ``float32 [1, C, T, crop_size, crop_size]``."""

    def __init__(self, crop_size: int, crop_scale: tuple[float, float], crop_ratio: tuple[float, float],
                 hflip: bool, mean: Sequence[float], std: Sequence[float]) -> None:
        ops: list[Any] = [v2.RandomResizedCrop(crop_size, scale=crop_scale, ratio=crop_ratio, antialias=True)]
        if hflip:
            ops.append(v2.RandomHorizontalFlip())
        self.geometry = v2.Compose(ops)
        self.norm = ScaleNormalize(mean, std)

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        x = self.geometry(tv_tensors.Video(clip)).as_subclass(torch.Tensor)
        return self.norm(x).permute(1, 0, 2, 3).unsqueeze(0)


class VideoEvalTransform:
    """Evaluation views of one clip: resize the short side to ``crop_size``, take ``views`` square crops evenly
    spaced along the long side (one view: the centre crop), scale, normalize.
    ``uint8 [T, C, H, W]`` -> ``float32 [views, C, T, crop_size, crop_size]``."""

    def __init__(self, crop_size: int, views: int, mean: Sequence[float], std: Sequence[float]) -> None:
        self.crop_size, self.views = crop_size, views
        self.resize = v2.Resize(crop_size, antialias=True)
        self.norm = ScaleNormalize(mean, std)

    def __call__(self, clip: torch.Tensor) -> torch.Tensor:
        x = self.resize(tv_tensors.Video(clip)).as_subclass(torch.Tensor)
        c, (h, w) = self.crop_size, x.shape[-2:]
        slack = max(h, w) - c
        if self.views == 1:
            offsets = [slack // 2]
        else:
            offsets = [round(i * slack / (self.views - 1)) for i in range(self.views)]
        if w >= h:
            top = (h - c) // 2
            crops = [self.norm(x[..., top:top + c, o:o + c]) for o in offsets]
        else:
            left = (w - c) // 2
            crops = [self.norm(x[..., o:o + c, left:left + c]) for o in offsets]
        return torch.stack(crops).permute(0, 2, 1, 3, 4)
