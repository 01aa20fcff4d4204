"""FSDP2 sharding of a model's networks (under Lightning's `ModelParallelStrategy`), and `FSDP2Strategy`.

`shard_module` applies `torch.distributed.fsdp.fully_shard` the usual way: each transformer block on its own
(so only one block's full weights exist at a time), then the root for the remaining parameters (embeddings,
final norm, projections). Sharding depends only on the module's structure, the mesh and the parameter
shapes, so two copies of one network (a student and its EMA teacher) get identical per-parameter shards
and the EMA update can run shard by shard (`targets.ema_update`).
"""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.collectives.torch_collective import default_pg_timeout
from lightning.pytorch.strategies import ModelParallelStrategy, StrategyRegistry
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

from jepa_lightning.checkpointing import next_slot, publish_directory


def block_lists(module: nn.Module) -> list[nn.ModuleList]:
    """The `blocks` ModuleLists inside `module` (e.g. each `TransformerStack.blocks`), in module order."""
    return [m.blocks for m in module.modules() if isinstance(getattr(m, "blocks", None), nn.ModuleList)]


def shard_module(module: nn.Module, mesh: DeviceMesh, mp_policy: MixedPrecisionPolicy | None = None,
                 reshard_after_forward: bool | None = None) -> nn.Module:
    """Shard `module` over the 1-D data-parallel `mesh` with FSDP2: every block of every `blocks` ModuleList
    found inside it, then `module` itself. Returns `module` (sharded in place; a no-op if it already is).

    `reshard_after_forward=None` keeps FSDP2's default (the root stays unsharded between forward and
    backward); pass `True` for a network that runs forward only (a teacher), so that its parameters are
    sharded DTensors again right after each forward.
    """
    if isinstance(module, FSDPModule):
        return module
    if mesh.ndim != 1:
        raise ValueError(f"shard_module expects a 1-D (data-parallel) device mesh, got {mesh.ndim}-D {mesh}")
    kwargs = {"mesh": mesh, "mp_policy": mp_policy or MixedPrecisionPolicy()}
    for blocks in reversed(block_lists(module)):  # innermost first: FSDP2 shards bottom-up
        for block in blocks:
            fully_shard(block, **kwargs)
    if reshard_after_forward is None:
        fully_shard(module, **kwargs)
    else:
        fully_shard(module, reshard_after_forward=reshard_after_forward, **kwargs)
    return module


def bf16_policy() -> MixedPrecisionPolicy:
    """bf16 compute and all-gathers, fp32 gradient reduction; the sharded (master) parameters stay fp32."""
    return MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)


class FSDP2Strategy(ModelParallelStrategy):
    """Lightning's `ModelParallelStrategy` for pure FSDP2: every process is one data-parallel rank
    (`data_parallel_size` = devices x num_nodes, `tensor_parallel_size` = 1), whatever the number of nodes and
    devices (`ModelParallelStrategy`'s "auto" sizes mean tensor parallelism within a node instead). The
    method shards itself in `configure_model`; checkpoints are sharded directories unless
    `save_distributed_checkpoint=False` (one full file, gathered on rank 0)."""

    def __init__(self, save_distributed_checkpoint: bool = True, process_group_backend: str | None = None,
                 timeout: timedelta | None = default_pg_timeout) -> None:
        super().__init__(data_parallel_size="auto", tensor_parallel_size=1,
                         save_distributed_checkpoint=save_distributed_checkpoint,
                         process_group_backend=process_group_backend, timeout=timeout)

    def setup_environment(self) -> None:
        self._data_parallel_size = self.num_nodes * self.num_processes  # known once the Trainer is set up
        super().setup_environment()

    def save_checkpoint(self, checkpoint: dict[str, Any], filepath, storage_options: Any | None = None) -> None:
        """Sharded saves are atomic: every rank writes its shards into a hidden slot directory next to
        `filepath`, then rank 0 swaps the `filepath` symlink onto it (`checkpointing.publish_directory`)."""
        if not self._save_distributed_checkpoint:
            return super().save_checkpoint(checkpoint, filepath, storage_options)
        path = Path(self.broadcast(str(filepath)))
        slot = Path(self.broadcast(str(next_slot(path))))
        if self.global_rank == 0 and slot.exists():
            shutil.rmtree(slot)
        self.barrier("FSDP2Strategy.save_checkpoint")
        super().save_checkpoint(checkpoint, slot, storage_options)
        self.barrier("FSDP2Strategy.save_checkpoint")
        if self.global_rank == 0:
            publish_directory(path, slot)
        self.barrier("FSDP2Strategy.save_checkpoint")


# `--trainer.strategy=fsdp2`: registered when this module is imported, which the CLI (`jepa_lightning.cli`) and
# every method (`methods.base`) do, whichever single method a run imports.
if "fsdp2" not in StrategyRegistry:
    StrategyRegistry.register("fsdp2", FSDP2Strategy, description="FSDP2 over all processes (jepa-lightning)")


def close_process_group(barrier: bool = False) -> None:
    """Tear the default process group down (a no-op without one); `barrier` waits for every rank first.

    Left to interpreter shutdown, gloo's worker threads can be destroyed while still joinable, and a rank then
    aborts with "terminate called without an active exception" after a successful run (seen under SLURM on
    CPU). The CLI calls this (with a barrier) after a run, and registers it (without: a rank that failed must
    not wait for the others) to run at exit in every process that imports it, scripts that call
    `trainer.fit` themselves included."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        if barrier:
            dist.barrier()
        dist.destroy_process_group()
