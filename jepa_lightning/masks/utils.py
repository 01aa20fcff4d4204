"""Mask containers and helpers shared by all mask generators."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from jepa_lightning.seeding import mix_seed

__all__ = ["Masks", "step_generator"]


@dataclass(frozen=True, eq=False)
class Masks:
    """Index masks for one batch.

    ``context``: LongTensor ``[B, Kc]``, each row sorted ascending, flat patch indices in ``[0, N)``.
    ``targets``: LongTensor ``[B, T, Kt]``, each row sorted ascending, flat patch indices in ``[0, N)``.
    """

    context: torch.Tensor
    targets: torch.Tensor


def step_generator(
    seed: int, rank: int, step: int, device: torch.device | str | None = None
) -> torch.Generator:
    """A generator on ``device`` seeded deterministically from ``(seed, rank, step)``.

    The triple is chained through splitmix64, so permuting the fields gives unrelated seeds.
    """
    if rank < 0 or step < 0:
        raise ValueError(f"step_generator: rank and step must be >= 0, got rank={rank}, step={step}")
    g = torch.Generator(device=device if device is not None else "cpu")
    g.manual_seed(mix_seed(seed, rank, step))
    return g
