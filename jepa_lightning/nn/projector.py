"""LeJEPA's projector (Balestriero & LeCun 2025; reference code rbalestr-lab/lejepa): the MLP whose output SIGReg
regularises, in LeJEPA itself and in the optional SIGReg guard of every method (`JEPAModule.sigreg_projector`)."""

from __future__ import annotations

import torch
from torch import nn


class Projector(nn.Module):
    """`depth - 1` x (Linear, BatchNorm1d, ReLU) of width `hidden`, then Linear to `out_dim` (torchvision's
    `MLP(in, [hidden, hidden, out], norm_layer=BatchNorm1d)` of the reference code)."""

    def __init__(self, in_dim: int, hidden: int = 2048, out_dim: int = 128, depth: int = 3) -> None:
        super().__init__()
        for name, value in (("in_dim", in_dim), ("hidden", hidden), ("out_dim", out_dim), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"Projector {name} must be an integer >= 1, got {value!r}")
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(depth - 1):
            layers += [nn.Linear(width, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True)]
            width = hidden
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)
        self.in_dim, self.out_dim = in_dim, out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.size(-1) != self.in_dim:
            raise ValueError(f"Projector expects embeddings of width in_dim={self.in_dim}, got {list(x.shape)}: set "
                             f"the projector's in_dim to the encoder's embedding width ({x.size(-1)})")
        return self.net(x)
