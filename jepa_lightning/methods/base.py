"""What every JEPA method shares: teacher, schedules, optimizer, per-step seeded masks, logging, `encode`.

A method subclasses `JEPAModule` and implements `sample_masks` (called on the device for the whole batch) and
`objective` (the paper's algorithm box: batch -> loss, targets, pooled features). The shared `training_step`
skips unreadable batches, guards against non-finite losses and logs.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch import nn

from jepa_lightning.distributed import bf16_policy, shard_module
from jepa_lightning.eval.rankme import RankMe
from jepa_lightning.masks import step_generator
from jepa_lightning.optim import adamw_warmup_cosine, linear
from jepa_lightning.targets import EMATeacher, TargetNetwork


class JEPAModule(LightningModule):
    """Shared JEPA machinery.

    Args:
        encoder: the context encoder (student); `encoder(x, keep=idx)` encodes only the kept tokens.
        predictor: predicts target latents from context latents and target positions.
        input_key: the batch key of the model input (`image`, `video`, ...).
        lr, start_lr, final_lr, warmup: learning rate warms up linearly from `start_lr` to `lr` over the
            first `warmup` fraction of optimizer steps, then follows a cosine to `final_lr`.
        weight_decay, final_weight_decay: cosine schedule of AdamW's decay (matrices only).
        betas: AdamW betas.
        ema: EMA momentum of the teacher, linear from the first to the second value over training;
            `None` for a method without an EMA teacher.
        eval_encoder: which network `encode` uses for frozen evaluation (I-JEPA evaluates the teacher).
        mask_seed: masks come from a generator seeded by (mask_seed, rank, batch index), so they differ
            across ranks and steps and are identical when a run is resumed.
        nonfinite: on a NaN/inf loss, stop with an error naming the step (`raise`) or skip that optimizer step
            on every rank (`skip`, with a warning).
    """

    module_arguments: tuple[str, ...] = ("encoder", "predictor", "masks")  # kept out of hparams

    def __init__(self, encoder: nn.Module, predictor: nn.Module, input_key: str = "image", lr: float = 1e-3,
                 start_lr: float = 2e-4, final_lr: float = 1e-6, warmup: float = 0.1,
                 weight_decay: float = 0.04, final_weight_decay: float = 0.4,
                 betas: tuple[float, float] = (0.9, 0.999), ema: tuple[float, float] | None = (0.996, 1.0),
                 eval_encoder: str = "teacher", mask_seed: int = 0,
                 nonfinite: Literal["raise", "skip"] = "raise") -> None:
        super().__init__()
        if not 0.0 <= warmup < 1.0:
            raise ValueError(f"warmup is a fraction of training in [0, 1), got {warmup}")
        if eval_encoder not in ("teacher", "encoder"):
            raise ValueError(f"eval_encoder must be 'teacher' or 'encoder', got {eval_encoder!r}")
        # hparams are for the record only (under the CLI: the model's full config, so `validate --ckpt_path`
        # and `load_from_checkpoint` rebuild it); module-valued arguments are left out so that checkpoints
        # load with weights_only=True.
        self.save_hyperparameters(ignore=self.module_arguments)
        if nonfinite not in ("raise", "skip"):
            raise ValueError(f"nonfinite must be 'raise' or 'skip', got {nonfinite!r}")
        self.input_key, self.eval_encoder, self.mask_seed, self.nonfinite = input_key, eval_encoder, mask_seed, nonfinite
        self.lr, self.start_lr, self.final_lr, self.warmup = lr, start_lr, final_lr, warmup
        self.weight_decay, self.final_weight_decay, self.betas = weight_decay, final_weight_decay, tuple(betas)
        self.ema = tuple(ema) if ema is not None else None
        self.encoder, self.predictor = encoder, predictor
        self.teacher = EMATeacher(encoder) if ema is not None else None
        self.rankme = RankMe()
        self.total_steps = 1  # set by configure_optimizers from the Trainer

    # ----------------------------------------------------------------- masks
    def sample_masks(self, batch: dict[str, Any], generator: torch.Generator) -> Any:
        """Masks for the whole batch, on the batch's device (override in a masked method)."""
        return None

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if batch is not None and self.trainer is not None and self.trainer.training:
            # The index this batch gets in the fit loop (counted across epochs; restored on resume).
            batch_index = self.trainer.fit_loop.epoch_loop.batch_progress.total.ready
            device = batch[self.input_key].device
            g = step_generator(self.mask_seed, self.global_rank, batch_index, device)
            batch["masks"] = self.sample_masks(batch, g)
        return batch

    # -------------------------------------------------------------- training
    def objective(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The method's loss on a batch: (loss, targets, pooled evaluation features [B, D] when the objective
        computes them for free (e.g. from the EMA teacher's forward), else None)."""
        raise NotImplementedError

    def training_step(self, batch: dict[str, Any] | None, batch_idx: int):
        if batch is None:  # every sample of this batch was unreadable (reported by the DataModule)
            return None
        loss, targets, features = self.objective(batch)
        finite = self.trainer.strategy.reduce_boolean_decision(bool(torch.isfinite(loss)), all=True)
        if not finite:
            where = (f"non-finite loss ({loss.item()}) at global step {self.global_step} "
                     f"(epoch {self.current_epoch}, batch {batch_idx})")
            if self.nonfinite == "raise":
                raise FloatingPointError(f"{where}; lower the learning rate, check the data, or set "
                                         "model.init_args.nonfinite=skip to skip such steps")
            rank_zero_warn(f"{where}: optimizer step skipped on every rank")
            return None
        self.log_train(loss, targets, features)
        return {"loss": loss} if features is None else {"loss": loss, "features": features}

    # ------------------------------------------------------------ evaluation
    @property
    def eval_network(self) -> nn.Module:
        if self.eval_encoder == "teacher" and self.teacher is not None:
            return self.teacher.module
        return self.encoder

    @torch.no_grad()
    def encode(self, batch: dict[str, Any]) -> torch.Tensor:
        """Frozen-evaluation tokens [B, N, D] of the evaluation encoder on the full input."""
        return self.eval_network(batch[self.input_key])

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Evaluation is done by callbacks (online probe, kNN, RankMe) through `encode`."""

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Evaluation is done by callbacks through `encode`."""

    # --------------------------------------------------------------- logging
    def log_train(self, loss: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None) -> None:
        """`train/loss`, the collapse signals (`train/target_std`: std of the targets over the batch,
        averaged over channels; `train/rankme` per epoch on the pooled evaluation features, when the objective
        computed them) and the schedules."""
        bs = targets.size(0)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/target_std", targets.float().flatten(0, -2).std(0).mean(), batch_size=bs)
        if features is not None:
            self.rankme.update(features.float())
            self.log("train/rankme", self.rankme, on_step=False, on_epoch=True, batch_size=bs)
        opt = self.optimizers(use_pl_optimizer=False)
        self.log("train/lr", opt.param_groups[0]["lr"], batch_size=bs)
        self.log("train/wd", opt.param_groups[0]["weight_decay"], batch_size=bs)
        if isinstance(self.teacher, EMATeacher):
            self.log("train/ema", self.ema_momentum(self.global_step), batch_size=bs)

    # ---------------------------------------------------- optimizer, teacher
    def trainable_modules(self) -> list[nn.Module]:
        """Every child but the target networks (EMA or frozen teachers) and the RankMe metric."""
        return [m for name, m in self.named_children() if not isinstance(m, TargetNetwork) and name != "rankme"]

    def configure_model(self) -> None:
        """Under a strategy with a device mesh (Lightning's `ModelParallelStrategy`): shard with FSDP2 over
        the mesh's data-parallel dimension every trainable network (block by block, then its root) and every
        target network exactly like the network it follows, so the EMA update runs on local shards. Under bf16-mixed
        the FSDP2 policy gathers and computes in bf16 and reduces gradients in fp32 (the sharded parameters,
        the teacher's included, stay fp32). Without a mesh (single device, DDP) nothing changes."""
        mesh = self.device_mesh
        if mesh is None:
            return
        if "tensor_parallel" in (mesh.mesh_dim_names or ()) and mesh["tensor_parallel"].size() > 1:
            raise ValueError(f"{type(self).__name__} supports data parallelism (FSDP2) only: set "
                             "trainer.strategy.init_args.tensor_parallel_size=1")
        dp = mesh["data_parallel"] if mesh.ndim > 1 else mesh
        mp = bf16_policy() if self.trainer.precision == "bf16-mixed" else None
        for module in self.trainable_modules():
            if any(True for _ in module.parameters()):
                shard_module(module, dp, mp)
        for target in self.children():  # forward only: sharded again right after each forward
            if isinstance(target, TargetNetwork):
                shard_module(target.module, dp, mp, reshard_after_forward=True)

    def configure_optimizers(self):
        config = adamw_warmup_cosine(self.trainer, self.trainable_modules(), owner=type(self).__name__, lr=self.lr,
                                     start_lr=self.start_lr, final_lr=self.final_lr, warmup=self.warmup,
                                     weight_decay=self.weight_decay, final_weight_decay=self.final_weight_decay,
                                     betas=self.betas, fused=self.device.type in ("cpu", "cuda"))
        self.total_steps = config["lr_scheduler"]["scheduler"].total_steps  # also the EMA schedule's length
        return config

    def ema_momentum(self, step: int) -> float:
        m0, m1 = self.ema
        return linear(step, self.total_steps, m0, m1)

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        if isinstance(self.teacher, EMATeacher):
            self.teacher.update(self.encoder, self.ema_momentum(self.global_step))
