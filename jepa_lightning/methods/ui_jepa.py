"""UI-JEPA (Fu et al., 2024): a V-JEPA video encoder trained on unlabeled UI screen recordings.

    for each batch of recordings x [B, C, 16, H, W] (16 frames over the whole recording, no crop, no flip;
    tubelets 2 x p x p: T' = 8 "hyper-frames"):
        masks   <- spatial multi-block (short-range: 8 blocks at .15; long-range: 2 blocks at .7; tubes
                   through all hyper-frames) and temporal (a random 25-50% of the hyper-frames, whole)
        h       <- LayerNorm(teacher(x))                                       full recording, no grad
        for each mask generator i:
            z_i    <- encoder(x at context_i)
            pred_i <- predictor(z_i, context_i, targets_i, mask token i)
            loss  += mean |pred_i - h at targets_i|
        loss    <- loss / number of generators
        step AdamW; teacher <- EMA(teacher, encoder), momentum 0.998 -> 1.0

The algorithm is V-JEPA's (`jepa_lightning.methods.vjepa.VJEPA`); UI-JEPA changes the masks (a temporal
generator next to the spatial pair, so that whole moments of an interaction are predicted from the others: the
screen between two screens, where a finger went, what was typed), the data (no crop/flip augmentation: a crop
can cut away the widget that was tapped; see `datamodules.ui.UIRecordingsDataModule`) and the EMA schedule.
The frozen encoder then feeds the intent decoder (`jepa_lightning.methods.ui_intent.IntentDecoder`).
`masks=spatial_masks()` is the spatial-only ablation (V-JEPA's masks on UI data).
"""

from __future__ import annotations

from typing import Any

from jepa_lightning.eval.checkpoint import load_encoder_weights
from jepa_lightning.masks.multiblock3d import MultiBlockMask3D
from jepa_lightning.masks.temporal import TemporalMask
from jepa_lightning.methods.vjepa import VJEPA, vjepa_masks
from jepa_lightning.nn.predictor import TransformerPredictor
from jepa_lightning.nn.vit import VisionTransformer


def spatial_masks() -> list[MultiBlockMask3D]:
    """The spatial pair (V-JEPA's short-range and long-range multi-block masks, tubes through time)."""
    return vjepa_masks()


def ui_jepa_masks(temporal: tuple[float, float] = (0.25, 0.5)) -> list[MultiBlockMask3D | TemporalMask]:
    """UI-JEPA's masks: the spatial pair plus whole hyper-frames (`temporal`: fraction of them masked)."""
    return [*spatial_masks(), TemporalMask(masked=temporal)]


class UIJEPA(VJEPA):
    """UI-JEPA pretraining: V-JEPA with spatial + temporal masks (default `ui_jepa_masks()`, one predictor mask
    token per generator) and EMA 0.998 -> 1.0. Other arguments as `VJEPA` / `JEPAModule`.

    `init_encoder`: "JEPA-tuning" as in the paper, which starts from a V-JEPA encoder pretrained on natural
    video: the encoder (and so its EMA teacher) starts from these weights (a training checkpoint's
    `f"{init_encoder_key}."` weights or a safetensors export, see `jepa_lightning.eval.load_encoder_weights`);
    None trains from scratch. Only the start: a resumed run restores its own weights from its checkpoint."""

    def __init__(self, encoder: VisionTransformer, predictor: TransformerPredictor,
                 masks: list[MultiBlockMask3D | TemporalMask] | None = None, loss_exp: float = 1.0,
                 input_key: str = "video", ema: tuple[float, float] | None = (0.998, 1.0),
                 init_encoder: str | None = None, init_encoder_key: str = "teacher", **kwargs: Any) -> None:
        if init_encoder is not None:
            load_encoder_weights(encoder, init_encoder, init_encoder_key)
        super().__init__(encoder, predictor, masks=masks if masks is not None else ui_jepa_masks(),
                         loss_exp=loss_exp, input_key=input_key, ema=ema, **kwargs)
