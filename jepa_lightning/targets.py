"""Target networks: the EMA teacher (I-JEPA, V-JEPA, ...) and the frozen teacher (SALT stage 2)."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.distributed.tensor import DTensor

from jepa_lightning.eval.checkpoint import load_encoder_weights
from jepa_lightning.optim import cosine, linear

EMA_SCHEDULES = ("linear", "cosine")


def check_ema_schedule(schedule: str) -> str:
    """`schedule` if it names an EMA momentum path (:data:`EMA_SCHEDULES`), else a ValueError naming it."""
    if schedule not in EMA_SCHEDULES:
        raise ValueError(f"EMA schedule must be one of {EMA_SCHEDULES}, got {schedule!r}")
    return schedule


def ema_momentum(update: int, total: int, start: float, end: float, average_start: bool = True,
                 schedule: str = "linear") -> float:
    """The EMA momentum of the teacher's `update`-th update (1-based: the first optimizer step makes update 1).

    The paper's schedule is linear from `start` to `end` over the `total` updates of the run (I-JEPA, V-JEPA);
    `schedule="cosine"` rises along a half cosine instead (BYOL's, which seq-JEPA's reference code uses: 1 - (1 -
    start) (cos(pi t) + 1) / 2 for end 1, per epoch there, per update here). The linear schedule's flaw in a
    short run: the teacher keeps prod(momenta) of its random initialisation (0.64 after 880 updates at 0.999;
    ~0 after the paper's 375k), and the probes evaluate the teacher. With `average_start` the momentum is
    at most 1 - 1/update, so the teacher starts as the plain running average of the students it has seen
    (update 1 copies the student) and follows the paper's schedule wherever that is the smaller momentum
    (from 1 / (1 - start) updates on: 250 at 0.996, until the schedule nears 1 at the very end). The teacher
    never holds more of the past than the plain average of the students, no trace of the initialisation
    survives at any run length, and a long run follows the paper's schedule but for its first few hundred and
    last few steps. (A short run's teacher may be the running average throughout: 880 updates at 0.996.)"""
    m = (linear if check_ema_schedule(schedule) == "linear" else cosine)(update - 1, total, start, end)
    return min(m, 1.0 - 1.0 / update) if average_start and update >= 1 else m


def ema_init_share(updates: int, total: int, start: float, end: float, average_start: bool = True,
                   schedule: str = "linear") -> float:
    """The share of its initialisation an EMA teacher still holds after `updates` updates: prod of the momenta
    (0 once a momentum was 0, as with `average_start`). Computed in one vectorized pass (exact at any step)."""
    if updates < 1:
        return 1.0
    if average_start:
        return 0.0
    check_ema_schedule(schedule)
    t = (torch.arange(updates, dtype=torch.float64) / max(total, 1)).clamp(0.0, 1.0)
    if schedule == "cosine":  # optim.cosine's half cosine, vectorized
        t = 0.5 * (1.0 - torch.cos(math.pi * t))
    m = start + t * (end - start)
    return math.exp(float(torch.log(m).sum())) if bool((m > 0).all()) else 0.0


def _local_pair(name: str, t: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The tensors to lerp for one teacher/student parameter pair: the local shards of sharded (DTensor)
    parameters, which must be sharded identically, or the plain tensors."""
    t_dt, s_dt = isinstance(t, DTensor), isinstance(s, DTensor)
    if t.shape != s.shape:
        raise ValueError(f"EMA: parameter '{name}' has shape {tuple(t.shape)} in the teacher and "
                         f"{tuple(s.shape)} in the student")
    if not (t_dt or s_dt):
        return t, s
    if not (t_dt and s_dt) or t.device_mesh != s.device_mesh or t.placements != s.placements:
        def where(p):
            return f"{p.placements} on {p.device_mesh}" if isinstance(p, DTensor) else "an unsharded tensor"
        raise ValueError(f"EMA: teacher and student are sharded differently at parameter '{name}': teacher "
                         f"{where(t)}, student {where(s)}; shard the teacher exactly like the student "
                         "(jepa_lightning.distributed.shard_module with the same mesh)")
    t_local, s_local = t.to_local(), s.to_local()
    if t_local.shape != s_local.shape:
        raise ValueError(f"EMA: local shards of '{name}' differ: teacher {tuple(t_local.shape)}, "
                         f"student {tuple(s_local.shape)}")
    return t_local, s_local


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher <- momentum * teacher + (1 - momentum) * student, over all parameters in one fused call; the
    teacher's buffers (e.g. BatchNorm running statistics, which a teacher kept in eval mode never updates
    itself) take the student's values.

    Parameters are paired in order. Sharded parameters (FSDP2 DTensors) are updated shard by shard: each
    process lerps its local shards, which requires teacher and student to be sharded identically (checked;
    a clear ValueError otherwise, never a silent mix of differently flattened shards)."""
    t_named = list(teacher.named_parameters())
    s_params = [p.detach() for p in student.parameters()]
    if len(t_named) != len(s_params):
        raise ValueError(f"teacher has {len(t_named)} parameter tensors, student {len(s_params)}")
    pairs = [_local_pair(name, t, s) for (name, t), s in zip(t_named, s_params)]
    if pairs:
        t_local, s_local = zip(*pairs)
        torch._foreach_lerp_(list(t_local), list(s_local), 1.0 - momentum)
    t_buffers, s_buffers = list(teacher.buffers()), [b.detach() for b in student.buffers()]
    if len(t_buffers) != len(s_buffers):
        raise ValueError(f"teacher has {len(t_buffers)} buffers, student {len(s_buffers)}")
    if t_buffers:
        torch._foreach_copy_(t_buffers, s_buffers)


class TargetNetwork(nn.Module):
    """A target network: never trained by the optimizer, always in eval mode, run without autograd."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> TargetNetwork:  # stays in eval mode (no drop-path, fixed norms)
        return super().train(False)

    @torch.no_grad()
    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


class EMATeacher(TargetNetwork):
    """A copy of the student encoder that follows it by exponential moving average."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__(copy.deepcopy(student))

    def update(self, student: nn.Module, momentum: float) -> None:
        ema_update(self.module, student, momentum)


class FrozenTeacher(TargetNetwork):
    """A teacher loaded once (e.g. SALT's stage-1 checkpoint) that never moves.

    `checkpoint`: a Lightning `.ckpt` (the weights under `f"{key}."` in its state dict) or a safetensors
    export of the bare module; `None` keeps the module's weights as given.
    """

    def __init__(self, module: nn.Module, checkpoint: str | None = None, key: str = "encoder") -> None:
        if checkpoint is not None:
            load_encoder_weights(module, checkpoint, key)
        super().__init__(module)
