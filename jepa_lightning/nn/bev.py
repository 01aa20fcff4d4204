"""Dense bird's-eye-view networks for AD-L-JEPA: a strided conv encoder and a conv predictor.

The paper's encoder is a sparse 3-D conv backbone (SECOND-style, spconv) whose output is flattened over height
into a BEV map 8x coarser than the voxel grid. Sparse-conv libraries are not available on CPU here, so
:class:`BEVEncoder` is a dense 2-D stand-in on the BEV input ``[B, C_in, ny, nx]`` (height slices as channels)
with the same output geometry. Methods only rely on ``embed_dim`` and ``downsample``, so any module with those
attributes mapping ``[B, C_in, ny, nx]`` to ``[B, embed_dim, ny / downsample, nx / downsample]`` can replace it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["BEVEncoder", "BEVPredictor", "conv_bn_relu"]


def conv_bn_relu(in_dim: int, out_dim: int, stride: int = 1, kernel: int = 3) -> nn.Sequential:
    """conv (no bias) -> BatchNorm -> ReLU."""
    return nn.Sequential(nn.Conv2d(in_dim, out_dim, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(out_dim), nn.ReLU(inplace=True))


class BEVEncoder(nn.Module):
    """Dense BEV encoder: a 3x3 stem, then one stage per entry of ``widths`` (a 3x3 conv-BN-ReLU that halves
    the resolution for the first ``log2(downsample)`` stages, then ``blocks_per_stage - 1`` more at that
    resolution), then a 1x1 conv-BN-ReLU to ``embed_dim`` (as the reference's ``conv_out``).

    Args:
        in_chans: BEV input channels (height-slice occupancy + per-cell statistics).
        embed_dim: output channels D.
        widths: channels of the stages.
        downsample: total stride, a power of two with ``log2(downsample) <= len(widths)``.
        blocks_per_stage: conv-BN-ReLU blocks per stage (>= 1).
    """

    def __init__(self, in_chans: int, embed_dim: int = 64, widths: Sequence[int] = (32, 64, 64),
                 downsample: int = 8, blocks_per_stage: int = 2) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        strides = downsample.bit_length() - 1
        if downsample < 1 or 2 ** strides != downsample or strides > len(widths):
            raise ValueError(f"BEVEncoder: downsample must be a power of two <= 2 ** len(widths) "
                             f"(= {2 ** len(widths)}), got {downsample}")
        if blocks_per_stage < 1 or not widths:
            raise ValueError(f"BEVEncoder: need widths and blocks_per_stage >= 1, got {widths}, {blocks_per_stage}")
        self.in_chans, self.embed_dim, self.downsample = int(in_chans), int(embed_dim), int(downsample)
        self.stem = conv_bn_relu(in_chans, widths[0])
        stages, prev = [], widths[0]
        for i, w in enumerate(widths):
            blocks = [conv_bn_relu(prev, w, stride=2 if i < strides else 1)]
            blocks += [conv_bn_relu(w, w) for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*blocks))
            prev = w
        self.stages = nn.Sequential(*stages)
        self.out = conv_bn_relu(prev, embed_dim, kernel=1)

    def forward(self, bev: torch.Tensor) -> torch.Tensor:
        if bev.dim() != 4 or bev.size(1) != self.in_chans:
            raise ValueError(f"BEVEncoder: expected bev [B, {self.in_chans}, ny, nx], got {tuple(bev.shape)}")
        if bev.size(2) % self.downsample or bev.size(3) % self.downsample:
            raise ValueError(f"BEVEncoder: grid {tuple(bev.shape[2:])} is not divisible by "
                             f"downsample={self.downsample}")
        return self.out(self.stages(self.stem(bev)))


class BEVPredictor(nn.Module):
    """AD-L-JEPA's predictor: ``depth`` x [conv3x3, BN, ReLU] at the feature resolution, then a 1x1 conv to
    ``dim`` (so that predictions are not confined to the positive orthant, unlike the reference's final ReLU).

    Args:
        dim: embedding channels (input and output).
        depth: conv-BN-ReLU blocks.
        hidden_dim: their channels (``dim`` by default).
    """

    def __init__(self, dim: int, depth: int = 3, hidden_dim: int | None = None) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"BEVPredictor: depth must be >= 1, got {depth}")
        hidden = int(hidden_dim or dim)
        self.embed_dim = int(dim)
        self.blocks = nn.Sequential(*[conv_bn_relu(dim if i == 0 else hidden, hidden) for i in range(depth)])
        self.proj = nn.Conv2d(hidden, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.blocks(x))
