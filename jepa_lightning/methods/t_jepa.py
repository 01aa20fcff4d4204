"""T-JEPA (Thimonier et al., ICLR 2025): augmentation-free self-supervised learning for tabular data.
Predict the latents of some features of a row from the latents of other features of the same row.

    for each batch of rows (num [B, Fn], cat [B, Fc]); F = Fn + Fc features:
        masks   <- per batch: context size ~ U(context_share * F), target size ~ U(target_share * F);
                   per sample: a random context subset and T target subsets of the other features
                   (T = 4 in the paper)                                             [on_after_batch_transfer]
        h       <- teacher(row): R [REG] tokens + all F feature tokens, no grad     (EMA target encoder)
        targets <- h at each target subset's feature tokens                         [B, T, Kt, D]
        z       <- encoder(context features): R [REG] tokens + Kc context tokens   (context encoder)
        pred    <- predictor(z, context positions, target positions): mask tokens with the target
                   features' position embeddings, all T subsets in one batched pass
        loss    <- MSE(pred, targets)
        step AdamW; teacher <- EMA(teacher, encoder), momentum 0.996 -> 1          [JEPAModule]

Frozen evaluation (`encode`): the EMA target encoder on the full row, all R + F output tokens [B, R + F, D];
downstream heads flatten them to [B, (R + F) D] (the reference's `linear_flatten` probe input; its MLP first maps
each token to a scalar, `linear_per_feature`, which a first linear layer on the flattened tokens contains).
The [REG] tokens are the paper's regularization tokens: extra learned tokens both encoders always see, which
the paper reports to prevent the collapse of the representation (compare `num_reg_tokens=0`).
Here they are never masked, as the paper describes. The reference code differs (jose-melo/t-jepa: `src/mask.py`
draws the mask indices over the F features, `src/encoder.py` `in_embbed_sample` and `src/train.py` gather them
from the R + F tokens with the [REG]/[CLS] tokens in front), so there token 0, a [REG] token, can be a context or
target token, and the last R features are never masked. We follow the paper, not that offset
(`reference_indexing=True` reproduces it, for parity runs).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from jepa_lightning.masks.tabular import FeatureMask
from jepa_lightning.masks.utils import Masks
from jepa_lightning.methods.base import JEPAModule, StepOutput
from jepa_lightning.nn.tabular import TabularEncoder, TabularPredictor
from jepa_lightning.nn.tokens import gather_tokens


class TJEPA(JEPAModule):
    """T-JEPA on dict batches `{"num": float [B, Fn], "cat": long [B, Fc], "label": ...}`.

    Args:
        encoder: the context encoder (its EMA copy is the target encoder).
        predictor: must match the encoder's number of features, [REG] tokens and width.
        masks: the feature mask generator (default: the paper's shares, 4 targets, disjoint from the context).
        input_key: the batch key that carries the numeric columns (its device is the masks' device).
        reference_indexing: index the masks over the R + F tokens with [REG] in front, as the official code does
            (see above: a [REG] token can be context or target, the last R features never are), for parity runs.
        **kwargs: JEPAModule's optimisation/EMA arguments (lr, warmup, ema, ...).
    """

    def __init__(self, encoder: TabularEncoder, predictor: TabularPredictor, masks: FeatureMask | None = None,
                 input_key: str = "num", reference_indexing: bool = False, **kwargs: Any) -> None:
        super().__init__(encoder, predictor, input_key=input_key, **kwargs)
        mine = (encoder.num_features, encoder.num_reg_tokens, encoder.embed_dim)
        theirs = (predictor.num_features, predictor.num_reg_tokens, predictor.embed_dim)
        if mine != theirs:
            raise ValueError(
                f"predictor (num_features={theirs[0]}, num_reg_tokens={theirs[1]}, embed_dim={theirs[2]}) does not "
                f"match encoder (num_features={mine[0]} = num_numeric + len(cardinalities), num_reg_tokens="
                f"{mine[1]}, embed_dim={mine[2]}): set model.init_args.predictor.init_args.num_features / "
                "num_reg_tokens / embed_dim to the encoder's")
        self.masks = masks if masks is not None else FeatureMask()
        self.reference_indexing = bool(reference_indexing)
        self._checked = False

    # ------------------------------------------------------------------ inputs
    def _inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """(num, cat) of a batch, checked once against the encoder's feature spec."""
        if "num" not in batch:
            raise KeyError(f"T-JEPA expects tabular batches with keys 'num' and 'cat'; got keys {sorted(batch)}")
        num = batch["num"]
        cat = batch.get("cat")
        if cat is None:
            cat = torch.zeros(num.size(0), 0, dtype=torch.long, device=num.device)
        if not self._checked:
            self._check_features(num, cat)
            self._checked = True
        return num, cat

    def _check_features(self, num: torch.Tensor, cat: torch.Tensor) -> None:
        enc = self.encoder
        fix = ("set model.init_args.encoder.init_args.num_numeric / cardinalities (and the predictor's "
               "num_features = num_numeric + len(cardinalities)) to the DataModule's values (printed by its "
               "describe(): num_numeric, cardinalities)")
        if num.dim() != 2 or num.size(1) != enc.num_numeric:
            raise ValueError(f"the batch's 'num' has shape {list(num.shape)}, but the encoder was built for "
                             f"num_numeric={enc.num_numeric} numeric columns: {fix}")
        if cat.dim() != 2 or cat.size(1) != len(enc.cardinalities):
            raise ValueError(f"the batch's 'cat' has shape {list(cat.shape)}, but the encoder was built for "
                             f"{len(enc.cardinalities)} categorical columns (cardinalities={enc.cardinalities}): "
                             f"{fix}")
        if cat.numel():
            top = cat.max(0).values
            cards = torch.tensor(enc.cardinalities, device=cat.device)
            bad = (top >= cards) | (cat.min(0).values < 0)
            if bool(bad.any()):
                j = int(bad.nonzero()[0])
                raise ValueError(f"categorical column {j} has code {int(top[j])}, outside [0, {enc.cardinalities[j]}) "
                                 f"for cardinalities={enc.cardinalities}: {fix}")

    # ------------------------------------------------------------------- masks
    def sample_masks(self, batch: dict[str, Any], generator: torch.Generator) -> Masks:
        num, _ = self._inputs(batch)
        return self.masks(num.size(0), self.encoder.num_features, generator=generator, device=num.device)

    # --------------------------------------------------------------- objective
    def forward_loss(self, num: torch.Tensor, cat: torch.Tensor,
                     m: Masks) -> StepOutput:
        """The T-JEPA objective: (MSE loss, targets [B, T, Kt, D], the teacher's tokens averaged [B, D] (for the
        cheap per-epoch `train/rankme`; the frozen heads use all tokens, see `encode`), predictions, the context
        encoder's tokens averaged [B, D] (what `sigreg_weight` regularises))."""
        r, ref = self.encoder.num_reg_tokens, self.reference_indexing
        with torch.no_grad():
            h = self.target(num, cat)                                   # [B, R + F, D], the full row
            targets = gather_tokens(h if ref else h[:, r:], m.targets)   # [B, T, Kt, D]
        z = self.encoder(num, cat, keep=m.context, keep_over_all=ref)   # [B, R + Kc, D] ([B, Kc, D] if ref)
        pred = self.predictor(z, m.context, m.targets, slots_over_all=ref)  # [B, T, Kt, D]
        return StepOutput(F.mse_loss(pred.float(), targets.float()), targets, h.mean(1), pred, z.mean(1))

    def objective(self, batch: dict[str, Any]) -> StepOutput:
        num, cat = self._inputs(batch)
        return self.forward_loss(num, cat, batch["masks"])

    # -------------------------------------------------------------- evaluation
    @torch.no_grad()
    def encode(self, batch: dict[str, Any]) -> torch.Tensor:
        """Frozen-evaluation tokens [B, R + F, D]: the evaluation encoder (the EMA target encoder by default)
        on the full row."""
        num, cat = self._inputs(batch)
        return self.eval_network(num, cat)
