"""RankMe (Garrido et al., 2023): the effective rank of a batch of embeddings, a label-free collapse signal."""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def effective_rank(embeddings: torch.Tensor, eps: float = 1e-7, center: bool = True) -> torch.Tensor:
    """exp(entropy of p), p_k = sigma_k / sum(sigma) + eps, over the singular values of [n, D] embeddings.
    Between ~1 (all rows on one line, or constant) and min(n, D) (isotropic).

    `center` (default) subtracts the mean embedding first: pooled, LayerNorm'd tokens share one large mean
    direction, whose singular value otherwise dominates (uncentred, a random ViT reads ~1.2 and looks
    collapsed; centred it reads what its embeddings actually spread over)."""
    if embeddings.dim() != 2:
        raise ValueError(f"RankMe expects embeddings [n, D], got {list(embeddings.shape)}")
    z = embeddings.double()
    if center:
        z = z - z.mean(0, keepdim=True)
    s = torch.linalg.svdvals(z)
    p = s / s.sum().clamp_min(torch.finfo(s.dtype).tiny) + eps
    return torch.exp(-(p * p.log()).sum()).float()


def variance_shares(tokens: torch.Tensor) -> dict[str, float]:
    """Where the variance of token maps [n, N, D] (n samples, N positions) lies: ``position`` (the per-position
    mean over samples: what a position embedding alone would give), ``sample`` (the per-sample mean over positions:
    one code for the whole clip or image, the same at every token) and ``local`` (the rest: what differs from token
    to token within a sample beyond its position, e.g. where an object is). The three sum to 1.

    A JEPA encoder that drifts to ``sample`` ~ 1 has collapsed onto a global code: every target token is the same
    vector, predictable from any context, and the token-level content a probe reads is gone (RankMe of the pooled
    features does not see it)."""
    if tokens.dim() != 3:
        raise ValueError(f"variance_shares expects tokens [n, N, D], got {list(tokens.shape)}")
    position, sample = (float(v) for v in position_and_sample_shares(tokens.double()))
    return {"position": position, "sample": sample, "local": 1.0 - position - sample}


def position_and_sample_shares(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``variance_shares(z)``'s ``position`` and ``sample`` as tensors on ``z``'s device, in its dtype (no host
    sync: training metrics)."""
    z = z - z.mean((0, 1), keepdim=True)
    total = z.pow(2).mean().clamp_min(torch.finfo(z.dtype).tiny)
    return z.mean(0).pow(2).mean() / total, z.mean(1).pow(2).mean() / total


class RankMe(Metric):
    """RankMe of the embeddings seen since the last `reset()`.

    `update(z)` takes [B, D] (or [B, N, D], flattened to tokens). Each process keeps only its `max_samples`
    most recent rows (default 2048: the rank is read from the singular values of an [n, D] matrix, so n a few
    times D is enough, and memory and SVD cost stay bounded). Under DDP the states are gathered (`cat`), so
    `compute()` sees up to world_size * max_samples rows. Embeddings are stored detached, in float32, and
    centred before the rank is read (`center=False` for the uncentred variant).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, max_samples: int = 2048, eps: float = 1e-7, center: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        if max_samples < 1:
            raise ValueError(f"max_samples must be >= 1, got {max_samples}")
        self.max_samples, self.eps, self.center = int(max_samples), float(eps), bool(center)
        self.add_state("embeddings", default=[], dist_reduce_fx="cat")

    def update(self, embeddings: torch.Tensor) -> None:
        z = embeddings.detach().float()
        z = z.reshape(-1, z.size(-1))
        self.embeddings.append(z[-self.max_samples:])
        kept, total = [], 0
        for chunk in reversed(self.embeddings):  # drop the oldest rows beyond the cap
            if total >= self.max_samples:
                break
            chunk = chunk[-(self.max_samples - total):]
            kept.append(chunk)
            total += chunk.size(0)
        self.embeddings = kept[::-1]

    def compute(self) -> torch.Tensor:
        if isinstance(self.embeddings, list) and not self.embeddings:  # after a DDP sync: one cat tensor
            raise RuntimeError("RankMe.compute() called before any update()")
        return effective_rank(dim_zero_cat(self.embeddings), self.eps, self.center)
