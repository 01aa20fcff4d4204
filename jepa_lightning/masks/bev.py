"""AD-L-JEPA BEV cell masks: mask a fixed share of the non-empty and of the empty BEV feature cells per sample.

AD-L-JEPA (Zhu et al., 2025; reference ``pcdet/models/backbones_3d/ad_l_jepa.py``) masks on the bird's-eye-view
feature grid (the encoder's output grid, ``downsample`` x coarser than the input grid):

- non-empty feature cells (some point falls under them): a share ``ratio`` is masked; their points are removed
  from the context encoder's input and the predictor must predict the target encoder's embedding there;
- empty feature cells: the same share ``ratio`` is masked; the prediction there must match the learnable
  *empty token* (the unmasked empty cells show the empty token to the context side instead).

Sampling rule, per sample and per kind (non-empty / empty) independently: with ``n`` cells of that kind,
``k = n - floor(n * (1 - ratio))`` of them are masked (the reference keeps ``int(n * (1 - ratio))`` cells), chosen
uniformly at random: every cell of the kind gets a uniform random key, cells are ranked by key within their
row, and the ``k`` lowest-ranked are masked. Everything is batched torch on the occupancy's device; no Python
loop over samples.

Differences from the reference: the reference draws the non-empty split over the whole batch at once (so the
share varies per sample) and the empty split by independent Bernoulli draws (so the share is only expected);
here both shares are exact per sample, which keeps every sample's loss terms populated.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["BEVCellMask", "BEVMasks"]


@dataclass(frozen=True, eq=False)
class BEVMasks:
    """Boolean masks ``[B, h, w]`` on the BEV feature grid.

    ``occupied``: non-empty feature cells; ``masked_nonempty`` (subset of ``occupied``): cells whose points are
    hidden from the context encoder; ``masked_empty`` (subset of ``~occupied``): empty cells the predictor must
    recognise as empty. ``visible_nonempty`` and ``visible_empty`` are the complements within each kind.
    """

    occupied: torch.Tensor
    masked_nonempty: torch.Tensor
    masked_empty: torch.Tensor

    @property
    def visible_nonempty(self) -> torch.Tensor:
        return self.occupied & ~self.masked_nonempty

    @property
    def visible_empty(self) -> torch.Tensor:
        return ~self.occupied & ~self.masked_empty


def masked_count(n: torch.Tensor, ratio: float) -> torch.Tensor:
    """How many of ``n`` cells are masked: ``n - floor(n * (1 - ratio))`` (the reference keeps
    ``int(n * (1 - ratio))``), computed in float64 so that e.g. 10 cells at ratio 0.3 give exactly 3."""
    keep = torch.floor(n.to(torch.float64) * (1.0 - ratio) + 1e-9).to(n.dtype)
    return n - keep


def _mask_share(select: torch.Tensor, ratio: float, generator: torch.Generator | None) -> torch.Tensor:
    """Per row of ``select [B, N]`` (bool), mask ``masked_count(row sum)`` of its True entries uniformly."""
    b, n = select.shape
    keys = torch.rand(b, n, generator=generator, device=select.device)
    keys = torch.where(select, keys, torch.full_like(keys, 2.0))       # unselected cells rank last
    order = keys.argsort(dim=1)
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(n, device=select.device).expand(b, n))
    k = masked_count(select.sum(1), ratio)                             # [B]
    return (rank < k[:, None]) & select


class BEVCellMask:
    """Exact-share masks of non-empty and empty BEV feature cells (see the module docstring).

    Args:
        ratio: the masked share of each kind (the paper's masking ratio, 0.5 by default).

    Called with ``occupied [B, h, w]`` (bool, a feature cell is non-empty if any input cell under it has points)
    and a ``torch.Generator`` on the same device, returns :class:`BEVMasks`.
    """

    def __init__(self, ratio: float = 0.5) -> None:
        if not 0.0 <= float(ratio) <= 1.0:
            raise ValueError(f"BEVCellMask: ratio must be in [0, 1], got {ratio}")
        self.ratio = float(ratio)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(ratio={self.ratio})"

    def __call__(self, occupied: torch.Tensor, generator: torch.Generator | None = None) -> BEVMasks:
        if occupied.dim() != 3 or occupied.dtype != torch.bool:
            raise ValueError("BEVCellMask: occupied must be a bool tensor [B, h, w], got "
                             f"{occupied.dtype} {tuple(occupied.shape)}")
        b, h, w = occupied.shape
        flat = occupied.reshape(b, h * w)
        nonempty = _mask_share(flat, self.ratio, generator).view(b, h, w)
        empty = _mask_share(~flat, self.ratio, generator).view(b, h, w)
        return BEVMasks(occupied=occupied, masked_nonempty=nonempty, masked_empty=empty)
