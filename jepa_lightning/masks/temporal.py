"""UI-JEPA's temporal masks: whole "hyper-frames" of a clip are the target, the other hyper-frames the context.

The grid is the TOKEN grid ``T x H x W`` (as in :mod:`jepa_lightning.masks.multiblock3d`): a temporal slot
``t`` is one tubelet of frames (2 frames with tubelet 2: a "hyper-frame"), and masking it masks all its
``H x W`` tokens. Where V-JEPA's multi-block masks are tubes through every time step (the target is the same
spatial region in every frame, so a frame never has to be predicted from other frames), a temporal mask
asks the predictor for entire moments of the recording from the moments around them: on UI recordings, what
screen came between two others, where the finger went, what was typed. UI-JEPA (Fu et al., 2024) trains with
both kinds (``jepa_lightning.methods.ui_jepa.ui_jepa_masks``).

Sampling rule, per call: ``u = rand(1)`` (first draw from the generator) gives the number of masked slots
``k = round(T (lo + u (hi - lo)))``, clipped to ``[1, T - 1]`` (at least one slot each side), the same for
the whole batch; then each sample masks the ``k`` slots with the largest of ``T`` uniform keys (``rand(B,
T)``), i.e. a uniformly random ``k``-subset. Contexts ``[B, (T - k) H W]`` and targets ``[B, 1, k H W]`` are
flat row-major token indices, rows sorted ascending, disjoint, together the whole grid.
"""

from __future__ import annotations

import math

import torch

from .multiblock import _int_at_least, _resolve_device, _scale_range
from .multiblock3d import _grid3
from .utils import Masks

__all__ = ["TemporalMask"]


class TemporalMask:
    """Masks a random subset of whole temporal slots (hyper-frames), see the module docstring.

    Args:
        masked: range of the fraction of the ``T`` temporal slots that are masked, within (0, 1]; the count is
            clipped to ``[1, T - 1]`` so that both context and target hold at least one slot.

    Calling it with ``(batch_size, (T, H, W), generator)`` returns :class:`Masks` with ``context [B, Kc]`` and
    ``targets [B, 1, Kt]``. A grid with a single temporal slot cannot be masked this way (``ValueError``).
    """

    def __init__(self, masked: tuple[float, float] = (0.25, 0.5)) -> None:
        self.masked = _scale_range("masked", masked)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(masked={self.masked})"

    def num_masked(self, u: float, duration: int) -> int:
        lo, hi = self.masked
        return min(max(round(duration * (lo + u * (hi - lo))), 1), duration - 1)

    def __call__(
        self,
        batch_size: int,
        grid_size: tuple[int, int, int],
        generator: torch.Generator | None = None,
        device: torch.device | str | None = None,
    ) -> Masks:
        duration, height, width = _grid3(grid_size)
        B = _int_at_least("batch_size", batch_size, 1)
        if duration < 2:
            raise ValueError(f"TemporalMask needs at least 2 temporal token slots, got grid {tuple(grid_size)}: "
                             "use more frames or a smaller tubelet_size")
        dev = _resolve_device(generator, device)
        k = self.num_masked(float(torch.rand(1, generator=generator, device=dev)), duration)
        keys = torch.rand(B, duration, generator=generator, device=dev)
        slots = torch.zeros(B, duration, dtype=torch.bool, device=dev)
        slots.scatter_(1, keys.topk(k, dim=1).indices, True)                       # [B, T] masked slots
        target = slots[:, :, None].expand(B, duration, height * width).reshape(B, -1)
        plane = height * width
        n = math.prod((duration, height, width))
        # exactly k * H * W targets per row: nonzero() lists them row by row, ascending within a row
        tgt = target.nonzero()[:, 1].view(B, k * plane)
        ctx = (~target).nonzero()[:, 1].view(B, n - k * plane)
        return Masks(context=ctx, targets=tgt[:, None])
