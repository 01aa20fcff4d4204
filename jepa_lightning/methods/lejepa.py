"""LeJEPA (Balestriero & LeCun 2025, "LeJEPA: Provable and Scalable Self-Supervised Learning Without the
Heuristics"; reference code rbalestr-lab/lejepa): a predictive loss plus SIGReg, one trade-off weight, no EMA
teacher, no stop-gradient, no schedules beyond the learning rate's.

The algorithm box, per batch of images each seen as Vg global and Vl local views (`datamodules.MultiCrop`):

    e_v = pool(encoder(view_v))          backbone embedding (mean of a ViT's tokens; a ResNet's pooled output)
    z_v = projector(e_v)                 the paper's MLP projector (Linear-BN-ReLU, Linear-BN-ReLU, Linear)
    mu  = mean of z_v over the global views
    L   = (1 - lambda) * mean_v ||mu - z_v||^2 + lambda * SIGReg(z)     (SIGReg per view, averaged over views)

Every view predicts the centre of the global views; SIGReg pushes each view's projections towards an isotropic
Gaussian, which rules out collapse without a teacher. SIGReg here is the shared guard of `JEPAModule`
(`sigreg_weight` = lambda, `losses.SIGReg`: the global batch's statistic under DDP/FSDP2, directions seeded by
step), so this file holds only the predictive half. Frozen evaluation reads the backbone (`encode`), as the paper's
linear probes do.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from jepa_lightning.methods.base import JEPAModule, StepOutput
from jepa_lightning.nn.projector import Projector


def pooled(out: torch.Tensor) -> torch.Tensor:
    """A backbone's embedding [B, D]: the mean of its tokens [B, N, D], or its pooled output [B, D] as is."""
    return out.mean(1) if out.dim() == 3 else out


class LeJEPA(JEPAModule):
    """LeJEPA (see the module docstring).

    Args:
        encoder: the backbone (our `VisionTransformer`, which also takes the smaller local views, or a ResNet such
            as `nn.SmallResNet` / `nn.TimmResNet`).
        projector: the projector on the pooled embedding (`Projector`; its `in_dim` = the backbone's width).
        lamb: lambda, SIGReg's share of the loss (the paper's default 0.05); the predictive loss gets 1 - lambda.
        sigreg_slices: SIGReg's random directions (the reference README's 1024).
        input_key: the evaluation images' batch key; training batches carry `global` [B, Vg, C, H, W] and
            optionally `local` [B, Vl, C, h, w].
        **kwargs: `JEPAModule`'s (lr schedule, weight decay, ...). There is no EMA teacher.
    """

    module_arguments = ("encoder", "projector")

    def __init__(self, encoder: nn.Module, projector: Projector, lamb: float = 0.05, sigreg_slices: int = 1024,
                 input_key: str = "image", **kwargs: Any) -> None:
        if not 0.0 < lamb < 1.0:
            raise ValueError(f"LeJEPA lamb (SIGReg's share of the loss) must be in (0, 1), got {lamb!r}")
        for fixed in ("ema", "sigreg_weight", "sigreg_projector", "eval_encoder"):
            if fixed in kwargs:
                raise ValueError(f"LeJEPA sets {fixed} itself (no EMA teacher; SIGReg's weight is lamb, on the "
                                 "projector's output; evaluation reads the encoder): remove it from the config")
        super().__init__(encoder, projector, input_key=input_key, ema=None, eval_encoder="encoder",
                         sigreg_weight=lamb, sigreg_slices=sigreg_slices, sigreg_projector=None, **kwargs)
        self.projector, self.lamb = projector, lamb
        del self.predictor  # the projector is the only head (kept under its own name)

    def embed(self, views: torch.Tensor) -> torch.Tensor:
        """Backbone embeddings [V, B, D] of views [B, V, C, H, W] (all views of one size in one pass)."""
        b, v = views.shape[:2]
        return pooled(self.encoder(views.flatten(0, 1))).view(b, v, -1).transpose(0, 1)

    def objective(self, batch: dict[str, Any]) -> StepOutput:
        if "global" not in batch:
            raise KeyError("LeJEPA trains on multi-crop views: the batch has no 'global' key; give the data module "
                           "views: {class_path: datamodules.MultiCrop, ...}")
        emb = [self.embed(batch["global"])]
        if batch.get("local") is not None:
            emb.append(self.embed(batch["local"]))
        e = torch.cat(emb)                                                 # [V, B, D], the global views first
        v, b = e.shape[:2]
        z = self.projector(e.flatten(0, 1)).view(v, b, -1)                 # [V, B, P]
        centre = z[: batch["global"].size(1)].mean(0)                      # [B, P]
        prediction = (centre - z).float().square().mean()
        # SIGReg(z) x lamb is added by the shared training step (the guard: `sigreg_weight` = lamb)
        self.log_step_term("train/prediction", prediction, b)
        return StepOutput((1.0 - self.lamb) * prediction, centre.detach(), e[0].detach(), z, z)

    @torch.no_grad()
    def encode(self, batch: dict[str, Any], network: str | None = None) -> torch.Tensor:
        """Frozen-evaluation tokens of the backbone on the full images: [B, N, D] (a ResNet's [B, 1, D])."""
        out = super().encode(batch, network)
        return out[:, None] if out.dim() == 2 else out
