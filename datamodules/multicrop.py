"""Multi-crop views of one image (DINO's scheme, LeJEPA's views): a few large global crops and several small
local crops, each with its own random crop, flip and colour distortion.

LeJEPA's defaults (rbalestr-lab/lejepa README): 2 global views, RandomResizedCrop scale (0.3, 1.0) at 224 px, and 6
local views, scale (0.05, 0.3) at 98 px; each view: horizontal flip (p 0.5), colour jitter (p 0.8: brightness 0.4,
contrast 0.4, saturation 0.2, hue 0.1), grayscale (p 0.2), Gaussian blur (p 0.5), solarize (p 0.2, threshold half
the range). A data module given a `MultiCrop` adds to each training sample ``global`` [Vg, C, G, G] and ``local``
[Vl, C, L, L], normalized like its ``image``.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2


class MultiCrop:
    """[C, H, W] float image in [0, 1] -> {"global": [num_global, C, global_size, global_size], "local":
    [num_local, C, local_size, local_size]} (in [0, 1]; the data module normalizes). Random draws come from torch's
    global RNG, which the training sampler seeds per sample. `blur_kernel`: the Gaussian blur's kernel side (odd;
    about a tenth of the global size, as DINO's 23 at 224 px)."""

    def __init__(self, global_size: int = 224, local_size: int = 98, num_global: int = 2, num_local: int = 6,
                 global_scale: tuple[float, float] = (0.3, 1.0), local_scale: tuple[float, float] = (0.05, 0.3),
                 flip: float = 0.5, jitter: float = 0.8, grayscale: float = 0.2, blur: float = 0.5,
                 solarize: float = 0.2, blur_kernel: int = 23) -> None:
        for name, value, least in (("global_size", global_size, 1), ("local_size", local_size, 1),
                                   ("num_global", num_global, 1), ("num_local", num_local, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"MultiCrop {name} must be an integer >= {least}, got {value!r}")
        for name, (lo, hi) in (("global_scale", global_scale), ("local_scale", local_scale)):
            if not 0 < lo <= hi <= 1:
                raise ValueError(f"MultiCrop {name} must be (low, high) with 0 < low <= high <= 1, got "
                                 f"{(lo, hi)}")
        for name, p in (("flip", flip), ("jitter", jitter), ("grayscale", grayscale), ("blur", blur),
                        ("solarize", solarize)):
            if not 0 <= p <= 1:
                raise ValueError(f"MultiCrop {name} is a probability in [0, 1], got {p!r}")
        if blur_kernel < 1 or blur_kernel % 2 == 0:
            raise ValueError(f"MultiCrop blur_kernel must be an odd integer >= 1, got {blur_kernel!r}")
        self.num_global, self.num_local = num_global, num_local
        self.global_size, self.local_size = global_size, local_size

        def view(size: int, scale: tuple[float, float]) -> v2.Compose:
            return v2.Compose([
                v2.RandomResizedCrop(size, scale=tuple(scale), antialias=True),
                v2.RandomHorizontalFlip(flip),
                v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=jitter),
                v2.RandomGrayscale(grayscale),
                v2.RandomApply([v2.GaussianBlur(blur_kernel, sigma=(0.1, 2.0))], p=blur),
                v2.RandomSolarize(0.5, p=solarize),
            ])

        self.global_view, self.local_view = view(global_size, global_scale), view(local_size, local_scale)

    def __call__(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        out = {"global": torch.stack([self.global_view(image) for _ in range(self.num_global)])}
        if self.num_local:
            out["local"] = torch.stack([self.local_view(image) for _ in range(self.num_local)])
        return {k: v.clamp_(0.0, 1.0) for k, v in out.items()}  # resampling rounds a hair past the range
