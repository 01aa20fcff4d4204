"""seq-JEPA (Ghaemi et al., "Autoregressive Predictive Learning of Invariant-Equivariant World Models").

A sequence of M views of one image, x_1..x_M, made by transformations with known parameters, and the
relative actions a_i = action(x_{i+1}) - action(x_i). The first K = M - 1 views are observed, x_M is held out:

    for each batch (views x [B, M, C, H, W], relative actions a [B, M-1, A]):
        z_i     <- encoder(x_i),                 i = 1..K                      (ResNet / pooled ViT, [B, D])
        e_i     <- BN(W a_i)                     linear without bias + batch-norm without affine, [B, Da]
        e_K     <- 0                             the action to the held-out view is hidden from the aggregator
        tokens  <- [AGG] ++ [z_i ; e_i]_{i=1..K}
        s       <- transformer(tokens)[AGG]      aggregate representation (3 layers, 4 heads), [B, D + Da]
        pred    <- MLP([s ; BN(W a_K)])          the next action conditions the predictor only
        target  <- teacher(x_M)                  EMA copy of the encoder, no gradient
        loss    <- 1 - cos(pred, target)
        step AdamW; teacher <- EMA(teacher, encoder)

Without action conditioning (``use_actions=False``, the paper's ablation) the tokens are the z_i alone and
the predictor sees s alone. Frozen evaluation: ``encode`` returns the aggregate of the first
``eval_seq_len`` views of a batch (all actions between them visible, the last one masked), the
representation the paper classifies linearly ("invariance"); ``view_features`` returns the encoder's
per-view outputs, from whose pairs the relative transformation is regressed ("equivariance").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from jepa_lightning.methods.base import JEPAModule, StepOutput
from jepa_lightning.nn.transformer import TransformerStack


def feature_dim(encoder: nn.Module) -> int:
    """Width of the encoder's pooled output: its ``num_features`` (ResNets) or ``embed_dim`` (ViTs)."""
    for name in ("num_features", "embed_dim"):
        dim = getattr(encoder, name, None)
        if isinstance(dim, int):
            return dim
    raise ValueError(f"seq-JEPA: encoder {type(encoder).__name__} has neither num_features nor embed_dim; use "
                     "jepa_lightning.nn.resnet.SmallResNet/TimmResNet or jepa_lightning.nn.VisionTransformer")


