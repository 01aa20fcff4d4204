"""SALT (Li et al., 2025, "Rethinking JEPA: Compute-Efficient Video SSL with Frozen Teachers"): two stages.

Stage 1, `SALTTeacher` -- pixel reconstruction under V-JEPA's masks (a VideoMAE-style decoder):

    for each batch of clips x:
        masks    <- V-JEPA's mask generators (as V-JEPA)                         [on_after_batch_transfer]
        pixels   <- every tubelet's pixels, normalized per tubelet and channel (zero mean, unit variance)
        for each generator i:
            z_i    <- encoder(x at context_i)
            pred_i <- decoder(z_i, context_i, targets_i, mask token i)     a narrow transformer -> pixels
            loss  += mean (pred_i - pixels at targets_i)^2                  on masked tubelets only
        loss     <- loss / number of generators;  step AdamW                           (no teacher, no EMA)

Stage 2, `SALT` (the student) -- V-JEPA with the EMA teacher replaced by the FROZEN stage-1 encoder:

    teacher  <- the stage-1 encoder, loaded once from its checkpoint; frozen, never in the optimizer
    for each batch of clips x:
        h        <- LayerNorm(teacher(x))                                   full clip, no grad
        for each generator i:  loss += mean |predictor(encoder(x at context_i), ...) - h at targets_i|
        loss     <- loss / number of generators;  step AdamW          (no EMA, no stop-gradient tricks)

The teacher may be smaller than the student: the predictor maps to the teacher's width (`out_dim`). The
student is the encoder SALT evaluates.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.rank_zero import rank_zero_warn

from jepa_lightning.masks.multiblock3d import MultiBlockMask3D
from jepa_lightning.methods.vjepa import VJEPA
from jepa_lightning.nn.embed import patchify
from jepa_lightning.nn.predictor import TransformerPredictor
from jepa_lightning.nn.vit import VisionTransformer
from jepa_lightning.targets import FrozenTeacher


def _no_teacher_arguments(method: str, kwargs: dict[str, Any]) -> None:
    for name in ("ema", "eval_encoder"):
        if name in kwargs:
            raise ValueError(f"{method} has no EMA teacher and evaluates its own encoder: remove "
                             f"model.init_args.{name} (got {kwargs[name]!r})")


class SALTTeacher(VJEPA):
    """SALT stage 1: masked pixel reconstruction under V-JEPA masking.

    Args:
        encoder: the teacher-to-be (a video `VisionTransformer`).
        predictor: the decoder: a `TransformerPredictor` whose `out_dim` is the pixels of one tubelet,
            `tubelet_size * patch_size**2 * in_chans`.
        norm_pix: reconstruct each tubelet's pixels normalized to zero mean and unit variance per channel
            (VideoMAE's target); False reconstructs the input values.
    """

    def __init__(self, encoder: VisionTransformer, predictor: TransformerPredictor,
                 masks: list[MultiBlockMask3D] | None = None, norm_pix: bool = True, input_key: str = "video",
                 **kwargs: Any) -> None:
        _no_teacher_arguments("SALTTeacher", kwargs)
        super().__init__(encoder, predictor, masks, input_key=input_key, ema=None,
                         eval_encoder="encoder", **kwargs)
        embed = encoder.patch_embed
        self.patch_size = embed.patch_size
        self.tubelet_size = getattr(embed, "tubelet_size", 1)
        pixels = self.tubelet_size * self.patch_size**2 * embed.in_chans
        if predictor.out_dim != pixels:
            raise ValueError(f"the decoder must output the {pixels} pixel values of a {self.tubelet_size}x"
                             f"{self.patch_size}x{self.patch_size}x{embed.in_chans} tubelet: set "
                             f"model.predictor.init_args.out_dim={pixels} (got {predictor.out_dim})")
        self.norm_pix = norm_pix

    def target_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        pixels = patchify(x.float(), self.patch_size, self.tubelet_size)            # [B, N, t*p*p*C]
        if self.norm_pix:
            per_channel = pixels.unflatten(-1, (-1, x.size(1)))                     # [B, N, t*p*p, C]
            mean, var = per_channel.mean(2, keepdim=True), per_channel.var(2, keepdim=True)
            pixels = ((per_channel - mean) / (var + 1e-6).sqrt()).flatten(2)
        return pixels, None

    def distance(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(pred, target)


class SALT(VJEPA):
    """SALT stage 2: the student predicts a frozen teacher's latents of the masked regions.

    Args:
        encoder: the student (a video `VisionTransformer`), the network SALT evaluates.
        predictor: `TransformerPredictor` from the student's width (`embed_dim`) to the teacher's (`out_dim`).
        teacher: the teacher's architecture; it may be smaller than the student but must tokenize clips the
            same way (same grid).
        teacher_checkpoint: the stage-1 checkpoint (Lightning `.ckpt`, sharded checkpoint directory, or a
            safetensors export); `None` keeps the teacher's random initialisation (the random-teacher
            ablation, with a warning).
        teacher_key: where the teacher's weights are in that checkpoint (`encoder` for a `SALTTeacher` run).
        loss_exp: as V-JEPA (1 = L1, the paper's).
    """

    module_arguments = (*VJEPA.module_arguments, "teacher")

    def __init__(self, encoder: VisionTransformer, predictor: TransformerPredictor, teacher: VisionTransformer,
                 teacher_checkpoint: str | None = None, teacher_key: str = "encoder",
                 masks: list[MultiBlockMask3D] | None = None, loss_exp: float = 1.0, input_key: str = "video",
                 **kwargs: Any) -> None:
        _no_teacher_arguments("SALT", kwargs)
        super().__init__(encoder, predictor, masks, loss_exp=loss_exp, input_key=input_key, ema=None,
                         eval_encoder="encoder", **kwargs)
        if tuple(teacher.grid_size) != tuple(encoder.grid_size):
            raise ValueError(f"teacher token grid {list(teacher.grid_size)} differs from the student's "
                             f"{list(encoder.grid_size)}: both must tokenize a clip the same way")
        if predictor.out_dim != teacher.embed_dim:
            raise ValueError(f"the predictor must output the teacher's width: set "
                             f"model.predictor.init_args.out_dim={teacher.embed_dim} (got {predictor.out_dim})")
        if teacher_checkpoint is None:
            rank_zero_warn("SALT: no teacher_checkpoint given, the frozen teacher keeps its random "
                           "initialisation (the random-teacher ablation)")
        self.teacher = FrozenTeacher(teacher, teacher_checkpoint, teacher_key)

    def target_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        h = self.teacher(x)
        return F.layer_norm(h, h.shape[-1:]), None
