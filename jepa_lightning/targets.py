"""Target networks: the EMA teacher (I-JEPA, V-JEPA, ...) and the frozen teacher (SALT stage 2)."""

from __future__ import annotations

import copy

import torch
from torch import nn

from jepa_lightning.eval.checkpoint import load_encoder_weights


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher <- momentum * teacher + (1 - momentum) * student, over all parameters in one fused call."""
    t_params = [p for p in teacher.parameters()]
    s_params = [p.detach() for p in student.parameters()]
    if len(t_params) != len(s_params):
        raise ValueError(f"teacher has {len(t_params)} parameter tensors, student {len(s_params)}")
    torch._foreach_lerp_(t_params, s_params, 1.0 - momentum)


class _Teacher(nn.Module):
    """A target network: never trained by the optimizer, always in eval mode, run without autograd."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> _Teacher:  # stays in eval mode (no drop-path, fixed norms)
        return super().train(False)

    @torch.no_grad()
    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)


class EMATeacher(_Teacher):
    """A copy of the student encoder that follows it by exponential moving average."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__(copy.deepcopy(student))

    def update(self, student: nn.Module, momentum: float) -> None:
        ema_update(self.module, student, momentum)


class FrozenTeacher(_Teacher):
    """A teacher loaded once (e.g. SALT's stage-1 checkpoint) that never moves.

    `checkpoint`: a Lightning `.ckpt` (the weights under `f"{key}."` in its state dict) or a safetensors
    export of the bare module; `None` keeps the module's weights as given.
    """

    def __init__(self, module: nn.Module, checkpoint: str | None = None, key: str = "encoder") -> None:
        if checkpoint is not None:
            load_encoder_weights(module, checkpoint, key)
        super().__init__(module)
