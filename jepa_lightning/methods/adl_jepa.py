"""AD-L-JEPA (Zhu et al., 2025): joint-embedding predictive pretraining of a BEV LiDAR encoder.

Reference: HaoranZhuExplorer/AD-L-JEPA-Release, ``pcdet/models/backbones_3d/ad_l_jepa.py``.

    for each batch of BEV grids x [B, C_in, ny, nx] (encoder stride s, feature grid h = ny/s, w = nx/s):
        occ    <- feature cells with any point under them (max-pool of "any channel != 0" by s)
        masks  <- per sample: a share r of the non-empty cells (masked_nonempty) and the same share r of the
                  empty cells (masked_empty)                                       [on_after_batch_transfer]
        z      <- encoder(x with the input cells under masked_nonempty zeroed)    (their points removed)
        z      <- mask token at masked_nonempty and masked_empty cells; empty token at the visible empty cells
        ctx    <- L2-normalise(z) over channels
        pred   <- L2-normalise(predictor(ctx))                                     3 x [conv3x3, BN, ReLU] + 1x1
        tgt    <- teacher(x) (EMA of the encoder, no grad); empty token at masked_empty; L2-normalise
        loss   <- alpha * (0.75 * mean(1 - cos(pred, tgt)) over masked_nonempty
                           + 0.25 * mean(1 - cos(pred, tgt)) over masked_empty)
                  + beta * (hinge(ctx at visible non-empty cells) + hinge(pred at masked_nonempty))
                  where hinge(z) = mean over channels of relu(gamma - sqrt(var(z) + 1e-4)), gamma = 1/16,
                  the variance taken over the cells of each sample, averaged over samples
        step AdamW; teacher <- EMA(teacher, encoder)                                [JEPAModule]

The target at masked empty cells is the learnable empty token itself (not detached, as in the reference): the
prediction there learns to say "empty", and the token is pulled by both sides. ``target_input="masked"`` feeds
the teacher only the points under masked non-empty cells, like the reference's sparse target encoder;
``"full"`` (default) feeds it the whole grid, as dense convolutions mix neighbouring cells anyway.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from jepa_lightning.masks.bev import BEVCellMask, BEVMasks
from jepa_lightning.methods.base import JEPAModule, StepOutput

__all__ = ["ADLJEPA", "BEVTokens", "adl_jepa_loss", "context_input", "cosine_distance", "masked_mean",
           "occupancy", "upsample_mask", "variance_hinge"]


# ------------------------------------------------------------------------------------------ tensor pieces
def occupancy(bev: torch.Tensor, downsample: int) -> torch.Tensor:
    """Non-empty BEV feature cells ``[B, ny/s, nx/s]`` (bool): an input cell is non-empty when any channel is
    non-zero, a feature cell when any input cell under it is (max-pool by the encoder stride ``s``)."""
    if bev.dim() != 4:
        raise ValueError(f"occupancy: expected bev [B, C_in, ny, nx], got {tuple(bev.shape)}")
    if bev.size(2) % downsample or bev.size(3) % downsample:
        raise ValueError(f"occupancy: BEV grid {tuple(bev.shape[2:])} is not divisible by downsample={downsample}")
    occ = bev.ne(0).any(1, keepdim=True).to(bev.dtype)
    return F.max_pool2d(occ, downsample)[:, 0] > 0


def upsample_mask(mask: torch.Tensor, downsample: int) -> torch.Tensor:
    """A feature-cell mask ``[B, h, w]`` on the input grid ``[B, h*s, w*s]`` (each cell covers s x s inputs)."""
    return mask.repeat_interleave(downsample, 1).repeat_interleave(downsample, 2)


def context_input(bev: torch.Tensor, masked_nonempty: torch.Tensor, downsample: int) -> torch.Tensor:
    """The context encoder's input: ``bev`` with every input cell under a masked non-empty feature cell zeroed
    (the points there removed); all other cells unchanged."""
    return bev.masked_fill(upsample_mask(masked_nonempty, downsample)[:, None], 0)


def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``1 - cos(a, b)`` over the channel dimension 1: ``[B, D, h, w]`` x2 -> ``[B, h, w]``."""
    return 1.0 - F.cosine_similarity(a, b, dim=1)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over the True entries of ``mask`` (same shape); 0 when the mask is empty."""
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp_min(1.0)


def variance_hinge(z: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0 / 16.0, eps: float = 1e-4,
                   over: Literal["sample", "batch"] = "sample") -> torch.Tensor:
    """The variance regulariser on embeddings ``z [B, D, h, w]`` at the cells ``mask [B, h, w]``:
    ``mean_d relu(gamma - sqrt(var_d + eps))`` with the unbiased variance of channel d over the selected cells.

    ``over="sample"`` (the reference): variance over each sample's cells, the hinge averaged over the samples
    with at least 2 selected cells; ``"batch"``: variance over all selected cells of the batch. 0 when there are
    fewer than 2 cells. Vectorized with masked moments (no loop over samples)."""
    m = mask[:, None].to(z.dtype)                                       # [B, 1, h, w]
    dims = (2, 3) if over == "sample" else (0, 2, 3)
    n = m.sum(dims, keepdim=True)
    mean = (z * m).sum(dims, keepdim=True) / n.clamp_min(1.0)
    var = (((z - mean) ** 2) * m).sum(dims, keepdim=True) / (n - 1.0).clamp_min(1.0)
    hinge = F.relu(gamma - torch.sqrt(var + eps)).mean(1).flatten()    # [B] or [1]
    valid = (n.flatten() >= 2).to(z.dtype)
    return (hinge * valid).sum() / valid.sum().clamp_min(1.0)


def adl_jepa_loss(context: torch.Tensor, prediction: torch.Tensor, target: torch.Tensor, masks: BEVMasks,
                  nonempty_weight: float = 0.75, empty_weight: float = 0.25, alpha: float = 1.0,
                  beta: float = 1.0, gamma: float = 1.0 / 16.0,
                  variance_over: Literal["sample", "batch"] = "sample") -> dict[str, torch.Tensor]:
    """The AD-L-JEPA objective on L2-normalised ``context``, ``prediction``, ``target`` ``[B, D, h, w]``.

    Returns the total ``loss`` and its parts: ``loss_nonempty`` / ``loss_empty`` (mean cosine distance over
    masked non-empty / masked empty cells), ``loss_jepa`` (their weighted sum), ``reg_context`` (hinge on the
    context at visible non-empty cells), ``reg_prediction`` (hinge on the predictions at masked non-empty cells),
    ``loss_reg`` (their sum); ``loss = alpha * loss_jepa + beta * loss_reg``."""
    dist = cosine_distance(prediction.float(), target.float())
    parts = {"loss_nonempty": masked_mean(dist, masks.masked_nonempty),
             "loss_empty": masked_mean(dist, masks.masked_empty)}
    parts["loss_jepa"] = nonempty_weight * parts["loss_nonempty"] + empty_weight * parts["loss_empty"]
    parts["reg_context"] = variance_hinge(context.float(), masks.visible_nonempty, gamma, over=variance_over)
    parts["reg_prediction"] = variance_hinge(prediction.float(), masks.masked_nonempty, gamma, over=variance_over)
    parts["loss_reg"] = parts["reg_context"] + parts["reg_prediction"]
    parts["loss"] = alpha * parts["loss_jepa"] + beta * parts["loss_reg"]
    return parts


class BEVTokens(nn.Module):
    """The learnable mask token and empty token ``[1, D, 1, 1]`` (standard-normal init, as in the reference)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.mask = nn.Parameter(torch.randn(1, dim, 1, 1))
        self.empty = nn.Parameter(torch.randn(1, dim, 1, 1))


