"""Offline frozen probes of a pretrained encoder next to its random initialisation: did pretraining help?

At the end of `validate` (and `test`), every network is read on the un-augmented training split
(`datamodule.train_eval_dataloader()`) and the evaluation split, tokens mean-pooled:

- linear: multinomial logistic regression solved to convergence on standardised (so centred) features
  (`frozen_heads.fit_linear`), training split -> evaluation split accuracy;
- kNN: weighted cosine kNN (k=20, DINO votes) on features centred on the training mean;
- RankMe: effective rank of the centred evaluation features.

Networks: the method's evaluation network ("teacher": the EMA or frozen target network), its context encoder
("encoder", the student), and the same architecture at its random initialisation: the weights the module held
when this callback was set up, before any checkpoint was restored, i.e. the run's own initialisation when the
module is built from the run's config and seed (the CLI does that). Logged as `frozen/<network>/<probe>`,
printed as one small table and written to `<log_dir>/frozen_probes.json`.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from jepa_lightning.eval.frozen_heads import embed_loader, fit_linear
from jepa_lightning.eval.knn import knn_accuracy
from jepa_lightning.eval.rankme import effective_rank

NETWORK_NAMES = {"random_init": "random init", "teacher": "teacher (evaluated)", "encoder": "context encoder"}


class FrozenProbes(L.Callback):
    """Linear probe, kNN and RankMe on centred frozen features of each network, and of the random init.

    Args:
        num_classes: classes of `batch[label_key]`.
        networks: which of the method's networks to probe ("teacher", "encoder"); a method without a teacher
            is probed through its encoder once.
        random_init: also probe the module's initial evaluation network (the floor pretraining must clear).
        knn_k, l2: kNN neighbours; L2 strength of the logistic regression.
        label_key: the batch key of the labels.
    """

    def __init__(self, num_classes: int, networks: tuple[str, ...] = ("teacher", "encoder"),
                 random_init: bool = True, knn_k: int = 20, l2: float = 1e-2, label_key: str = "label") -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"FrozenProbes needs num_classes >= 2, got {num_classes}")
        unknown = set(networks) - {"teacher", "encoder"}
        if unknown or not networks:
            raise ValueError(f"FrozenProbes networks must be among ('teacher', 'encoder'), got {list(networks)}")
        self.num_classes, self.networks, self.random_init = num_classes, tuple(networks), random_init
        self.knn_k, self.l2, self.label_key = knn_k, l2, label_key
        self.initial: torch.nn.Module | None = None
        self.results: dict[str, dict[str, float]] = {}

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # runs before Lightning restores a checkpoint: these are the weights the module was built with
        if self.random_init and self.initial is None:
            self.initial = copy.deepcopy(pl_module.network()).eval().requires_grad_(False)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.sanity_checking and trainer.state.fn == "validate":
            self.evaluate(trainer, pl_module)

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.evaluate(trainer, pl_module)

    # ------------------------------------------------------------------------------------------------------
    def _encoders(self, pl_module: L.LightningModule) -> dict[str, Any]:
        def pooled(which: str | None = None, module: torch.nn.Module | None = None):
            def encode(batch: dict[str, Any]) -> torch.Tensor:
                if module is not None:
                    return module(batch[pl_module.input_key]).float().mean(1)
                return pl_module.encode(batch, network=which).float().mean(1)
            return encode

        encoders = {}
        if self.initial is not None:
            encoders["random_init"] = pooled(module=self.initial.to(pl_module.device))
        has_teacher = getattr(pl_module, "teacher", None) is not None
        for which in self.networks:
            if which == "teacher" and not has_teacher:
                continue
            encoders[which] = pooled(which)
        return encoders

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, dict[str, float]]:
        dm = trainer.datamodule
        if dm is None or not hasattr(dm, "train_eval_dataloader"):
            raise AttributeError("FrozenProbes needs a DataModule with `train_eval_dataloader()` (the training "
                                 "split with the evaluation transform), e.g. datamodules.DigitsDataModule")
        eval_loader = dm.test_dataloader() if trainer.state.fn == "test" else dm.val_dataloader()
        self.results = {}
        with torch.inference_mode(False), torch.enable_grad():
            for name, encode in self._encoders(pl_module).items():
                with torch.no_grad():
                    xtr, ytr = embed_loader(pl_module, dm.train_eval_dataloader(), dm, encode, self.label_key)
                    xva, yva = embed_loader(pl_module, eval_loader, dm, encode, self.label_key)
                xtr, ytr, xva, yva = (t.clone() for t in (xtr, ytr, xva, yva))   # out of inference mode
                linear = fit_linear(xtr, ytr, xva, yva, "classification", self.num_classes, l2=self.l2)
                knn = knn_accuracy(xtr, ytr, xva, yva, k=self.knn_k, num_classes=self.num_classes)
                self.results[name] = {"linear_acc": float(linear.val), "knn_acc": float(knn),
                                      "rankme": float(effective_rank(xva, center=True))}
        for name, scores in self.results.items():
            for probe, value in scores.items():
                pl_module.log(f"frozen/{name}/{probe}", value, rank_zero_only=True)
        if trainer.is_global_zero:
            rank_zero_info(self.table(len(ytr), len(yva)))
            log_dir = trainer.log_dir or trainer.default_root_dir
            if log_dir:
                os.makedirs(log_dir, exist_ok=True)
                with open(os.path.join(log_dir, "frozen_probes.json"), "w") as f:
                    json.dump(self.results, f, indent=1)
        return self.results

    def table(self, n_train: int, n_eval: int) -> str:
        """The results as a short text table (accuracies in %)."""
        lines = [f"Frozen probes on centred features ({n_train} training -> {n_eval} evaluation samples)",
                 f"{'network':<22}{'linear %':>10}{'kNN %':>9}{'RankMe':>9}"]
        for name, s in self.results.items():
            lines.append(f"{NETWORK_NAMES.get(name, name):<22}{100 * s['linear_acc']:>10.1f}"
                         f"{100 * s['knn_acc']:>9.1f}{s['rankme']:>9.2f}")
        return "\n".join(lines)
