"""ResNet image encoders that return one pooled feature vector per image, ``[B, num_features]``.

- :class:`SmallResNet`: a CIFAR-style ResNet (3x3 stem, stride 1, no max-pool) with configurable widths and
  depths, built from basic blocks; small enough for CPU recipes on 8-32 px images.
- :class:`TimmResNet`: any timm ResNet (``resnet18`` by default) without its classifier (``num_classes=0``),
  optionally with the CIFAR stem that seq-JEPA uses on small images (3x3 conv stride 1, no max-pool).

Both expose ``num_features`` (the width of the pooled output), which methods read to size their heads.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection (projected by a 1x1 conv when the shape changes).
    The last BatchNorm starts at zero (``zero_init_residual``), so each block starts as the identity."""

    def __init__(self, in_dim: int, out_dim: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_dim, out_dim, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_dim)
        self.conv2 = nn.Conv2d(out_dim, out_dim, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_dim)
        nn.init.zeros_(self.bn2.weight)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_dim != out_dim:
            self.shortcut = nn.Sequential(nn.Conv2d(in_dim, out_dim, 1, stride, bias=False), nn.BatchNorm2d(out_dim))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(out)) + self.shortcut(x))


class SmallResNet(nn.Module):
    """CIFAR-style ResNet: 3x3 stem (stride 1, no max-pool), one stage per entry of ``widths`` with
    ``depths[i]`` basic blocks (every stage after the first halves the resolution), global average pooling.

    ``widths=(64, 128, 256, 512), depths=(2, 2, 2, 2)`` is ResNet-18 with the CIFAR stem; the tiny recipes
    use a few channels per stage.
    """

    def __init__(self, in_chans: int = 3, widths: Sequence[int] = (16, 32, 64), depths: Sequence[int] = (1, 1, 1),
                 stem_width: int | None = None) -> None:
        super().__init__()
        widths, depths = [int(w) for w in widths], [int(d) for d in depths]
        if not widths or len(widths) != len(depths) or min(widths) < 1 or min(depths) < 1:
            raise ValueError(f"SmallResNet: widths and depths must be non-empty lists of positive integers of the "
                             f"same length, got widths={widths}, depths={depths}")
        stem = stem_width or widths[0]
        self.stem = nn.Sequential(nn.Conv2d(in_chans, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem),
                                  nn.ReLU(inplace=True))
        blocks: list[nn.Module] = []
        dim = stem
        for i, (w, d) in enumerate(zip(widths, depths)):
            for j in range(d):
                blocks.append(BasicBlock(dim, w, stride=2 if (i > 0 and j == 0) else 1))
                dim = w
        self.blocks = nn.Sequential(*blocks)
        self.num_features = dim
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x)).mean((-2, -1))


class TimmResNet(nn.Module):
    """A timm ResNet (``model_name``, e.g. ``resnet18``) without classifier: ``[B, C, H, W] -> [B, num_features]``.

    ``cifar_stem=True`` replaces the 7x7 stride-2 stem conv and the max-pool by one 3x3 stride-1 conv (the
    stem seq-JEPA uses on 32-128 px images). ``zero_init_residual`` starts every residual branch at zero.
    """

    def __init__(self, model_name: str = "resnet18", in_chans: int = 3, cifar_stem: bool = True,
                 zero_init_residual: bool = True) -> None:
        super().__init__()
        import timm

        self.model = timm.create_model(model_name, pretrained=False, num_classes=0, in_chans=in_chans,
                                       zero_init_last=zero_init_residual)
        if not hasattr(self.model, "conv1") or not hasattr(self.model, "maxpool"):
            raise ValueError(f"TimmResNet: timm model '{model_name}' is not a ResNet (no conv1/maxpool); "
                             "use a timm ResNet such as resnet18 or resnet50")
        if cifar_stem:
            out = self.model.conv1.out_channels
            self.model.conv1 = nn.Conv2d(in_chans, out, 3, 1, 1, bias=False)
            nn.init.kaiming_normal_(self.model.conv1.weight, mode="fan_out", nonlinearity="relu")
            self.model.maxpool = nn.Identity()
        self.num_features = int(self.model.num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
