"""I-JEPA (Assran et al., 2023): predict the latents of masked image blocks from one context block.

    for each batch x:
        masks   <- multi-block sampler: 4 target blocks (scale .15-.2, aspect .75-1.5), 1 context block
                   (scale .85-1) minus the targets                                  [on_after_batch_transfer]
        h       <- LayerNorm(teacher(x))                  full image, no grad
        targets <- h at each target block
        z       <- encoder(x at the context block)
        pred    <- predictor(z, context positions, target positions)   all blocks in one batched pass
        loss    <- smooth-L1 (or L2) between pred and targets, averaged over target tokens
        step AdamW; teacher <- EMA(teacher, encoder)                                [JEPAModule]
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F

from jepa_lightning.masks.multiblock import MultiBlockMask2D
from jepa_lightning.masks.utils import Masks
from jepa_lightning.methods.base import JEPAModule, StepOutput
from jepa_lightning.nn.predictor import TransformerPredictor
from jepa_lightning.nn.tokens import gather_tokens
from jepa_lightning.nn.vit import VisionTransformer


class IJEPA(JEPAModule):
    def __init__(self, encoder: VisionTransformer, predictor: TransformerPredictor,
                 masks: MultiBlockMask2D | None = None, loss: Literal["smooth_l1", "l2"] = "smooth_l1",
                 **kwargs: Any) -> None:
        super().__init__(encoder, predictor, **kwargs)
        if tuple(predictor.grid_size) != tuple(encoder.grid_size) or predictor.embed_dim != encoder.embed_dim:
            raise ValueError(
                f"predictor (grid_size={list(predictor.grid_size)}, embed_dim={predictor.embed_dim}) does not "
                f"match encoder (grid_size={list(encoder.grid_size)}, embed_dim={encoder.embed_dim}): set "
                "model.predictor.init_args.grid_size / embed_dim to the encoder's")
        self.masks = masks if masks is not None else MultiBlockMask2D()
        self.loss_fn = F.smooth_l1_loss if loss == "smooth_l1" else F.mse_loss

    def sample_masks(self, batch: dict[str, Any], generator: torch.Generator) -> Masks:
        x = batch[self.input_key]
        return self.masks(x.size(0), self.encoder.grid_size, generator=generator, device=x.device)

    def forward_loss(self, x: torch.Tensor, m: Masks) -> StepOutput:
        """The I-JEPA objective on images x with masks m: (loss, targets [B, T, K, D], pooled teacher features,
        predictions [B, T, K, D], the context encoder's pooled output [B, D])."""
        with torch.no_grad():
            h = self.target(x)
            features = h.mean(1)
            h = F.layer_norm(h, h.shape[-1:])
            targets = gather_tokens(h, m.targets)                       # [B, T, K, D]
        z = self.encoder(x, keep=m.context)                            # [B, Kc, D]
        pred = self.predictor(z, m.context, m.targets)                  # [B, T, K, D]
        loss = self.loss_fn(pred.float(), targets.float())               # in fp32 under bf16 autocast
        return StepOutput(loss, targets, features, pred, z.mean(1))

    def objective(self, batch: dict[str, Any]) -> StepOutput:
        return self.forward_loss(batch[self.input_key], batch["masks"])
