"""What every JEPA method shares: teacher, schedules, optimizer, per-step seeded masks, logging, `encode`.

A method subclasses `JEPAModule` and implements `sample_masks` (called on the device for the whole batch) and
`objective` (the paper's algorithm box: batch -> loss, targets, pooled features). The shared `training_step`
skips unreadable batches, guards against non-finite losses and logs.
"""

from __future__ import annotations

import math
from typing import Any, Literal, NamedTuple

import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch import nn

from jepa_lightning.distributed import bf16_policy, shard_module
from jepa_lightning.eval.rankme import RankMe, position_and_sample_shares
from jepa_lightning.losses import SIGReg
from jepa_lightning.masks import step_generator
from jepa_lightning.nn.transformer import compile_blocks
from jepa_lightning.optim import adamw_warmup_cosine
from jepa_lightning.targets import EMATeacher, TargetNetwork, check_ema_schedule, ema_init_share, ema_momentum

SIGREG_STREAM = 7919  # SIGReg's directions: a generator stream apart from the masks' (seeded mask_seed + this)


class StepOutput(NamedTuple):
    """What a method's `objective` returns (a plain (loss, targets, features) tuple is accepted too).

    loss: the scalar to minimise; targets: the regression targets (their per-dimension std over the batch is
    the collapse monitor `train/target_std`); features: pooled evaluation features [B, D] when the objective
    computed them for free (RankMe, online probe), else None; predictions: the predictor's outputs
    (`train/pred_std`), when the method has them; embeddings: what the optional SIGReg term regularises, with
    gradients: the context encoder's output pooled over tokens [B, D] (or [V, B, D]: V views, e.g. one per mask
    generator, each regularised as its own sample)."""

    loss: torch.Tensor
    targets: torch.Tensor
    features: torch.Tensor | None = None
    predictions: torch.Tensor | None = None
    embeddings: torch.Tensor | None = None


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
        ema: EMA momentum of the teacher, from the first to the second value over training;
            `None`: no EMA teacher (a method that predicts its own encoder's outputs then takes them under
            stop-gradient, `target`: momentum 0, which collapses unless a guard such as `sigreg_weight` holds it).
        ema_schedule: the momentum's path between them: `linear` (I-JEPA, V-JEPA) or `cosine` (a half cosine,
            BYOL's; seq-JEPA's reference code).
        ema_average_start: the teacher starts as the running average of the students (momentum at most
            1 - 1/k at update k; `jepa_lightning.targets.ema_momentum`), so no share of its random init
            survives in a run of any length; False: the paper's schedule as such (a short run's teacher is then
            mostly its init: `train/ema_init_share` logs that share either way).
        eval_encoder: which network `encode` uses for frozen evaluation (I-JEPA evaluates the teacher).
        mask_seed: masks come from a generator seeded by (mask_seed, rank, batch index), so they differ
            across ranks and steps and are identical when a run is resumed.
        nonfinite: on a NaN/inf loss, stop with an error naming the step (`raise`) or skip that optimizer step
            on every rank (`skip`, with a warning).
        sigreg_weight: weight of an added SIGReg term (LeJEPA's isotropic-Gaussian regulariser, `losses.SIGReg`)
            on the embeddings the method declares (`StepOutput.embeddings`), a collapse guard that works with or
            without an EMA teacher; 0 (default): off. Its directions are drawn from a generator seeded by
            (mask_seed, step), alike on every rank; under DDP/FSDP2 the statistic is the global batch's.
        sigreg_slices: SIGReg's number of random directions.
        sigreg_projector: a head (e.g. `nn.Projector`, LeJEPA's MLP; its `in_dim` the embeddings' width) between the
            declared embeddings and SIGReg, trained with the method: SIGReg then shapes the projector's output, as
            in LeJEPA, instead of the raw embeddings (whose mean and scale the method may fix otherwise, e.g. a
            final LayerNorm). None (default): SIGReg on the embeddings as they are.
        compile: `torch.compile` every network (trainable and target) block by block (`nn.compile_blocks`,
            after FSDP2 sharding); true for torch's defaults, or a dict of `torch.compile` options (e.g.
            `{mode: max-autotune}`, `{backend: aot_eager}`).
    """

    module_arguments: tuple[str, ...] = ("encoder", "predictor", "masks")  # kept out of hparams

    def __init__(self, encoder: nn.Module, predictor: nn.Module, input_key: str = "image", lr: float = 1e-3,
                 start_lr: float = 2e-4, final_lr: float = 1e-6, warmup: float = 0.1,
                 weight_decay: float = 0.04, final_weight_decay: float = 0.4,
                 betas: tuple[float, float] = (0.9, 0.999), ema: tuple[float, float] | None = (0.996, 1.0),
                 ema_schedule: Literal["linear", "cosine"] = "linear", ema_average_start: bool = True,
                 eval_encoder: str = "teacher", mask_seed: int = 0,
                 nonfinite: Literal["raise", "skip"] = "raise", sigreg_weight: float = 0.0, sigreg_slices: int = 1024,
                 sigreg_projector: nn.Module | None = None, compile: bool | dict[str, Any] = False) -> None:
        super().__init__()
        if not 0.0 <= warmup < 1.0:
            raise ValueError(f"warmup is a fraction of training in [0, 1), got {warmup}")
        if eval_encoder not in ("teacher", "encoder"):
            raise ValueError(f"eval_encoder must be 'teacher' or 'encoder', got {eval_encoder!r}")
        # hparams are for the record only (under the CLI: the model's full config, so `validate --ckpt_path`
        # and `load_from_checkpoint` rebuild it); module-valued arguments are left out so that checkpoints
        # load with weights_only=True.
        self.save_hyperparameters(ignore=sorted({*self.module_arguments, "encoder", "predictor", "sigreg_projector"}))
        if nonfinite not in ("raise", "skip"):
            raise ValueError(f"nonfinite must be 'raise' or 'skip', got {nonfinite!r}")
        self.input_key, self.eval_encoder, self.mask_seed, self.nonfinite = input_key, eval_encoder, mask_seed, nonfinite
        if not isinstance(compile, (bool, dict)):
            raise ValueError(f"compile must be true/false or a dict of torch.compile options, got {compile!r}")
        self.compile_options = ({} if compile is True else dict(compile)) if compile else None
        if not (isinstance(sigreg_weight, (int, float)) and not isinstance(sigreg_weight, bool) and sigreg_weight >= 0
                and math.isfinite(sigreg_weight)):
            raise ValueError(f"sigreg_weight must be a finite number >= 0 (0: no SIGReg term), got {sigreg_weight!r}")
        self.sigreg_weight = float(sigreg_weight)
        self.sigreg = SIGReg(num_slices=sigreg_slices) if sigreg_weight > 0 else None
        if sigreg_projector is not None and self.sigreg is None:
            raise ValueError("sigreg_projector is given but sigreg_weight is 0 (no SIGReg term): set "
                             "model.init_args.sigreg_weight > 0 or remove the projector")
        self.sigreg_projector = sigreg_projector
        self._step_index = 0  # the fit loop's index of the current batch (set with its masks)
        self._compiled = False  # configure_model runs at every fit/validate: compile once
        self.lr, self.start_lr, self.final_lr, self.warmup = lr, start_lr, final_lr, warmup
        self.weight_decay, self.final_weight_decay, self.betas = weight_decay, final_weight_decay, tuple(betas)
        self.ema = tuple(ema) if ema is not None else None
        self.ema_average_start, self.ema_schedule = ema_average_start, check_ema_schedule(ema_schedule)
        self.encoder, self.predictor = encoder, predictor
        self.teacher = EMATeacher(encoder) if ema is not None else None
        self.rankme = RankMe()
        self.total_steps = 1  # set by configure_optimizers from the Trainer
        self._skip_step: Literal["batch", "step"] | None = None  # this batch's step is skipped on every rank (why)

    # ----------------------------------------------------------------- masks
    def sample_masks(self, batch: dict[str, Any], generator: torch.Generator) -> Any:
        """Masks for the whole batch, on the batch's device (override in a masked method)."""
        return None

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.trainer is not None and self.trainer.training:
            batch = self._agree_on_unreadable(batch)
        if batch is not None and self.trainer is not None and self.trainer.training:
            # The index this batch gets in the fit loop (counted across epochs; restored on resume).
            batch_index = self._step_index = self.trainer.fit_loop.epoch_loop.batch_progress.total.ready
            device = batch[self.input_key].device
            g = step_generator(self.mask_seed, self.global_rank, batch_index, device)
            batch["masks"] = self.sample_masks(batch, g)
        return batch

    def _agree_on_unreadable(self, batch: Any) -> Any:
        """A batch with no readable sample (None from the DataModule, which reported the files) is skipped by
        every rank: one reduction tells all ranks whether any rank's batch is None, and then all return None, so
        Lightning skips the step everywhere (no rank waits alone in the gradient all-reduce) and the schedules do
        not advance (`lr_scheduler_step`)."""
        self._skip_step = None
        if self.trainer.strategy.reduce_boolean_decision(batch is None, all=False):
            self._skip_step = "batch"  # Lightning takes no optimizer step for a None batch
            rank_zero_warn(f"no readable sample in a rank's batch at global step {self.global_step} (epoch "
                           f"{self.current_epoch}): optimizer step skipped on every rank")
            return None
        return batch

    # -------------------------------------------------------------- training
    def objective(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The method's loss on a batch: (loss, targets, pooled evaluation features [B, D] when the objective
        computes them for free (e.g. from the EMA teacher's forward), else None)."""
        raise NotImplementedError

    def training_step(self, batch: dict[str, Any] | None, batch_idx: int):
        if batch is None:  # (Lightning skips None batches, on every rank at once: `_agree_on_unreadable`)
            return None
        step = self.step_loss(batch)
        if self._nonfinite_anywhere(step.loss, batch_idx):
            return self._skipped_step(f"non-finite loss at global step {self.global_step} (epoch "
                                      f"{self.current_epoch}, batch {batch_idx})")
        self.log_train(step.loss, step.targets, step.features, step.predictions)
        return {"loss": step.loss} if step.features is None else {"loss": step.loss, "features": step.features}

    def step_loss(self, batch: dict[str, Any]) -> StepOutput:
        """The method's objective plus, when on, the SIGReg guard: the loss a training step minimises (and whose
        FLOPs `eval.flops.step_flops` counts)."""
        step = StepOutput(*self.objective(batch))
        if self.sigreg is not None:
            step = step._replace(loss=step.loss + self.sigreg_weight * self.sigreg_term(step.embeddings))
        return step

    def sigreg_term(self, embeddings: torch.Tensor | None) -> torch.Tensor:
        """SIGReg of this step's embeddings (through `sigreg_projector` when given; logged as `train/sigreg`), with
        directions every rank draws alike: a generator seeded by (mask_seed, step) on rank 0's stream, so a resumed
        run draws the same sequence."""
        if embeddings is None:
            raise ValueError(f"sigreg_weight > 0, but {type(self).__name__} declares no embeddings for SIGReg "
                             "(StepOutput.embeddings); set model.init_args.sigreg_weight=0")
        if self.sigreg_projector is not None:
            embeddings = self.sigreg_projector(embeddings)
        g = step_generator(self.mask_seed + SIGREG_STREAM, 0, self._step_index, embeddings.device)
        value = self.sigreg(embeddings, g)
        self.log_step_term("train/sigreg", value, embeddings.size(-2))
        return value

    def log_step_term(self, name: str, value: torch.Tensor, batch_size: int) -> None:
        """Log a term of the training loss from inside `step_loss` / `objective`: only in `training_step`, not when a
        callback runs the objective itself (`eval.flops.step_flops` counting its FLOPs)."""
        if self._current_fx_name == "training_step":
            self.log(name, value.detach(), batch_size=batch_size)

    def _nonfinite_anywhere(self, loss: torch.Tensor, batch_idx: int) -> bool:
        """Whether any rank's loss is not finite (one reduction, so that every rank decides alike); with
        `nonfinite="raise"` every rank then stops with the error naming the step."""
        local = not bool(torch.isfinite(loss).all())
        anywhere = self.trainer.strategy.reduce_boolean_decision(local, all=False)
        if anywhere and self.nonfinite == "raise":
            value = f" ({loss.item()})" if local else " (on another rank)"
            raise FloatingPointError(f"non-finite loss{value} at global step {self.global_step} (epoch "
                                     f"{self.current_epoch}, batch {batch_idx}); lower the learning rate, check the "
                                     "data, or set model.init_args.nonfinite=skip to skip such steps")
        return anywhere

    def _skipped_step(self, reason: str):
        """Skip this optimizer step on every rank, leaving weights, optimizer state, schedules, the EMA teacher and
        the step count as if the batch had not been there (`optimizer_step`, `lr_scheduler_step`,
        `on_train_batch_end`). One process: no loss (Lightning skips the backward). Several: a zero loss that
        reaches every trainable parameter, so that the gradient all-reduce every rank joins completes; its zero
        gradients are then dropped before the optimizer sees them."""
        self._skip_step = "step"  # Lightning runs (and counts) an optimizer step that optimizer_step empties
        rank_zero_warn(f"{reason}: optimizer step skipped on every rank")
        if self.trainer.world_size == 1:
            return None
        zero = sum((p.sum() * 0.0 for p in self.parameters() if p.requires_grad), torch.zeros((), device=self.device))
        return {"loss": zero}

    # ------------------------------------------------------------ evaluation
    def network(self, which: str | None = None) -> nn.Module:
        """The network frozen evaluation reads: "teacher" (the EMA or frozen target network, when the method
        has one), "encoder" (the context encoder, the student), or None for `eval_encoder`."""
        which = which or self.eval_encoder
        if which not in ("teacher", "encoder"):
            raise ValueError(f"network must be 'teacher' or 'encoder', got {which!r}")
        if which == "teacher" and self.teacher is not None:
            return self.teacher.module
        return self.encoder

    @property
    def eval_network(self) -> nn.Module:
        return self.network()

    @torch.no_grad()
    def encode(self, batch: dict[str, Any], network: str | None = None) -> torch.Tensor:
        """Frozen-evaluation tokens [B, N, D] on the full input, of `network` (see `network`; default: the
        evaluation encoder). Always in eval mode: a student's drop-path and dropout are off while it is read."""
        module = self.network(network)
        was_training = module.training
        module.eval()
        try:
            return module(batch[self.input_key])
        finally:
            module.train(was_training)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Evaluation is done by callbacks (online probe, kNN, RankMe) through `encode`."""

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        """Evaluation is done by callbacks through `encode`."""

    # --------------------------------------------------------------- logging
    def log_train(self, loss: torch.Tensor, targets: torch.Tensor, features: torch.Tensor | None,
                  predictions: torch.Tensor | None = None) -> None:
        """`train/loss`, the collapse signals (`train/target_std` and `train/pred_std`: per-dimension std of
        the targets / predictions over the batch's tokens, averaged over dimensions; `train/rankme` per epoch:
        RankMe of the centred pooled evaluation features, when the objective computed them; with token targets
        [B, ..., D], `train/target_sample_share`: the share of their variance that is one code per sample, the same at
        every token, `eval.variance_shares`: near 1, the targets have collapsed onto a global code, and
        `train/target_position_share`: the share that position alone predicts, the same in every sample, estimated
        on the batch: near 1, a predictor can drive the loss down from its position embeddings without reading the
        context, and the encoder gets almost no content signal), the schedules
        and, with an EMA teacher, the share of its random init it still holds (`train/ema_init_share`)."""
        bs = targets.size(0)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/target_std", targets.detach().float().flatten(0, -2).std(0).mean(), batch_size=bs)
        if targets.dim() >= 3 and targets.shape[1:-1].numel() > 1:  # token targets [B, ..., D]
            position, sample = position_and_sample_shares(targets.detach().float().flatten(1, -2))
            self.log("train/target_sample_share", sample, batch_size=bs)
            self.log("train/target_position_share", position, batch_size=bs)
        if predictions is not None:
            self.log("train/pred_std", predictions.detach().float().flatten(0, -2).std(0).mean(), batch_size=bs)
        if features is not None:
            self.rankme.update(features.float())
            self.log("train/rankme", self.rankme, on_step=False, on_epoch=True, batch_size=bs)
        opt = self.optimizers(use_pl_optimizer=False)
        self.log("train/lr", opt.param_groups[0]["lr"], batch_size=bs)
        self.log("train/wd", opt.param_groups[0]["weight_decay"], batch_size=bs)
        if isinstance(self.teacher, EMATeacher):
            self.log("train/ema", self.ema_momentum(self.global_step + 1), batch_size=bs)
            self.log("train/ema_init_share", ema_init_share(self.global_step, self.total_steps, *self.ema,
                                                            self.ema_average_start, self.ema_schedule), batch_size=bs)

    # ---------------------------------------------------- optimizer, teacher
    @property
    def target_network(self) -> nn.Module:
        """The network whose outputs are the targets: the EMA (or frozen) teacher, or without one (`ema=None`) the
        context encoder itself."""
        return self.teacher if self.teacher is not None else self.encoder

    def target(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        """The target network's output on the inputs, without gradient (stop-gradient when it is the encoder)."""
        with torch.no_grad():
            return self.target_network(*args, **kwargs)

    def trainable_modules(self) -> list[nn.Module]:
        """Every child but the target networks (EMA or frozen teachers) and the RankMe metric."""
        return [m for name, m in self.named_children() if not isinstance(m, TargetNetwork) and name != "rankme"]

    def configure_model(self) -> None:
        """Under a strategy with a device mesh (Lightning's `ModelParallelStrategy`): shard with FSDP2 over
        the mesh's data-parallel dimension every trainable network (block by block, then its root) and every
        target network exactly like the network it follows, so the EMA update runs on local shards. Under bf16-mixed
        the FSDP2 policy gathers and computes in bf16 and reduces gradients in fp32 (the sharded parameters,
        the teacher's included, stay fp32). Without a mesh (single device, DDP) nothing changes. Then, with
        `compile`, every network is compiled block by block (`nn.compile_blocks`)."""
        self._shard()
        if self.compile_options is not None and not self._compiled:
            for module in self.children():
                if module is not self.rankme and any(True for _ in module.parameters()):
                    compile_blocks(module.module if isinstance(module, TargetNetwork) else module,
                                   **self.compile_options)
            self._compiled = True

    def _shard(self) -> None:
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

    def ema_momentum(self, update: int) -> float:
        """Momentum of the teacher's `update`-th update (1-based; see `jepa_lightning.targets.ema_momentum`)."""
        return ema_momentum(update, self.total_steps, *self.ema, self.ema_average_start, self.ema_schedule)

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        def closure():
            result = optimizer_closure() if optimizer_closure is not None else None
            if self._skip_step:  # without gradients the optimizer changes no weight or state
                optimizer.zero_grad(set_to_none=True)
            return result

        super().optimizer_step(epoch, batch_idx, optimizer, closure)
        if isinstance(self.teacher, EMATeacher) and not self._skip_step:
            # inside this hook global_step still counts the steps before this one: this is update global_step + 1
            self.teacher.update(self.encoder, self.ema_momentum(self.global_step + 1))

    def lr_scheduler_step(self, scheduler, metric) -> None:
        if not self._skip_step:  # a skipped step does not advance the schedules
            super().lr_scheduler_step(scheduler, metric)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self._skip_step == "step":
            # Lightning counted an optimizer step for this batch; it did not happen, so the step count (max_steps,
            # the EMA and weight-decay schedules keyed by global_step) stays where it was
            progress = self.trainer.fit_loop.epoch_loop.automatic_optimization.optim_progress.optimizer.step
            for tracker in (progress.total, progress.current):
                tracker.ready -= 1
                tracker.completed -= 1
        self._skip_step = None
