"""SIGReg (LeJEPA, Balestriero & LeCun 2025): Sketched Isotropic Gaussian Regularization.

Embeddings are projected on `num_slices` random unit directions; on each direction the Epps-Pulley statistic
measures how far the projections' empirical characteristic function is from the standard normal's:

    EP = N * integral over t of |mean_n exp(i t x_n) - exp(-t^2 / 2)|^2 * exp(-t^2 / 2) dt

integrated with the trapezoid rule on `knots` points of [0, t_max] (the integrand is even in t: the half line,
its weights doubled), as the reference implementation (rbalestr-lab/lejepa `EppsPulley`, defaults t_max = 3,
17 points) does. SIGReg is the mean of EP over the directions (and over views when given [V, N, D]). A sample of a
standard normal scores O(1); a collapsed or anisotropic one scores O(N).

Distributed (DDP, FSDP2): the statistic is the one of the GLOBAL batch. Each rank sums cos(t x) and sin(t x) over
its own samples; one all-reduce (sum) of those sums and of the sample count gives the global characteristic
function, and N is the global count. The all-reduce is autograd-aware (its backward all-reduces the gradients), so
with DDP's gradient averaging every rank's gradient is the global statistic's: 2 processes on halves of a batch
give the loss and gradients of 1 process on the whole batch (`tests/test_sigreg.py`). Averaging per-rank statistics
instead would regularise each rank's small batch (a different, noisier objective whose scale depends on the
number of GPUs). The directions are the same on every rank: drawn from a generator every rank seeds alike (the
methods seed it with (seed, step), so a resumed run draws the same sequence).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def random_directions(dim: int, num_slices: int, generator: torch.Generator | None = None,
                      device: torch.device | str | None = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """[dim, num_slices] Gaussian directions normalised to unit length (columns)."""
    a = torch.randn(dim, num_slices, generator=generator, device=device, dtype=torch.float32)
    return a.div_(a.norm(dim=0, keepdim=True)).to(dtype)


def _global_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum over the ranks of the default process group (autograd-aware); `x` itself without one."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(x, op=dist.ReduceOp.SUM)


def epps_pulley(x: torch.Tensor, t: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Epps-Pulley statistic of the samples along dim -2 of `x` [..., N, K] against N(0, 1), per column: [..., K].
    `t` [P] integration points, `weights` [P] quadrature weights times the window exp(-t^2/2). Over the global batch
    when a process group is initialised."""
    xt = x.unsqueeze(-1) * t                                                  # [..., N, K, P]
    sums = torch.stack([xt.cos().sum(-3), xt.sin().sum(-3)])                  # [2, ..., K, P]
    count = torch.full((), x.size(-2), dtype=sums.dtype, device=x.device)
    sums, count = _global_sum(torch.cat([sums.flatten(), count[None]])).split([sums.numel(), 1])
    cos_mean, sin_mean = (sums.view(2, *xt.shape[:-3], *xt.shape[-2:]) / count)
    phi = torch.exp(-0.5 * t.square())
    err = (cos_mean - phi).square() + sin_mean.square()                       # [..., K, P]
    return (err @ weights) * count


class SIGReg(nn.Module):
    """SIGReg of embeddings [N, D] or [V, N, D] (V views, each its own sample): the Epps-Pulley statistic on
    `num_slices` random unit directions, averaged. `forward(z, generator)`: the directions come from `generator`
    (seed it alike on every rank; None: torch's global generator).

    Defaults: 1024 slices (the reference README's), 17 integration points on [0, 3] (reference `EppsPulley`)."""

    def __init__(self, num_slices: int = 1024, knots: int = 17, t_max: float = 3.0) -> None:
        super().__init__()
        for name, value, least in (("num_slices", num_slices, 1), ("knots", knots, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"SIGReg {name} must be an integer >= {least}, got {value!r}")
        if not t_max > 0:
            raise ValueError(f"SIGReg t_max must be > 0, got {t_max!r}")
        self.num_slices = num_slices
        t = torch.linspace(0.0, t_max, knots)
        dt = t_max / (knots - 1)
        trapezoid = torch.full((knots,), 2 * dt)  # both half lines
        trapezoid[[0, -1]] = dt
        self.register_buffer("t", t, persistent=False)
        self.register_buffer("weights", trapezoid * torch.exp(-0.5 * t.square()), persistent=False)

    def forward(self, z: torch.Tensor, generator: torch.Generator | None = None,
                directions: torch.Tensor | None = None) -> torch.Tensor:
        if z.dim() not in (2, 3):
            raise ValueError(f"SIGReg expects embeddings [N, D] or [V, N, D], got {list(z.shape)}")
        if directions is None:
            directions = random_directions(z.size(-1), self.num_slices, generator, z.device)
        proj = z.float() @ directions.float()                                 # [(V,) N, K]
        return epps_pulley(proj, self.t, self.weights).mean()
