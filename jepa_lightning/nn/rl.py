"""Building blocks of latent-space reinforcement learning (TD-JEPA; reusable by other RL methods).

- :class:`MLP`: ``Linear -> LayerNorm -> Tanh -> [Linear -> ReLU] x (hidden_layers - 1) -> Linear``, the trunk
  used across the forward-backward / TD-JEPA family (a layer-normed tanh input layer keeps the first
  activations bounded whatever the observation scale). With ``ensemble=E > 1`` it is E independent MLPs run
  as one batched matmul (``[E, B, in] -> [E, B, out]``, a ``[B, in]`` input is shared by all members).
- :class:`StateEncoder`: an MLP whose output is rescaled to norm ``sqrt(d)`` (:func:`sphere`), the
  encoders phi and psi of TD-JEPA.
- :class:`ConditionedPredictor`: ``T(x, a, z)``: two embeddings, of ``(x, a)`` and of ``(x, z)``, concatenated
  and mapped by an MLP head; an ensemble of E predictors (E = 2 in TD-JEPA).
- :class:`LatentActor`: a deterministic TD3 actor ``mu(x, z)`` in ``(-1, 1)``, with
  :func:`truncated_normal_sample` for the clipped Gaussian exploration / target-smoothing noise.
- :class:`PixelEncoder` (the DrQ-v2 convolutional trunk) and :func:`random_shift` (pad + random crop,
  vectorized) for learning from pixels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sphere(x: torch.Tensor) -> torch.Tensor:
    """Rescale the last dimension to norm ``sqrt(d)`` (the sphere on which TD-JEPA's features and z live)."""
    return math.sqrt(x.shape[-1]) * F.normalize(x, dim=-1)


class EnsembleLinear(nn.Module):
    """E independent linear layers applied as one batched matmul: ``[E, B, in] -> [E, B, out]``."""

    def __init__(self, in_dim: int, out_dim: int, ensemble: int) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.ensemble = in_dim, out_dim, ensemble
        self.weight = nn.Parameter(torch.empty(ensemble, in_dim, out_dim))
        self.bias = nn.Parameter(torch.zeros(ensemble, 1, out_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for w in self.weight:  # each member as an orthogonally initialized nn.Linear ([out, in] stored as [in, out])
                w.copy_(nn.init.orthogonal_(torch.empty(self.out_dim, self.in_dim)).T)
            self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class EnsembleLayerNorm(nn.Module):
    """LayerNorm with a separate affine transform per ensemble member (``[E, B, d]``)."""

    def __init__(self, dim: int, ensemble: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ensemble, 1, dim))
        self.bias = nn.Parameter(torch.zeros(ensemble, 1, dim))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:]) * self.weight + self.bias


def _linear(in_dim: int, out_dim: int, ensemble: int) -> nn.Module:
    if ensemble > 1:
        return EnsembleLinear(in_dim, out_dim, ensemble)
    layer = nn.Linear(in_dim, out_dim)
    nn.init.orthogonal_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


def _layer_norm(dim: int, ensemble: int) -> nn.Module:
    return EnsembleLayerNorm(dim, ensemble) if ensemble > 1 else nn.LayerNorm(dim)


