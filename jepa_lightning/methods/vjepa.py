"""V-JEPA (Bardes et al., 2024): predict the latents of masked spatio-temporal regions of a clip.

    for each batch of clips x [B, C, T, H, W] (tubelets t x p x p, 3-D sin-cos positions):
        masks   <- one mask per generator (short-range: union of 8 blocks at spatial scale .15; long-range:
                   union of 2 blocks at .7; full temporal extent; ~90% masked); context = the complement
                                                                                  [on_after_batch_transfer]
        h       <- LayerNorm(teacher(x))                            full clip, no grad
        for each generator i:
            z_i    <- encoder(x at context_i)
            pred_i <- predictor(z_i, context_i, targets_i, mask token i)
            loss  += mean |pred_i - h at targets_i|^p / p               (L1 for p = 1)
        loss    <- loss / number of generators
        step AdamW; teacher <- EMA(teacher, encoder)                                   [JEPAModule]

`VJEPA.target_tokens` and `VJEPA.distance` are the two places a variant changes: SALT's student takes the
latents of a frozen teacher instead of the EMA teacher's, SALT's teacher takes normalized pixels and an L2
distance (`jepa_lightning.methods.salt`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from jepa_lightning.masks.multiblock3d import MultiBlockMask3D
from jepa_lightning.masks.utils import Masks
from jepa_lightning.methods.base import JEPAModule, StepOutput
from jepa_lightning.nn.predictor import TransformerPredictor
from jepa_lightning.nn.tokens import gather_tokens
from jepa_lightning.nn.vit import VisionTransformer


def vjepa_masks() -> list[MultiBlockMask3D]:
    """V-JEPA's pair of mask generators: short-range (8 blocks, spatial scale 0.15) and long-range (2 blocks,
    0.7), aspect 0.75-1.5, full temporal extent."""
    return [MultiBlockMask3D(num_blocks=8, spatial_scale=(0.15, 0.15), aspect_ratio=(0.75, 1.5)),
            MultiBlockMask3D(num_blocks=2, spatial_scale=(0.7, 0.7), aspect_ratio=(0.75, 1.5))]


class VJEPA(JEPAModule):
    """V-JEPA. `masks`: the mask generators (default `vjepa_masks()`); the predictor needs one mask token per
    generator (`num_mask_tokens`). `loss_exp`: the distance is mean |pred - target|^loss_exp / loss_exp
    (1 = L1, the paper's)."""

    def __init__(self, encoder: VisionTransformer, predictor: TransformerPredictor,
                 masks: list[MultiBlockMask3D] | None = None, loss_exp: float = 1.0, input_key: str = "video",
                 **kwargs: Any) -> None:
        super().__init__(encoder, predictor, input_key=input_key, **kwargs)
        self.masks = list(masks) if masks is not None else vjepa_masks()
        if not self.masks:
            raise ValueError("V-JEPA needs at least one mask generator")
        if predictor.num_mask_tokens < len(self.masks):
            raise ValueError(f"{len(self.masks)} mask generators need {len(self.masks)} predictor mask tokens; "
                             f"set model.predictor.init_args.num_mask_tokens={len(self.masks)} "
                             f"(got {predictor.num_mask_tokens})")
        if tuple(predictor.grid_size) != tuple(encoder.grid_size) or predictor.embed_dim != encoder.embed_dim:
            raise ValueError(
                f"predictor (grid_size={list(predictor.grid_size)}, embed_dim={predictor.embed_dim}) does not "
                f"match encoder (grid_size={list(encoder.grid_size)}, embed_dim={encoder.embed_dim}): set "
                "model.predictor.init_args.grid_size / embed_dim to the encoder's")
        if loss_exp <= 0:
            raise ValueError(f"loss_exp must be > 0, got {loss_exp}")
        self.loss_exp = float(loss_exp)

    def sample_masks(self, batch: dict[str, Any], generator: torch.Generator) -> list[Masks]:
        x = batch[self.input_key]
        return [m(x.size(0), self.encoder.grid_size, generator=generator, device=x.device) for m in self.masks]

    # --------------------------------------------------------------- the two places variants change
    def target_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Targets at every token [B, N, D'] (no grad) and the pooled evaluation features when they come for
        free: V-JEPA's are the layer-normed EMA teacher's latents, pooled teacher latents are the features."""
        h = self.target(x)
        return F.layer_norm(h, h.shape[-1:]), h.mean(1)

    def distance(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (pred - target).abs().pow(self.loss_exp).mean() / self.loss_exp

    # --------------------------------------------------------------- the algorithm box
    def forward_loss(self, x: torch.Tensor, masks: list[Masks]) -> StepOutput:
        with torch.no_grad():
            h, features = self.target_tokens(x)
        loss, preds, pooled = x.new_zeros((), dtype=torch.float32), [], []
        for i, m in enumerate(masks):
            targets = m.targets[:, 0]                                   # one target set per generator [B, K]
            z = self.encoder(x, keep=m.context)
            pred = self.predictor(z, m.context, targets, mask_token_id=i)
            loss = loss + self.distance(pred.float(), gather_tokens(h, targets).float())  # fp32 under bf16
            preds.append(pred)
            pooled.append(z.mean(1))
        # embeddings: one view per mask generator (its context)
        return StepOutput(loss / len(masks), h, features, torch.cat(preds, dim=1), torch.stack(pooled))

    def objective(self, batch: dict[str, Any]) -> StepOutput:
        return self.forward_loss(batch[self.input_key], batch["masks"])