@contextmanager
def batch_statistics(network: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Inside the block, the BatchNorm layers of ``network`` (a target network, kept in eval mode) normalise with
    the statistics of the batch, as in train mode; their running statistics are left as they were."""
    norms = [m for m in network.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] if enabled else []
    saved = [(m.training, m.momentum) for m in norms]
    for m in norms:
        m.train()
        m.momentum = 0.0  # running <- (1 - 0) * running: unchanged
    try:
        yield
    finally:
        for m, (training, momentum) in zip(norms, saved):
            m.train(training)
            m.momentum = momentum


class SeqJEPA(JEPAModule):
    """seq-JEPA; see the module docstring for the algorithm.

    Args:
        encoder: per-view encoder, ``[N, C, H, W] -> [N, D]`` (a ResNet from :mod:`jepa_lightning.nn.resnet`) or
            ``[N, T, D]`` tokens (a ``VisionTransformer``), mean-pooled.
        action_dim: length ``A`` of the action vectors (the DataModule's ``action_dim``).
        use_actions: condition the aggregator and the predictor on actions (``False``: the ablation).
        action_embed_dim: width ``Da`` of the action embedding.
        agg_depth, agg_heads, agg_mlp_ratio: the aggregator transformer; ``D + Da`` (or ``D``) must be
            divisible by ``agg_heads``.
        agg_norm: the aggregator's blocks: ``"pre"`` (pre-norm GELU blocks, as every transformer here) or
            ``"post"`` (the reference code's: torch's post-norm ReLU ``TransformerEncoderLayer``, its layers
            initialised as copies of one, then a final LayerNorm).
        agg_dropout: dropout inside the ``"post"`` blocks (the reference: torch's default 0.1).
        predictor_hidden: hidden width of the predictor MLP (0: ``D``).
        train_seq_len: observed views per training sequence (``None``: all but the held-out one, ``M - 1``;
            fewer: the first ``train_seq_len`` views are observed and view ``train_seq_len + 1`` is predicted).
        eval_seq_len: views aggregated by ``encode`` for frozen evaluation (``None``: all views of the batch).
        eval_encoder: which network makes the views' features in ``encode``/``view_features``: the trained
            ``encoder`` (default, as the paper) or the EMA ``teacher``.
        target_norm: how the EMA teacher's BatchNorm layers normalise the target view: ``"running"`` (default:
            the running statistics, copied from the student at every EMA step, as any target network here) or
            ``"batch"`` (the statistics of the target views of the batch, as the reference code, whose target
            ResNet runs in train mode). Inert for encoders without BatchNorm.
        kwargs: the optimizer/schedule/EMA settings of :class:`JEPAModule` (lr, warmup, weight_decay, ema, ...).
    """

    def __init__(self, encoder: nn.Module, action_dim: int, use_actions: bool = True, action_embed_dim: int = 64,
                 agg_depth: int = 3, agg_heads: int = 4, agg_mlp_ratio: float = 4.0,
                 agg_norm: Literal["pre", "post"] = "pre", agg_dropout: float = 0.0, predictor_hidden: int = 0,
                 train_seq_len: int | None = None, eval_seq_len: int | None = None,
                 eval_encoder: str = "encoder", input_key: str = "views", target_norm: str = "running",
                 **kwargs: Any) -> None:
        dim = feature_dim(encoder)
        if target_norm not in ("running", "batch"):
            raise ValueError(f"seq-JEPA: target_norm must be 'running' or 'batch', got {target_norm!r}")
        if action_dim < 1 or action_embed_dim < 1:
            raise ValueError(f"seq-JEPA: action_dim and action_embed_dim must be >= 1, got {action_dim}, "
                             f"{action_embed_dim}")
        if agg_norm not in ("pre", "post"):
            raise ValueError(f"seq-JEPA: agg_norm must be 'pre' or 'post', got {agg_norm!r}")
        if agg_dropout and agg_norm == "pre":
            raise ValueError(f"seq-JEPA: agg_dropout={agg_dropout} applies to agg_norm='post' blocks only")
        for name, value in (("train_seq_len", train_seq_len), ("eval_seq_len", eval_seq_len)):
            if value is not None and value < 1:
                raise ValueError(f"seq-JEPA: {name} must be >= 1 or null, got {value}")
        token_dim = dim + action_embed_dim if use_actions else dim
        if token_dim % agg_heads:
            raise ValueError(f"seq-JEPA: aggregator width {token_dim} (encoder {dim}"
                             + (f" + action embedding {action_embed_dim}" if use_actions else "")
                             + f") is not divisible by agg_heads={agg_heads}")
        hidden = predictor_hidden or dim
        pred_in = token_dim + action_embed_dim if use_actions else token_dim
        predictor = nn.Sequential(nn.Linear(pred_in, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                  nn.Linear(hidden, dim))
        super().__init__(encoder, predictor, input_key=input_key, eval_encoder=eval_encoder, **kwargs)
        self.dim, self.token_dim, self.use_actions = dim, token_dim, use_actions
        self.train_seq_len, self.eval_seq_len, self.target_norm = train_seq_len, eval_seq_len, target_norm
        self.action_embed = (nn.Sequential(nn.Linear(action_dim, action_embed_dim, bias=False),
                                           nn.BatchNorm1d(action_embed_dim, affine=False))
                             if use_actions else None)
        self.action_dim = action_dim
        self.agg_token = nn.Parameter(torch.zeros(1, 1, token_dim))
        nn.init.trunc_normal_(self.agg_token, std=0.02)
        if agg_norm == "pre":
            self.aggregator: nn.Module = TransformerStack(token_dim, agg_depth, agg_heads, agg_mlp_ratio)
        else:
            layer = nn.TransformerEncoderLayer(token_dim, agg_heads, int(token_dim * agg_mlp_ratio), agg_dropout,
                                               activation="relu", batch_first=True, norm_first=False)
            self.aggregator = nn.Sequential(nn.TransformerEncoder(layer, agg_depth, enable_nested_tensor=False),
                                            nn.LayerNorm(token_dim))

    # ------------------------------------------------------------------------------------------ networks
    @staticmethod
    def _pool(h: torch.Tensor) -> torch.Tensor:
        return h.mean(1) if h.dim() == 3 else h

    def _encode_views(self, network: nn.Module, views: torch.Tensor) -> torch.Tensor:
        """``[B, K, C, H, W] -> [B, K, D]``: all views of the batch in one forward pass."""
        b, k = views.shape[:2]
        return self._pool(network(views.flatten(0, 1))).view(b, k, -1)

    def _embed_actions(self, a: torch.Tensor) -> torch.Tensor:
        """``[B, K, A] -> [B, K, Da]`` (K may be 0)."""
        b, k, _ = a.shape
        if k == 0:
            return a.new_zeros(b, 0, self.action_embed[1].num_features)
        return self.action_embed(a.flatten(0, 1).float()).view(b, k, -1)

    def aggregate(self, z: torch.Tensor, rel_actions: torch.Tensor | None) -> torch.Tensor:
        """The [AGG] output ``[B, D + Da]`` over view features ``z`` ``[B, K, D]``.

        ``rel_actions`` ``[B, K - 1, A]`` are the visible actions (view i -> i+1, i < K); the last view's action
        token is zero, whatever comes next. Ignored when ``use_actions`` is false."""
        b, k, _ = z.shape
        if self.use_actions:
            if rel_actions is None or rel_actions.shape[:2] != (b, k - 1) or rel_actions.shape[2] != self.action_dim:
                got = None if rel_actions is None else tuple(rel_actions.shape)
                raise ValueError(f"seq-JEPA: expected relative actions of shape {(b, k - 1, self.action_dim)} for "
                                 f"{k} views, got {got}; set model.init_args.action_dim to the DataModule's "
                                 "action_dim")
            e = self._embed_actions(rel_actions)
            e = torch.cat([e, e.new_zeros(b, 1, e.shape[-1])], 1)  # the last observed view's action is masked
            z = torch.cat([z, e.to(z.dtype)], -1)
        tokens = torch.cat([self.agg_token.expand(b, -1, -1).to(z.dtype), z], 1)
        return self.aggregator(tokens)[:, 0]

    def predict_next(self, s: torch.Tensor, next_action: torch.Tensor | None) -> torch.Tensor:
        """Predictor: the aggregate ``s`` [B, D + Da] (+ the embedded next action, when conditioned) -> [B, D]."""
        if self.use_actions:
            s = torch.cat([s, self._embed_actions(next_action[:, None])[:, 0].to(s.dtype)], -1)
        return self.predictor(s)

    # ------------------------------------------------------------------------------------------ objective
    def forward_loss(self, views: torch.Tensor, rel_actions: torch.Tensor) -> StepOutput:
        """(loss, targets [B, D], aggregate [B, D + Da] (detached), predictions [B, D], the aggregate with gradients:
        what `sigreg_weight` regularises) for views ``[B, M, ...]`` and ``rel_actions`` ``[B, M-1, A]``."""
        m = views.shape[1]
        k = m - 1 if self.train_seq_len is None else self.train_seq_len
        if not 1 <= k <= m - 1:
            raise ValueError(f"seq-JEPA: train_seq_len={self.train_seq_len} needs sequences of at least "
                             f"{self.train_seq_len + 1} views, the batch has {m}; raise data seq_len")
        with torch.no_grad(), batch_statistics(self.target_network, self.target_norm == "batch"):
            target = self._pool(self.target(views[:, k]))                       # [B, D]
        z = self._encode_views(self.encoder, views[:, :k])                     # [B, K, D]
        s = self.aggregate(z, rel_actions[:, :k - 1])
        pred = self.predict_next(s, rel_actions[:, k - 1])
        loss = 1.0 - F.cosine_similarity(pred.float(), target.float(), dim=-1).mean()
        return StepOutput(loss, target, s.detach(), pred, s)

    def objective(self, batch: dict[str, Any]) -> StepOutput:
        return self.forward_loss(batch[self.input_key], batch["rel_actions"])

    # ------------------------------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def view_features(self, views: torch.Tensor) -> torch.Tensor:
        """Encoder outputs ``[B, K, D]`` of the evaluation network for views ``[B, K, C, H, W]``."""
        return self._encode_views(self.eval_network, views)

    @torch.no_grad()
    def aggregate_views(self, views: torch.Tensor, rel_actions: torch.Tensor | None,
                        seq_len: int | None = None) -> torch.Tensor:
        """The aggregate ``[B, D + Da]`` of the first ``seq_len`` views (default ``eval_seq_len``, else all)."""
        k = views.shape[1] if seq_len is None else seq_len
        if not 1 <= k <= views.shape[1]:
            raise ValueError(f"seq-JEPA: cannot aggregate {k} views of a batch with {views.shape[1]} views per "
                             "sequence; raise data val_seq_len or lower model eval_seq_len")
        z = self.view_features(views[:, :k])
        return self.aggregate(z, None if rel_actions is None else rel_actions[:, :k - 1])

    @torch.no_grad()
    def encode(self, batch: dict[str, Any]) -> torch.Tensor:
        """Frozen-evaluation representation: the aggregate as one token, ``[B, 1, D + Da]``."""
        views = batch[self.input_key]
        return self.aggregate_views(views, batch.get("rel_actions"), self.eval_seq_len)[:, None]
