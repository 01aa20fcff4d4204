"""ACT-JEPA (Vujinovic & Kovacevic, 2025): an action-chunking transformer policy (ACT, Zhao et al. 2023) that
also predicts the latents of the future observation sequence, JEPA style.

    for each batch (state s_t [B, D], actions a_{t..t+H-1} [B, H, A], future states s_{t+1..t+H} [B, H, D],
                    valid [B, H]: False past the episode's end, those steps are padding):
        c       <- encoder(s_t (+ image tokens of frame t))        context latents [B, N, E] (feature-group tokens)
        â       <- decoder(c)                                      H action queries cross-attend c -> [B, H, A]
        L_act   <- L1(â, a) over valid steps
        if jepa_weight > 0:
            y_k <- LayerNorm(mean_tokens(teacher(s_{t+k})))     EMA copy of the encoder, each future state alone,
                                                                   no grad -> [B, H, E]
            ŷ   <- predictor(c)                                   narrow decoder: H position queries -> [B, H, E]
            L_lat <- L1(ŷ, y) over valid steps
        loss    <- L_act + jepa_weight * L_lat
        step AdamW; teacher <- EMA(teacher, encoder), momentum 0.996 -> 1.0 over training   [JEPAModule]

``jepa_weight=0`` is the plain-ACT baseline: the same encoder and action decoder and the same action loss, with
no predictor and no teacher (nothing is built or run for the JEPA term).

Choices (where the paper or ACT leave them open):
- The target encoder is the EMA of the context encoder applied to each future proprioceptive state separately
  (mean-pooled tokens, layer-normed as I-JEPA's targets), so the "abstract observation sequence" is a sequence
  of per-step latents in the space the policy itself uses, and the EMA is of the very network being trained.
  The context has pixels when ``use_pixels`` is on; the targets are proprioceptive (the chunk batch carries the
  frame of step t only), the teacher simply sees no image tokens.
- No CVAE. ACT's CVAE style variable models the multi-modality of human teleoperation and is set to its prior
  mean (zero) at test time; the comparison here is with and without the JEPA term on the same deterministic
  policy, and the scripted demonstrations' bimodality (which way round the block) is resolved by the state once
  the agent has started moving, which chunking plus temporal ensembling handle.
- The decoders are DETR/ACT-style query decoders (self-attention among the H queries, cross-attention to the
  context, MLP; pre-norm), the predictor a narrower one; the encoder cuts the state into groups of features,
  one token each (``GroupTokenizer``), so attention has tokens to work with, plus image tokens from a small CNN.

Inference (:meth:`ACTJEPA.policy`): the chunk is predicted at every step and the actions predicted for the
current step by the last H chunks are averaged with ACT's weights ``w_i = exp(-m i)``, ``i = 0`` the oldest
prediction (:class:`TemporalEnsemble`); or, without ensembling, each chunk is executed open loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from jepa_lightning.methods.base import JEPAModule, StepOutput
from jepa_lightning.nn.pos_embed import sincos_1d, sincos_pos_embed
from jepa_lightning.nn.transformer import TransformerStack, init_vit_weights


# ---------------------------------------------------------------------------------------------- networks
class ImageTokens(nn.Module):
    """A small strided CNN: uint8 (or [0, 1] float) images [B, C, S, S] -> [B, (S/8)^2, dim] tokens with 2-D
    sin-cos positions (three stride-2 convolutions)."""

    def __init__(self, image_size: int = 64, in_chans: int = 3, channels: int = 32, dim: int = 128) -> None:
        super().__init__()
        if image_size % 8:
            raise ValueError(f"ImageTokens: image_size must be divisible by 8, got {image_size}")
        self.image_size, self.in_chans = image_size, in_chans
        self.net = nn.Sequential(nn.Conv2d(in_chans, channels, 4, 2, 1), nn.GELU(),
                                 nn.Conv2d(channels, channels, 4, 2, 1), nn.GELU(),
                                 nn.Conv2d(channels, dim, 4, 2, 1))
        grid = image_size // 8
        self.register_buffer("pos_embed", sincos_pos_embed((grid, grid), dim)[None], persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.shape[1:] != (self.in_chans, self.image_size, self.image_size):
            raise ValueError(f"ImageTokens expects images [B, {self.in_chans}, {self.image_size}, {self.image_size}]"
                             f", got {list(images.shape)}; set the encoder's image_size/in_chans to the data's")
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        return self.net(x - 0.5).flatten(2).transpose(1, 2) + self.pos_embed


class GroupTokenizer(nn.Module):
    """A flat state [B, D] -> [B, ceil(D / k), dim] tokens: consecutive groups of ``k`` features (zero-padded at
    the end) each get their own linear map, ``token_g = x[g k : (g+1) k] @ W_g + b_g`` (``k = 1`` is
    FT-Transformer's per-feature tokenizer). Each group has its own weights, so a token says where it comes
    from without a position embedding."""

    def __init__(self, in_dim: int, dim: int, features_per_token: int = 4) -> None:
        super().__init__()
        if in_dim < 1 or features_per_token < 1:
            raise ValueError(f"GroupTokenizer: in_dim and features_per_token must be >= 1, got {in_dim}, "
                             f"{features_per_token}")
        self.in_dim, self.k = int(in_dim), int(features_per_token)
        self.num_tokens = -(-self.in_dim // self.k)
        bound = self.k ** -0.5  # nn.Linear's default scale for fan-in k
        self.weight = nn.Parameter(torch.empty(self.num_tokens, self.k, dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(self.num_tokens, dim).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.num_tokens * self.k - self.in_dim
        x = F.pad(x, (0, pad)).view(x.size(0), self.num_tokens, self.k)
        return torch.einsum("bgk,gkd->bgd", x, self.weight) + self.bias


class StateEncoder(nn.Module):
    """The policy's (context) encoder: a proprioceptive state [B, obs_dim] -> one token per group of
    ``features_per_token`` features (:class:`GroupTokenizer`), plus image tokens when built with ``pixels=True``
    and given images -> a pre-norm transformer -> context latents [B, N, embed_dim]."""

    def __init__(self, obs_dim: int, embed_dim: int = 128, depth: int = 2, num_heads: int = 4,
                 features_per_token: int = 4, mlp_ratio: float = 4.0, drop_path_rate: float = 0.0,
                 pixels: bool = False, image_size: int = 64, in_chans: int = 3, cnn_channels: int = 32,
                 init_std: float = 0.02) -> None:
        super().__init__()
        if obs_dim < 1:
            raise ValueError(f"StateEncoder: obs_dim must be >= 1, got {obs_dim}")
        self.obs_dim, self.embed_dim, self.pixels = int(obs_dim), int(embed_dim), pixels
        self.tokenizer = GroupTokenizer(obs_dim, embed_dim, features_per_token)
        self.transformer = TransformerStack(embed_dim, depth, num_heads, mlp_ratio, drop_path_rate=drop_path_rate)
        init_vit_weights(self.transformer, init_std)
        self.image_tokens = ImageTokens(image_size, in_chans, cnn_channels, embed_dim) if pixels else None

    @property
    def image_size(self) -> int | None:
        return self.image_tokens.image_size if self.image_tokens is not None else None

    def forward(self, obs: torch.Tensor, pixels: torch.Tensor | None = None) -> torch.Tensor:
        if obs.dim() != 2 or obs.size(1) != self.obs_dim:
            raise ValueError(f"StateEncoder expects states [B, {self.obs_dim}], got {list(obs.shape)}; set "
                             f"model.init_args.encoder.init_args.obs_dim to the data's obs_dim")
        tokens = self.tokenizer(obs.float())
        if pixels is not None:
            if self.image_tokens is None:
                raise ValueError("StateEncoder got images but was built with pixels=false")
            tokens = torch.cat([tokens, self.image_tokens(pixels)], dim=1)
        return self.transformer(tokens)


class QueryDecoder(nn.Module):
    """DETR/ACT-style decoder: ``num_queries`` learned queries (+ 1-D sin-cos positions) attend to each other
    and cross-attend to the memory (context latents projected from ``in_dim`` to ``dim``), through ``depth``
    pre-norm layers; a final LayerNorm and a linear map to ``out_dim`` give [B, num_queries, out_dim].

    Used twice by ACT-JEPA: as the action decoder (``out_dim`` = action size, one query per step of the chunk)
    and, narrower, as the JEPA predictor (``out_dim`` = the encoder's width, one query per future step)."""

    def __init__(self, in_dim: int, out_dim: int, num_queries: int, dim: int = 128, depth: int = 2,
                 num_heads: int = 4, mlp_ratio: float = 4.0, dropout: float = 0.0, init_std: float = 0.02) -> None:
        super().__init__()
        if num_queries < 1 or dim % num_heads:
            raise ValueError(f"QueryDecoder: num_queries must be >= 1 and dim divisible by num_heads, got "
                             f"num_queries={num_queries}, dim={dim}, num_heads={num_heads}")
        self.in_dim, self.out_dim, self.num_queries, self.dim = int(in_dim), int(out_dim), int(num_queries), dim
        self.embed = nn.Linear(in_dim, dim) if in_dim != dim else nn.Identity()
        self.queries = nn.Parameter(torch.zeros(num_queries, dim))
        self.register_buffer("pos_embed", sincos_1d(torch.arange(num_queries), dim).float(), persistent=False)
        layer = nn.TransformerDecoderLayer(dim, num_heads, int(dim * mlp_ratio), dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.layers = nn.TransformerDecoder(layer, depth, norm=nn.LayerNorm(dim))
        self.proj = nn.Linear(dim, out_dim)
        init_vit_weights(self, init_std)
        nn.init.trunc_normal_(self.queries, std=init_std)

    def forward(self, memory: torch.Tensor) -> torch.Tensor:
        if memory.size(-1) != self.in_dim:
            raise ValueError(f"QueryDecoder expects memory of width in_dim={self.in_dim}, got {memory.size(-1)}; "
                             "set its in_dim to the encoder's embed_dim")
        q = (self.queries + self.pos_embed).to(memory.dtype).expand(memory.size(0), -1, -1)
        return self.proj(self.layers(q, self.embed(memory)))


# ---------------------------------------------------------------------------------------------- inference
class TemporalEnsemble:
    """ACT's temporal ensembling. Each step a new chunk of H actions (for steps t .. t+H-1) arrives; the action
    executed at step t averages the predictions for t of every chunk still covering it (issued at t-H+1 .. t),
    with weights ``exp(-decay * i)``, ``i = 0`` for the oldest, normalized to sum 1. ``decay > 0`` (ACT: 0.01)
    trusts old chunks more (smooth, slow to react); 0 is a plain average; ``decay < 0`` trusts the newest chunks
    more (reactive: on tasks whose control step is coarse compared with the dynamics, stale predictions hurt)."""

    def __init__(self, chunk: int, act_dim: int, decay: float = 0.01) -> None:
        if chunk < 1 or not np.isfinite(decay):
            raise ValueError(f"TemporalEnsemble: chunk must be >= 1 and decay finite, got {chunk}, {decay}")
        self.chunk, self.act_dim, self.decay = chunk, act_dim, decay
        self.reset()

    def reset(self) -> None:
        self.t = 0
        self.chunks = np.zeros((self.chunk, self.chunk, self.act_dim))  # slot = issue step mod H
        self.issued = np.full(self.chunk, -1, dtype=np.int64)

    def weights(self, n: int) -> np.ndarray:
        w = np.exp(-self.decay * np.arange(n))
        return w / w.sum()

    def __call__(self, chunk: np.ndarray) -> np.ndarray:
        """Add the chunk predicted at the current step; return the step's action and advance."""
        chunk = np.asarray(chunk, dtype=np.float64)
        if chunk.shape != (self.chunk, self.act_dim):
            raise ValueError(f"TemporalEnsemble expects a chunk [{self.chunk}, {self.act_dim}], got {chunk.shape}")
        slot = self.t % self.chunk
        self.chunks[slot], self.issued[slot] = chunk, self.t
        live = np.flatnonzero(self.issued >= 0)
        live = live[np.argsort(self.issued[live])]                 # oldest first
        preds = self.chunks[live, self.t - self.issued[live]]      # each chunk's action for step t
        self.t += 1
        return self.weights(len(live)) @ preds


class ChunkPolicy:
    """The rollout policy (``obs -> action``, ``reset()``) of a trained :class:`ACTJEPA`: queries the model for a
    chunk and executes it with temporal ensembling (``decay``), or open loop (one query every H steps) when
    ``decay`` is None. ``render`` gives the current frame [S, S, C] uint8 when the model uses pixels."""

    def __init__(self, model: ACTJEPA, decay: float | None = 0.01,
                 render: Callable[[], np.ndarray] | None = None) -> None:
        if model.use_pixels and render is None:
            raise ValueError("ACT-JEPA uses pixels: give the policy render=lambda: env.render(image_size)")
        self.model, self.render = model, render
        self.chunk, self.act_dim = model.decoder.num_queries, model.decoder.out_dim
        self.ensemble = TemporalEnsemble(self.chunk, self.act_dim, decay) if decay is not None else None
        self.reset()

    def reset(self) -> None:
        self.t, self.plan = 0, None
        if self.ensemble is not None:
            self.ensemble.reset()

    def _predict(self, obs: np.ndarray) -> np.ndarray:
        device = next(self.model.parameters()).device
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32), device=device)[None]
        pixels = None
        if self.model.use_pixels:
            pixels = torch.as_tensor(np.ascontiguousarray(self.render()), device=device).permute(2, 0, 1)[None]
        training = self.model.training
        self.model.eval()
        try:
            with torch.inference_mode():
                return self.model.predict_chunk(x, pixels)[0].float().cpu().numpy()
        finally:
            self.model.train(training)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        if self.ensemble is not None:
            action = self.ensemble(self._predict(obs))
        else:
            if self.t % self.chunk == 0:
                self.plan = self._predict(obs)
            action = self.plan[self.t % self.chunk]
        self.t += 1
        return np.clip(action, -1.0, 1.0)


# ---------------------------------------------------------------------------------------------- method
def masked_l1(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over the valid steps only: pred/target [B, H, C], valid bool [B, H]."""
    w = valid.to(pred.dtype).unsqueeze(-1)
    return ((pred.float() - target.float()).abs() * w).sum() / (w.sum() * pred.size(-1)).clamp_min(1.0)


class ACTJEPA(JEPAModule):
    """ACT-JEPA, and with ``jepa_weight=0`` plain ACT; see the module docstring for the algorithm.

    Args:
        encoder: the context encoder (``StateEncoder``); the EMA teacher is its copy.
        decoder: the action decoder (``QueryDecoder`` with ``num_queries`` = chunk length H, ``out_dim`` = action
            size, ``in_dim`` = the encoder's ``embed_dim``).
        predictor: the JEPA predictor (a narrower ``QueryDecoder`` with the same ``num_queries``,
            ``in_dim`` = ``out_dim`` = the encoder's ``embed_dim``); required when ``jepa_weight > 0``, dropped
            (not built into the model) when it is 0.
        jepa_weight: weight of the latent loss; 0 is the plain-ACT baseline (no predictor, no teacher).
        use_pixels: feed the batch's ``pixels`` (frame of step t) to the encoder (built with ``pixels=True``).
        ensemble_decay: ``m`` of the temporal-ensembling weights ``exp(-m i)`` of :meth:`policy` (ACT: 0.01);
            None executes each chunk open loop.
        kwargs: optimizer, schedule and EMA settings of :class:`JEPAModule` (lr, start_lr, final_lr, warmup,
            weight_decay, final_weight_decay, betas, ema, ...).
    """

    module_arguments = ("encoder", "decoder", "predictor")

    def __init__(self, encoder: StateEncoder, decoder: QueryDecoder, predictor: QueryDecoder | None = None,
                 jepa_weight: float = 1.0, use_pixels: bool = False, ensemble_decay: float | None = 0.01,
                 input_key: str = "obs", eval_encoder: str = "encoder", **kwargs: Any) -> None:
        if jepa_weight < 0:
            raise ValueError(f"ACT-JEPA: jepa_weight must be >= 0, got {jepa_weight}")
        width = encoder.embed_dim
        if decoder.in_dim != width:
            raise ValueError(f"ACT-JEPA: decoder in_dim={decoder.in_dim} must equal the encoder's embed_dim={width}")
        if jepa_weight > 0:
            if predictor is None:
                raise ValueError("ACT-JEPA: jepa_weight > 0 needs a predictor (model.init_args.predictor); "
                                 "set jepa_weight=0 for plain ACT")
            if (predictor.in_dim, predictor.out_dim) != (width, width) or predictor.num_queries != decoder.num_queries:
                raise ValueError(
                    f"ACT-JEPA: predictor (in_dim={predictor.in_dim}, out_dim={predictor.out_dim}, num_queries="
                    f"{predictor.num_queries}) must map the encoder's width {width} to {width} with the decoder's "
                    f"num_queries={decoder.num_queries} (the chunk length)")
        else:
            predictor = None
            kwargs["ema"] = None  # plain ACT: no target encoder at all
        if use_pixels and encoder.image_tokens is None:
            raise ValueError("ACT-JEPA: use_pixels=true needs an encoder built with pixels=true")
        super().__init__(encoder, predictor, input_key=input_key, eval_encoder=eval_encoder, **kwargs)
        self.decoder = decoder
        self.jepa_weight, self.use_pixels, self.ensemble_decay = float(jepa_weight), use_pixels, ensemble_decay

    @property
    def chunk(self) -> int:
        return self.decoder.num_queries

    # ------------------------------------------------------------------------------------------ objective
    def _inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
        pixels = None
        if self.use_pixels:
            if "pixels" not in batch:
                raise KeyError(f"ACT-JEPA: use_pixels=true but the batch has no 'pixels' (keys {sorted(batch)}); "
                               "set data.init_args.pixels=true")
            pixels = batch["pixels"]
        return batch["obs"], pixels

    def _check_chunk(self, batch: dict[str, Any]) -> None:
        for key in ("obs", "actions", "future_obs", "valid"):
            if key not in batch:
                raise KeyError(f"ACT-JEPA: batch has no '{key}' (keys {sorted(batch)}); use "
                               "OfflineRLDataModule(mode='chunks')")
        h, a = batch["actions"].shape[1:]
        if (h, a) != (self.chunk, self.decoder.out_dim):
            raise ValueError(f"ACT-JEPA: the data's chunks are [{h}, {a}] (chunk, action size) but the decoder "
                             f"predicts [{self.chunk}, {self.decoder.out_dim}]: set data.init_args.chunk and the "
                             "decoder's/predictor's num_queries and the decoder's out_dim to match")

    @torch.no_grad()
    def targets(self, future_obs: torch.Tensor) -> torch.Tensor:
        """JEPA targets of a future state sequence [B, H, D]: the teacher's layer-normed mean token per step,
        [B, H, E] (all B*H states in one batched forward pass)."""
        b, h, d = future_obs.shape
        y = self.teacher(future_obs.reshape(b * h, d)).mean(1)
        return F.layer_norm(y, y.shape[-1:]).view(b, h, -1)

    def losses(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``action`` (L1 over valid steps), ``latent`` (JEPA, when on), ``loss`` (weighted sum), ``targets``
        (the JEPA targets, or the actions for plain ACT: the collapse signal's input), ``features`` (the
        context's mean token, [B, E]), ``embeddings`` (the same with gradients: what `sigreg_weight` regularises)."""
        self._check_chunk(batch)
        obs, pixels = self._inputs(batch)
        valid = batch["valid"]
        z = self.encoder(obs, pixels)
        out = {"embeddings": z.mean(1), "targets": batch["actions"]}
        out["features"] = out["embeddings"].detach()
        out["action"] = masked_l1(self.decoder(z), batch["actions"], valid)
        out["loss"] = out["action"]
        if self.jepa_weight > 0:
            out["targets"] = self.targets(batch["future_obs"])
            out["latent"] = masked_l1(self.predictor(z), out["targets"], valid)
            out["loss"] = out["action"] + self.jepa_weight * out["latent"]
        return out

    def objective(self, batch: dict[str, Any]) -> StepOutput:
        out = self.losses(batch)
        bs = out["features"].size(0)
        if self._trainer is not None:
            self.log("train/action_loss", out["action"], batch_size=bs)
            if "latent" in out:
                self.log("train/latent_loss", out["latent"], batch_size=bs)
        return StepOutput(out["loss"], out["targets"], out["features"], embeddings=out["embeddings"])

    def validation_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        """``val/action_l1`` (and ``val/latent_l1``) on held-out demonstrations; rollouts are a callback's job
        (:class:`jepa_lightning.eval.rollouts.RolloutEvaluation`)."""
        if batch is None:
            return None
        out = self.losses(batch)
        bs = out["features"].size(0)
        self.log("val/action_l1", out["action"], batch_size=bs, sync_dist=True)
        if "latent" in out:
            self.log("val/latent_l1", out["latent"], batch_size=bs, sync_dist=True)
        return None

    # ------------------------------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def encode(self, batch: dict[str, Any]) -> torch.Tensor:
        """The policy encoder's context latents [B, N, E] of the batch's step-t inputs (frozen evaluation)."""
        obs, pixels = self._inputs(batch)
        return self.eval_network(obs, pixels)

    @torch.no_grad()
    def predict_chunk(self, obs: torch.Tensor, pixels: torch.Tensor | None = None) -> torch.Tensor:
        """Action chunk [B, H, A] for states [B, D] (and frames [B, C, S, S] when the model uses pixels)."""
        return self.decoder(self.encoder(obs, pixels if self.use_pixels else None))

    def policy(self, decay: float | None | str = "default",
               render: Callable[[], np.ndarray] | None = None) -> ChunkPolicy:
        """A rollout policy (``jepa_lightning.rl.rollout``) with temporal ensembling of weight decay ``decay``
        (default: the model's ``ensemble_decay``; None: open-loop chunks)."""
        return ChunkPolicy(self, self.ensemble_decay if decay == "default" else decay, render)
