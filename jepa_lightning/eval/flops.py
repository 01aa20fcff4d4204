"""Training compute of a run, in FLOPs, so methods can be compared at matched compute.

`TrainingFLOPs` logs `train/flops_per_step` and the cumulative `train/flops_total`; `step_flops` counts one
forward+backward of a method's objective by hand. Both count with `flop_counter()`: torch's
`torch.utils.flop_counter.FlopCounterMode`, plus the one formula it lacks for CPU (see `flop_counter`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
import torch.utils.flop_counter as _fc
from lightning.pytorch.callbacks import ModelSummary
from lightning.pytorch.utilities.model_summary.model_summary import (
    get_formatted_model_size,
    get_human_readable_count,
)
from lightning.pytorch.utilities.rank_zero import rank_zero_info
from torch.utils.flop_counter import FlopCounterMode

_aten = torch.ops.aten


def _cpu_sdpa_flop(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return _fc.sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_sdpa_backward_flop(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None,
                            **kwargs) -> int:
    return _fc.sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# torch counts fused attention for its CUDA kernels (flash, efficient, cudnn) but not for the CPU flash
# kernel, so on CPU `F.scaled_dot_product_attention` would count 0 FLOPs: use the CUDA kernels' formulas.
_CPU_ATTENTION = {
    op: formula
    for name, formula in (("_scaled_dot_product_flash_attention_for_cpu", _cpu_sdpa_flop),
                          ("_scaled_dot_product_flash_attention_for_cpu_backward", _cpu_sdpa_backward_flop))
    if hasattr(_aten, name) and (op := getattr(_aten, name)) not in _fc.flop_registry
}


def flop_counter() -> FlopCounterMode:
    """A `FlopCounterMode(display=False)` that also counts CPU fused attention like the CUDA kernels, so the
    same model and batch count the same FLOPs on CPU and GPU. What it counts: the dense matmul, convolution
    and attention FLOPs (2 per multiply-add) of the ops that run inside it, forward and backward;
    elementwise ops, norms, softmax and optimizer updates count 0."""
    return FlopCounterMode(display=False, custom_mapping=_CPU_ATTENTION)


def step_flops(module: torch.nn.Module, batch: Any) -> int:
    """FLOPs of one forward+backward of the training loss on this process, counted by `flop_counter()`: a
    JEPAModule's `step_loss(batch)` (its objective plus the SIGReg guard when on), else `module.objective(batch)`.

    `batch` as `training_step` sees it (for a masked method: with `batch["masks"]`, e.g. from
    `module.sample_masks`). Gradients are taken with `torch.autograd.grad` with respect to the trainable
    parameters, so the module's `.grad` fields are left untouched and no optimizer step is taken.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    with flop_counter() as counter:
        loss = getattr(module, "step_loss", module.objective)(batch)[0]
        torch.autograd.grad(loss, params, allow_unused=True)
    return counter.get_total_flops()


def format_flops(flops: float) -> str:
    """`1.23 GFLOP` style."""
    for scale, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(flops) >= scale:
            return f"{flops / scale:.3g} {prefix}FLOP"
    return f"{flops:.3g} FLOP"


def _ran_a_step(outputs: Any) -> bool:
    # Lightning passes `{}` (automatic optimization) or None when `training_step` returned None.
    return not (outputs is None or (isinstance(outputs, Mapping) and not outputs))


