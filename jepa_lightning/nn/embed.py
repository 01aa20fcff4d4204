"""Token embedders: 2-D image patches and 3-D video tubelets."""

from __future__ import annotations

import torch
from torch import nn


def _pair(x: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    return (int(x), int(x)) if isinstance(x, int) else (int(x[0]), int(x[1]))


class PatchEmbed2D(nn.Module):
    """[B, C, H, W] -> [B, (H/p)*(W/p), D] with a strided convolution (one linear map per patch)."""

    def __init__(self, img_size: int | tuple[int, int] = 224, patch_size: int = 16, in_chans: int = 3,
                 embed_dim: int = 768) -> None:
        super().__init__()
        self.img_size = _pair(img_size)
        self.patch_size = int(patch_size)
        if any(s % self.patch_size for s in self.img_size):
            raise ValueError(f"image size {self.img_size} is not divisible by patch size {self.patch_size}")
        self.in_chans = in_chans
        self.grid_size = tuple(s // self.patch_size for s in self.img_size)
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch_size, stride=self.patch_size)

    def forward(self, x: torch.Tensor, any_size: bool = False) -> torch.Tensor:
        """`any_size`: accept images of any size divisible by the patch size (multi-crop views), not only
        `img_size`."""
        size_ok = (all(s % self.patch_size == 0 for s in x.shape[2:]) if any_size
                   else tuple(x.shape[2:]) == self.img_size)
        if x.dim() != 4 or x.size(1) != self.in_chans or not size_ok:
            expected = (f"sides divisible by {self.patch_size}" if any_size
                        else f"{self.img_size[0]}, {self.img_size[1]}")
            raise ValueError(f"expected images [B, {self.in_chans}, {expected}], got {list(x.shape)}")
        return self.proj(x).flatten(2).transpose(1, 2)


class TubeletEmbed3D(nn.Module):
    """[B, C, T, H, W] -> [B, (T/t)*(H/p)*(W/p), D]: each token is a t x p x p tubelet."""

    def __init__(self, img_size: int | tuple[int, int] = 224, patch_size: int = 16, num_frames: int = 16,
                 tubelet_size: int = 2, in_chans: int = 3, embed_dim: int = 768) -> None:
        super().__init__()
        self.img_size = _pair(img_size)
        self.patch_size = int(patch_size)
        self.num_frames, self.tubelet_size = int(num_frames), int(tubelet_size)
        if any(s % self.patch_size for s in self.img_size) or self.num_frames % self.tubelet_size:
            raise ValueError(f"clip {self.num_frames}x{self.img_size} is not divisible into tubelets "
                             f"{self.tubelet_size}x{self.patch_size}x{self.patch_size}")
        self.in_chans = in_chans
        self.grid_size = (self.num_frames // self.tubelet_size,
                          *(s // self.patch_size for s in self.img_size))
        kernel = (self.tubelet_size, self.patch_size, self.patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=kernel, stride=kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        expected = (self.in_chans, self.num_frames, *self.img_size)
        if x.dim() != 5 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"expected clips [B, {', '.join(map(str, expected))}], got {list(x.shape)}")
        return self.proj(x).flatten(2).transpose(1, 2)


def patchify(x: torch.Tensor, patch_size: int, tubelet_size: int = 1) -> torch.Tensor:
    """Pixels of every token, in the embedders' token order: images [B, C, H, W] -> [B, N, p*p*C]; clips
    [B, C, T, H, W] -> [B, N, t*p*p*C] (t = `tubelet_size`), each token's pixels ordered (t, p, p, C)."""
    p, t = int(patch_size), int(tubelet_size)
    if x.dim() == 4:
        x = x.unsqueeze(2)
        t = 1
    if x.dim() != 5:
        raise ValueError(f"patchify expects images [B, C, H, W] or clips [B, C, T, H, W], got {list(x.shape)}")
    b, c, frames, h, w = x.shape
    if frames % t or h % p or w % p:
        raise ValueError(f"input {list(x.shape)} is not divisible into {t}x{p}x{p} tubelets")
    x = x.reshape(b, c, frames // t, t, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(b, (frames // t) * (h // p) * (w // p), t * p * p * c)
