"""Deterministic seeds from several integers (masks per (seed, rank, step); samples per (seed, epoch, index)),
and seeded random draws shared by the methods and the DataModules."""

from __future__ import annotations

import torch

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def mix_seed(*values: int) -> int:
    """A 63-bit seed (accepted by every backend's `manual_seed`) from a sequence of integers, chained through
    splitmix64: nearby or permuted inputs give unrelated seeds."""
    h = 0
    for i, v in enumerate(values):
        h = _splitmix64((h if i else 0) ^ (int(v) & _MASK64))
    return h >> 1


def random_orthogonal(d: int, generator: torch.Generator) -> torch.Tensor:
    """A Haar-random orthogonal ``[d, d]`` float64 matrix on the CPU (QR of a Gaussian, the signs of R's diagonal
    moved into Q)."""
    q, r = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=torch.float64, device="cpu"))
    return q * torch.sign(torch.diagonal(r)).unsqueeze(0)