class TrainingFLOPs(L.Callback):
    """Log the training FLOPs of a run: `train/flops_per_step` and the cumulative `train/flops_total`.

    What is counted: everything `flop_counter()` counts (dense matmul, convolution and attention FLOPs of
    forward and backward, as torch's `FlopCounterMode` defines them, plus CPU fused attention) between this
    callback's `on_train_batch_start` and `on_train_batch_end`: the method's forward and backward, the
    optimizer and EMA updates (0: elementwise), and the hooks that run in between — those of callbacks listed
    after this one in `on_train_batch_start` and before it in `on_train_batch_end` (e.g. the `OnlineProbe`
    head's small forward/backward when the probe is listed first; list `TrainingFLOPs` first to count the
    method's step alone). Communication, data loading and validation are not counted.

    Every training batch whose `training_step` ran (returned a loss) counts, including gradient-accumulation
    batches that take no optimizer step; a batch whose step returned None (unreadable batch, skipped
    non-finite loss) adds nothing and is not measured.

    Processes: each process counts its own shard of the global batch, and the counts are summed over processes
    (an all-reduce per measured batch), so both metrics are for the whole run — world_size x the mean
    per-process count — and identical on every rank (they are logged with `sync_dist=False`). Summing rather
    than multiplying one rank's count by `world_size` keeps the count exact when ranks differ (I-JEPA's masks,
    hence its token counts, differ per rank).

    Args:
        measure_steps: counting slows a step down (every op goes through a Python dispatch mode), so by default
            only the first `measure_steps` batches that ran a step are counted, and every later batch adds the
            mean of those. `None` counts every batch exactly (and all-reduces every batch).

    Both metrics are logged `on_step` (at the Trainer's `log_every_n_steps`), as float32 like every logged
    scalar (`train/flops_per_step`: a measured batch's own count, the estimate after); the float64 total is
    `total_flops`, the measured counts `measured`, the estimate `flops_per_batch`. Resume: the total, the measurements and the world size
    they were taken at are in this callback's checkpoint state, so a resumed run continues the sum; if it
    resumes with a different number of processes, the per-batch cost is measured again.
    """

    def __init__(self, measure_steps: int | None = 5) -> None:
        super().__init__()
        if measure_steps is not None and measure_steps < 1:
            raise ValueError(f"measure_steps must be >= 1, or None to count every batch; got {measure_steps}")
        self.measure_steps = measure_steps
        self.total_flops = 0.0        # whole run, all processes
        self.batches = 0              # training batches counted in the total
        self.measured: list[int] = []  # counted FLOPs (all processes) of the measured batches
        self.world_size: int | None = None  # the world size the measurements were taken at
        self._counter: FlopCounterMode | None = None

    # ---------------------------------------------------------------- the per-batch cost
    @property
    def measuring(self) -> bool:
        return self.measure_steps is None or len(self.measured) < self.measure_steps

    @property
    def flops_per_batch(self) -> float | None:
        """The per-batch estimate (all processes): the mean of the measured batches; None before any."""
        return sum(self.measured) / len(self.measured) if self.measured else None

    # ---------------------------------------------------------------- hooks
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.world_size != trainer.world_size:
            if self.measured:
                rank_zero_info(f"TrainingFLOPs: measured at {self.world_size} processes, now "
                               f"{trainer.world_size}: measuring the per-batch cost again")
            self.measured, self.world_size = [], trainer.world_size

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:
        self._stop_counter()  # a batch whose end hook never ran (another hook asked to skip the epoch)
        if self.measuring:
            self._counter = flop_counter()
            self._counter.__enter__()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        counted = self._stop_counter()
        ran = _ran_a_step(outputs)
        if self.measuring:
            # the decision to measure is the same on every rank (it depends on reduced values only), so every
            # rank takes part in this all-reduce
            local = torch.tensor([counted if ran and counted is not None else 0, int(ran)], dtype=torch.int64,
                                 device=pl_module.device)
            flops, ran_anywhere = (int(v) for v in trainer.strategy.reduce(local, reduce_op="sum").tolist())
            if not ran_anywhere:
                return
            self.measured.append(flops)
            self._add(pl_module, flops)
            done = 1 if self.measure_steps is None else self.measure_steps  # say it once
            if len(self.measured) == done:
                n = trainer.world_size
                how = ("first batch; counting every batch" if self.measure_steps is None
                       else f"mean of the first {done}, added for every later batch")
                rank_zero_info(f"TrainingFLOPs: {format_flops(self.flops_per_batch)} per training batch "
                               f"(all {n} process{'es' if n > 1 else ''}; {how})")
        elif ran:
            self._add(pl_module, self.flops_per_batch)

    def _add(self, pl_module: L.LightningModule, flops: float) -> None:
        self.total_flops += flops
        self.batches += 1
        # identical values on every rank: nothing to synchronise
        pl_module.log("train/flops_per_step", float(flops), on_step=True, on_epoch=False, sync_dist=False,
                      batch_size=1)
        pl_module.log("train/flops_total", float(self.total_flops), on_step=True, on_epoch=False,
                      sync_dist=False, batch_size=1)

    def _stop_counter(self) -> int | None:
        if self._counter is None:
            return None
        counter, self._counter = self._counter, None
        counter.__exit__(None, None, None)
        return counter.get_total_flops()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_counter()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._stop_counter()

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._stop_counter()

    # ---------------------------------------------------------------- checkpoint
    def state_dict(self) -> dict[str, Any]:
        return {"total_flops": self.total_flops, "batches": self.batches, "measured": list(self.measured),
                "world_size": self.world_size}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.total_flops = float(state_dict["total_flops"])
        self.batches = int(state_dict["batches"])
        self.measured = [int(v) for v in state_dict["measured"]]
        self.world_size = state_dict["world_size"]


class ParameterSummary(ModelSummary):
    """Lightning's model summary without its FLOPs column and "Total FLOPs" line, which read 0 for a JEPA
    module (Lightning counts them only for an `example_input_array`): `TrainingFLOPs` reports the real cost of
    a training step. Layers, types, parameters and modes as Lightning prints them."""

    @staticmethod
    def summarize(summary_data: list[tuple[str, list[str]]], total_parameters: int, trainable_parameters: int,
                  model_size: float, total_training_modes: dict[str, int], total_flops: int,
                  **summarize_kwargs: Any) -> None:
        columns = [(name, [str(v) for v in values]) for name, values in summary_data if name != "FLOPs"]
        widths = [max([len(name), *(len(v) for v in values)]) for name, values in columns]
        rows = [" | ".join(name.ljust(w) for (name, _), w in zip(columns, widths))]
        rows.append("-" * len(rows[0]))
        for i in range(len(columns[0][1]) if columns else 0):
            rows.append(" | ".join(values[i].ljust(w) for (_, values), w in zip(columns, widths)))
        rows.append("-" * len(rows[0]))
        for value, what in ((get_human_readable_count(trainable_parameters), "Trainable params"),
                            (get_human_readable_count(total_parameters - trainable_parameters), "Non-trainable params"),
                            (get_formatted_model_size(model_size), "Total estimated model params size (MB)"),
                            (total_training_modes["train"], "Modules in train mode"),
                            (total_training_modes["eval"], "Modules in eval mode")):
            rows.append(f"{value!s:<10} {what}")
        rank_zero_info("\n".join(rows))
