"""Frozen probes of video encoders that the video benchmarks share (each script imports it from its own folder):
tokens cached once per encoder, V-JEPA's attentive probe, and the mean-pooled linear / kNN cross-checks."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from jepa_lightning.nn import AttentivePooler
from jepa_lightning.optim import WarmupCosineSchedule, param_groups


@torch.no_grad()
def cached_tokens(encoder: nn.Module, loader, dm, labels: Sequence[str]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Tokens [n, clips, N, D] of every video of ``loader`` (its clips evenly spaced) and its ``labels``."""
    encoder.eval()
    tokens, out = [], {k: [] for k in labels}
    for batch in loader:
        batch = dm.on_before_batch_transfer(batch, 0)
        if batch is None:
            continue
        video = batch["video"]
        if video.dim() == 5:                                           # one clip: [B, C, T, H, W]
            video = video[:, None]
        tokens.append(encoder(video.flatten(0, 1)).unflatten(0, video.shape[:2]))
        for k in labels:
            out[k].append(batch[k])
    return torch.cat(tokens), {k: torch.cat(v) for k, v in out.items()}


class ProbeHead(nn.Module):
    """V-JEPA's attentive probe head (as `jepa_lightning.eval.AttentiveProbe`): pooler -> LayerNorm -> linear."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.pooler = AttentivePooler(dim, num_queries=1, num_heads=16 if dim % 16 == 0 else 4)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.linear = nn.Linear(dim, num_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(self.pooler(tokens).squeeze(1)))


def attentive_probe(xtr: torch.Tensor, ytr: torch.Tensor, xva: torch.Tensor, yva: torch.Tensor, num_classes: int,
                    seed: int, epochs: int, batch_size: int = 64) -> float:
    """Train on every (video, clip) of ``xtr`` [n, clips, N, D]; accuracy of the clip-averaged logits on ``xva``
    (AdamW lr 1e-3, weight decay 0.01, warmup-cosine)."""
    clips = xtr.size(1)
    xtr, ytr = xtr.flatten(0, 1), ytr.repeat_interleave(clips)
    torch.manual_seed(seed)
    head = ProbeHead(xtr.size(-1), num_classes)
    opt = torch.optim.AdamW(param_groups([head], 0.01), lr=1e-3)
    steps = epochs * math.ceil(len(xtr) / batch_size)
    sched = WarmupCosineSchedule(opt, steps, int(0.1 * steps), 0.0, 1e-3, 0.0, 0.01, 0.01)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        for idx in torch.randperm(len(xtr), generator=g).split(batch_size):
            loss = F.cross_entropy(head(xtr[idx]), ytr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    head.eval()
    with torch.no_grad():
        logits = head(xva.flatten(0, 1)).unflatten(0, xva.shape[:2]).mean(1)
    return float((logits.argmax(1) == yva).float().mean())


def standardize_channels(train: torch.Tensor, val: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both standardized per channel (the last dimension) with the training split's statistics over every video,
    clip and token position alike (a per-position standardization would turn a trained encoder's near-constant
    background tokens into unit-variance noise)."""
    dims = tuple(range(train.dim() - 1))
    mean, std = train.mean(dims, keepdim=True), train.std(dims, keepdim=True) + 1e-6
    return (train - mean) / std, (val - mean) / std