# ------------------------------------------------------------------------------------------------ method
class ADLJEPA(JEPAModule):
    """AD-L-JEPA pretraining (see the module docstring for the algorithm).

    Args:
        encoder: any module mapping ``bev [B, C_in, ny, nx]`` to ``[B, D, ny/s, nx/s]`` with attributes
            ``embed_dim`` (D) and ``downsample`` (s), e.g. :class:`jepa_lightning.nn.bev.BEVEncoder`.
        predictor: conv predictor ``[B, D, h, w] -> [B, D, h, w]``, e.g. :class:`jepa_lightning.nn.bev.BEVPredictor`.
        masks: the BEV cell mask sampler (``BEVCellMask(0.5)`` by default).
        alpha, beta: weights of the cosine loss and of the variance regulariser (reference config: 1 and 1).
        gamma: the hinge's target std per channel (1/16 in the reference).
        nonempty_weight, empty_weight: weights of the cosine loss on masked non-empty / empty cells.
        variance_over: std over each sample's cells (``sample``, the reference) or over the batch's cells.
        target_input: the teacher sees the full grid (``full``) or only the masked non-empty cells' points
            (``masked``, as the reference's sparse target encoder).
        input_key: the batch key of the BEV grid.
        **kwargs: JEPAModule's optimisation/EMA arguments (lr, warmup, ema, ...).
    """

    def __init__(self, encoder: nn.Module, predictor: nn.Module, masks: BEVCellMask | None = None,
                 alpha: float = 1.0, beta: float = 1.0, gamma: float = 1.0 / 16.0, nonempty_weight: float = 0.75,
                 empty_weight: float = 0.25, variance_over: Literal["sample", "batch"] = "sample",
                 target_input: Literal["full", "masked"] = "full", input_key: str = "bev",
                 **kwargs: Any) -> None:
        for attr in ("embed_dim", "downsample"):
            if not hasattr(encoder, attr):
                raise ValueError(f"ADLJEPA: the encoder ({type(encoder).__name__}) must expose `{attr}`")
        if getattr(predictor, "embed_dim", encoder.embed_dim) != encoder.embed_dim:
            raise ValueError(f"ADLJEPA: predictor embed_dim={predictor.embed_dim} does not match encoder "
                             f"embed_dim={encoder.embed_dim}: set model.init_args.predictor.init_args.dim")
        if variance_over not in ("sample", "batch"):
            raise ValueError(f"ADLJEPA: variance_over must be 'sample' or 'batch', got {variance_over!r}")
        if target_input not in ("full", "masked"):
            raise ValueError(f"ADLJEPA: target_input must be 'full' or 'masked', got {target_input!r}")
        kwargs.setdefault("ema", (0.996, 1.0))
        if kwargs["ema"] is None:
            raise ValueError("ADLJEPA needs an EMA teacher: ema must be a (start, end) momentum pair, not None")
        super().__init__(encoder, predictor, input_key=input_key, **kwargs)
        self.masks = masks if masks is not None else BEVCellMask()
        self.tokens = BEVTokens(encoder.embed_dim)
        self.alpha, self.beta, self.gamma = float(alpha), float(beta), float(gamma)
        self.nonempty_weight, self.empty_weight = float(nonempty_weight), float(empty_weight)
        self.variance_over, self.target_input = variance_over, target_input
        self._parts: dict[str, torch.Tensor] = {}
        self._batch_size = 1

    @property
    def downsample(self) -> int:
        return int(self.encoder.downsample)

    def sample_masks(self, batch: dict[str, Any], generator: torch.Generator) -> BEVMasks:
        return self.masks(occupancy(batch[self.input_key], self.downsample), generator)

    def forward_loss(self, bev: torch.Tensor, m: BEVMasks) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """The objective on ``bev`` with masks ``m``: (loss parts as in :func:`adl_jepa_loss`, tensors
        ``context``, ``prediction``, ``target`` (normalised, ``[B, D, h, w]``), ``features`` (raw teacher
        output ``[B, D, h, w]``) and ``embeddings`` (the encoder's output averaged over the grid [B, D], with
        gradients: what `sigreg_weight` regularises))."""
        s = self.downsample
        z = self.encoder(context_input(bev, m.masked_nonempty, s))
        embeddings = z.mean((2, 3))
        if z.shape[2:] != m.occupied.shape[1:]:
            raise ValueError(f"ADLJEPA: encoder output grid {tuple(z.shape[2:])} does not match the mask grid "
                             f"{tuple(m.occupied.shape[1:])} (input {tuple(bev.shape[2:])} / downsample {s})")
        mask_tok, empty_tok = self.tokens.mask.to(z.dtype), self.tokens.empty.to(z.dtype)
        hidden = (m.masked_nonempty | m.masked_empty)[:, None]
        z = torch.where(hidden, mask_tok, z)
        z = torch.where(m.visible_empty[:, None], empty_tok, z)
        context = F.normalize(z, dim=1)
        prediction = F.normalize(self.predictor(context), dim=1)
        teacher_in = bev if self.target_input == "full" else bev * upsample_mask(m.masked_nonempty, s)[:, None]
        h = self.teacher(teacher_in)
        target = F.normalize(torch.where(m.masked_empty[:, None], empty_tok, h), dim=1)
        parts = adl_jepa_loss(context, prediction, target, m, self.nonempty_weight, self.empty_weight,
                              self.alpha, self.beta, self.gamma, self.variance_over)
        return parts, {"context": context, "prediction": prediction, "target": target, "features": h,
                       "embeddings": embeddings}

    def objective(self, batch: dict[str, Any]) -> StepOutput:
        m: BEVMasks = batch["masks"]
        parts, out = self.forward_loss(batch[self.input_key], m)
        # targets for the collapse signal: normalised teacher embeddings at the masked non-empty cells [N, D]
        targets = out["target"].detach().permute(0, 2, 3, 1)[m.masked_nonempty]
        self._parts = {k: v.detach() for k, v in parts.items() if k != "loss"}
        self._parts["embedding_std"] = targets.float().std(0).mean() if targets.size(0) > 1 else targets.new_zeros(())
        self._batch_size = m.occupied.size(0)
        features = out["features"].mean((2, 3)) if self.target_input == "full" else None
        return StepOutput(parts["loss"], targets, features, embeddings=out["embeddings"])

    def log_train(self, loss: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None,
                  predictions: torch.Tensor | None = None) -> None:
        """JEPAModule's logs plus the loss parts and ``train/embedding_std`` (mean per-channel std of the
        L2-normalised target embeddings at masked non-empty cells; collapse when below 1/sqrt(D))."""
        super().log_train(loss, targets, features, predictions)
        for name, value in self._parts.items():
            self.log(f"train/{name}", value, batch_size=self._batch_size)

    @torch.no_grad()
    def encode(self, batch: dict[str, Any]) -> torch.Tensor:
        """Frozen-evaluation tokens ``[B, h*w, D]``: the evaluation encoder on the full BEV grid."""
        return self.eval_network(batch[self.input_key]).flatten(2).transpose(1, 2)