class MLP(nn.Module):
    """``Linear -> LayerNorm -> Tanh -> [Linear -> ReLU] x (hidden_layers - 1) -> Linear`` (``hidden_layers=0``:
    one Linear). With ``ensemble > 1``: E members, ``[B, in]`` (broadcast) or ``[E, B, in]`` -> ``[E, B, out]``."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 256, hidden_layers: int = 2,
                 ensemble: int = 1) -> None:
        super().__init__()
        if hidden_layers < 0 or ensemble < 1:
            raise ValueError(f"MLP: hidden_layers must be >= 0 and ensemble >= 1, got {hidden_layers}, {ensemble}")
        self.in_dim, self.out_dim, self.ensemble = in_dim, out_dim, ensemble
        if hidden_layers == 0:
            layers = [_linear(in_dim, out_dim, ensemble)]
        else:
            layers = [_linear(in_dim, hidden_dim, ensemble), _layer_norm(hidden_dim, ensemble), nn.Tanh()]
            for _ in range(hidden_layers - 1):
                layers += [_linear(hidden_dim, hidden_dim, ensemble), nn.ReLU()]
            layers.append(_linear(hidden_dim, out_dim, ensemble))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_dim:
            raise ValueError(f"{type(self).__name__}: expected inputs with {self.in_dim} features, got shape "
                             f"{list(x.shape)}")
        if self.ensemble > 1 and x.dim() == 2:
            x = x.expand(self.ensemble, *x.shape)
        return self.net(x)


class StateEncoder(nn.Module):
    """An MLP state encoder whose features are rescaled to norm ``sqrt(out_dim)`` (``normalize=True``), as
    TD-JEPA's phi and psi. ``hidden_layers=0`` is a linear map followed by the rescaling."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int = 256, hidden_layers: int = 2,
                 normalize: bool = True) -> None:
        super().__init__()
        self.in_dim, self.out_dim, self.normalize = in_dim, out_dim, normalize
        self.mlp = MLP(in_dim, out_dim, hidden_dim, hidden_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.mlp(x)
        return sphere(h) if self.normalize else h


class _Embedding(nn.Module):
    """``Linear -> LayerNorm -> Tanh -> [Linear -> ReLU] x (layers - 2) -> Linear(hidden // 2) -> ReLU``."""

    def __init__(self, in_dim: int, hidden_dim: int, layers: int, ensemble: int) -> None:
        super().__init__()
        if layers < 2:
            raise ValueError(f"an embedding needs >= 2 layers, got embedding_layers={layers}")
        seq = [_linear(in_dim, hidden_dim, ensemble), _layer_norm(hidden_dim, ensemble), nn.Tanh()]
        for _ in range(layers - 2):
            seq += [_linear(hidden_dim, hidden_dim, ensemble), nn.ReLU()]
        seq += [_linear(hidden_dim, hidden_dim // 2, ensemble), nn.ReLU()]
        self.net = nn.Sequential(*seq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _head(in_dim: int, hidden_dim: int, out_dim: int, hidden_layers: int, ensemble: int) -> nn.Sequential:
    """``[Linear -> ReLU] x hidden_layers -> Linear``."""
    seq: list[nn.Module] = []
    for _ in range(hidden_layers):
        seq += [_linear(in_dim, hidden_dim, ensemble), nn.ReLU()]
        in_dim = hidden_dim
    seq.append(_linear(in_dim, out_dim, ensemble))
    return nn.Sequential(*seq)


class ConditionedPredictor(nn.Module):
    """A policy-conditioned latent predictor ``T(x, a, z) = head([embed(x, a), embed(x, z)])``, an ensemble of
    ``ensemble`` independent members: ``x [B, in_dim], a [B, action_dim], z [B, z_dim] -> [E, B, out_dim]``
    (``E = 1`` gives ``[1, B, out_dim]`` too, so callers always reduce over the first dimension)."""

    def __init__(self, in_dim: int, z_dim: int, action_dim: int, out_dim: int, hidden_dim: int = 1024,
                 hidden_layers: int = 1, embedding_layers: int = 2, ensemble: int = 2) -> None:
        super().__init__()
        self.in_dim, self.z_dim, self.action_dim, self.out_dim = in_dim, z_dim, action_dim, out_dim
        self.ensemble = ensemble
        self.embed_z = _Embedding(in_dim + z_dim, hidden_dim, embedding_layers, ensemble)
        self.embed_a = _Embedding(in_dim + action_dim, hidden_dim, embedding_layers, ensemble)
        self.head = _head(2 * (hidden_dim // 2), hidden_dim, out_dim, hidden_layers, ensemble)

    def forward(self, x: torch.Tensor, action: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        xz, xa = torch.cat([x, z], -1), torch.cat([x, action], -1)
        if self.ensemble > 1:
            xz, xa = xz.expand(self.ensemble, *xz.shape), xa.expand(self.ensemble, *xa.shape)
        out = self.head(torch.cat([self.embed_a(xa), self.embed_z(xz)], -1))
        return out if self.ensemble > 1 else out.unsqueeze(0)


class LatentActor(nn.Module):
    """A deterministic actor ``mu(x, z) = tanh(head([embed(x), embed(x, z)]))`` in ``(-1, 1)`` (TD3 in latent
    space: x is the state's features, z the task)."""

    def __init__(self, in_dim: int, z_dim: int, action_dim: int, hidden_dim: int = 1024, hidden_layers: int = 1,
                 embedding_layers: int = 2) -> None:
        super().__init__()
        self.in_dim, self.z_dim, self.action_dim = in_dim, z_dim, action_dim
        self.embed_z = _Embedding(in_dim + z_dim, hidden_dim, embedding_layers, 1)
        self.embed_s = _Embedding(in_dim, hidden_dim, embedding_layers, 1)
        self.head = _head(2 * (hidden_dim // 2), hidden_dim, action_dim, hidden_layers, 1)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.head(torch.cat([self.embed_s(x), self.embed_z(torch.cat([x, z], -1))], -1)))


def truncated_normal_sample(mean: torch.Tensor, std: float, clip: float | None = None,
                            generator: torch.Generator | None = None, low: float = -1.0, high: float = 1.0,
                            eps: float = 1e-6) -> torch.Tensor:
    """TD3's clipped Gaussian policy: ``mean + clamp(std * N(0, 1), -clip, clip)``, then clamped to
    ``[low + eps, high - eps]`` with a straight-through gradient (the clamp does not stop the actor's gradient
    at the action bounds)."""
    noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype) * std
    if clip is not None:
        noise = noise.clamp(-clip, clip)
    x = mean + noise
    return x + (x.clamp(low + eps, high - eps) - x).detach()


def random_shift(images: torch.Tensor, pad: int = 4, generator: torch.Generator | None = None) -> torch.Tensor:
    """DrQ's random shift of a batch ``[B, C, H, W]``: replicate-pad by ``pad`` then crop ``H x W`` at an
    independent random integer offset per image (one gather, no per-sample loop)."""
    if pad <= 0:
        return images
    b, _, h, w = images.shape
    dtype = images.dtype
    x = images.float() if dtype == torch.uint8 else images  # replicate padding needs a float tensor
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    off = torch.randint(0, 2 * pad + 1, (b, 2), generator=generator, device=images.device)
    rows = off[:, :1] + torch.arange(h, device=images.device)  # [B, H]
    cols = off[:, 1:] + torch.arange(w, device=images.device)  # [B, W]
    out = padded[torch.arange(b, device=images.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return out.permute(0, 3, 1, 2).to(dtype)  # advanced indexing put the channel axis last


def orthogonal_init_(module: nn.Module) -> nn.Module:
    """Fresh weights for every layer of ``module``: orthogonal linear/conv weights (gain sqrt(2) for convs, which
    are followed by ReLUs), zero biases, default norms. Also gives a copied architecture its own initialization
    (e.g. psi's pixel trunk, a copy of phi's)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.orthogonal_(m.weight, nn.init.calculate_gain("relu"))
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.orthogonal_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, (EnsembleLinear, EnsembleLayerNorm, nn.LayerNorm)):
            m.reset_parameters()
    return module


class PixelEncoder(nn.Module):
    """The DrQ-v2 convolutional trunk (32 channels; 3x3 convs, the first with stride 2) and a
    ``Linear -> LayerNorm -> Tanh`` projection to ``out_dim`` features. Takes uint8 ``[B, C, H, W]`` frames
    (scaled to ``[-0.5, 0.5]``) or floats already in that range."""

    def __init__(self, in_chans: int = 3, image_size: int = 64, out_dim: int = 256, channels: int = 32) -> None:
        super().__init__()
        self.in_chans, self.image_size, self.out_dim = in_chans, image_size, out_dim
        side = (image_size - 3) // 2 + 1 - 6
        if side < 1:
            raise ValueError(f"PixelEncoder: image_size={image_size} is too small for the trunk (needs >= 15)")
        self.trunk = nn.Sequential(
            nn.Conv2d(in_chans, channels, 3, stride=2), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=1), nn.ReLU(), nn.Flatten())
        self.proj = nn.Sequential(nn.Linear(channels * side * side, out_dim), nn.LayerNorm(out_dim), nn.Tanh())
        orthogonal_init_(self)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4 or tuple(images.shape[1:]) != (self.in_chans, self.image_size, self.image_size):
            raise ValueError(f"PixelEncoder expects [B, {self.in_chans}, {self.image_size}, {self.image_size}] "
                             f"frames, got {list(images.shape)}")
        x = images.float() / 255.0 - 0.5 if images.dtype == torch.uint8 else images
        return self.proj(self.trunk(x))
