"""TD-JEPA (Bagatella et al., "Latent-predictive Representations for Zero-Shot Reinforcement Learning"):
self-predictive representations learned by temporal-difference latent prediction, with a zero-shot policy.

A state encoder phi, a task encoder psi (both rescaled to norm sqrt(d)), and two policy-conditioned
predictors (each an ensemble of E = 2 members) learn from reward-free transitions (s, a, s'):

* ``T_phi(phi(s), a, z)`` predicts, in psi space, the discounted sum of the FUTURE task features under the
  policy pi_z:  ``T_phi(phi(s), a, z) ~ E[ sum_{t>=0} gamma^t psi(s_{t+1}) | s_0 = s, a_0 = a, pi_z ]``.
  It is the successor-feature map of the task features, so ``Q(s, a, z) = <T_phi(phi(s), a, z), z>`` is the
  value of pi_z for any reward ``r(s') = <psi(s'), z>``.
* ``T_psi(psi(s), a, z)`` predicts, in phi space, the same sum of future STATE features
  ``sum_{t>=0} gamma^t phi(s_{t+1})`` (asymmetric variant only): it makes psi predictive of the future too.

Training step (the reference's ``update``; targets with bars are EMA copies)::

    z       <- uniform on the sphere of radius sqrt(d_z), each row replaced with probability `train_goal_ratio`
               by an encoded goal sphere(psi(s'_j)) of a permuted next state of the batch      (no grad)
    a'      <- mu(phi_bar(s'), z) + clip(N(0, actor_std^2), -stddev_clip, stddev_clip), clamped to [-1, 1]
    y_phi   <- psi_bar(s') + gamma (1 - terminal) * reduce_E T_phi_bar(phi_bar(s'), a', z)   [B, d_psi]
    y_psi   <- phi_bar(s') + gamma (1 - terminal) * reduce_E T_psi_bar(psi_bar(s'), a', z)   [B, d_phi]
    L_td    <- mean_{E,B} ||T_phi(phi(s), a, z)_e - y_phi||^2 + mean_{E,B} ||T_psi(psi(s), a, z)_e - y_psi||^2
               (squared error SUMMED over feature dimensions, averaged over ensemble members and batch;
               every member regresses on the same reduced target)
    L_orth  <- c_phi O(phi(s)) + c_psi O(psi(s)),  O(F) = -mean_i C_ii + 1/2 mean_{i!=j} C_ij^2,  C = F F^T [B, B]
               (the FB-style orthonormality regularizer: E[<f(s), f(s')>^2] pushes features of different
               states apart, the diagonal keeps their norms up; with sphere-rescaled features C_ii = d)
    a_pi    <- mu(sg phi(s), z) + clipped noise;  Q_e = <T_phi(sg phi(s), a_pi, z)_e, z>
    L_actor <- -mean_B reduce_E Q_e   (gradient to the actor only: the predictor's weights are detached)
    step Adam on L_td + L_orth + L_actor; EMA-update phi_bar, psi_bar, T_phi_bar, T_psi_bar

``reduce_E`` is the ensemble mean minus ``pessimism`` times the mean absolute pairwise difference of the
members (the reference's ``get_targets_uncertainty``); with the defaults (pessimism 0) it is the plain mean.

The symmetric variant (``symmetric=True``) has psi = phi: one encoder, one predictor ``T_phi(phi(s), a, z)``
predicting ``sum gamma^t phi(s_{t+1})`` in phi space, z in phi space, and one orthonormality term.

Zero-shot inference (``infer_z``): given states s'_i and rewards r_i of a task, ``z = sphere(argmin_w
sum_i (<psi(s'_i), w> - r_i)^2 + ridge)``; the agent then acts with pi_z (``act``, the actor's mean).

Pixels: with a ``pixel_encoder`` (a CNN, e.g. :class:`~jepa_lightning.nn.rl.PixelEncoder`) the encoders read
CNN features of randomly shifted frames (``batch["pixels"]``/``["next_pixels"]``); psi gets its own CNN (a
freshly initialized copy). As in the reference, the CNN is trained through the online branch only, has no
EMA copy, and the next frames are encoded by the online CNN without gradient before the target heads.

Why not ``JEPAModule``: TD-JEPA has four trained networks plus an actor, four EMA targets, per-part learning
rates, and a reward-free RL objective instead of masks; it subclasses ``LightningModule`` and reuses the
project's ``EMATeacher``, ``step_generator`` and ``linear`` schedule. One Adam optimizer with one parameter group
per part (phi, psi, predictors, actor) is equivalent to the reference's five Adam optimizers (Adam is
per-parameter); the actor's loss reaches only the actor because it is computed with detached encoder features
and detached predictor weights. Unlike the reference, the actor is updated in the same step as the
representation (with the pre-step predictor) rather than right after it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from torch import nn
from torch.func import functional_call

from jepa_lightning.eval.rankme import effective_rank
from jepa_lightning.masks import step_generator
from jepa_lightning.nn.rl import (
    ConditionedPredictor,
    LatentActor,
    orthogonal_init_,
    random_shift,
    sphere,
    truncated_normal_sample,
)
from jepa_lightning.optim import linear
from jepa_lightning.targets import EMATeacher, TargetNetwork


# --------------------------------------------------------------------------- the loss terms, as functions
def ensemble_reduce(members: torch.Tensor, pessimism: float = 0.0) -> torch.Tensor:
    """Reduce an ensemble ``[E, ...]`` to ``[...]``: mean minus ``pessimism`` times the mean absolute difference
    over ordered pairs of distinct members (0 for a single member)."""
    mean = members.mean(0)
    e = members.shape[0]
    if pessimism == 0.0 or e < 2:
        return mean
    diffs = (members.unsqueeze(0) - members.unsqueeze(1)).abs().sum((0, 1)) / (e * e - e)
    return mean - pessimism * diffs


def td_target(next_features: torch.Tensor, next_predictions: torch.Tensor, discount: torch.Tensor,
              pessimism: float = 0.0) -> torch.Tensor:
    """The TD latent target ``f_bar(s') + discount * reduce_E T_bar(s', a', z)``: ``next_features [B, d]``,
    ``next_predictions [E, B, d]``, ``discount [B]`` (gamma times 1 - terminal) -> ``[B, d]``."""
    return next_features + discount.unsqueeze(-1) * ensemble_reduce(next_predictions, pessimism)


def td_latent_loss(predictions: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean_{E,B} ||pred_e - target||^2``: squared error summed over features, averaged over members and batch
    (``predictions [E, B, d]``, ``target [B, d]``)."""
    return (predictions - target.unsqueeze(0)).pow(2).sum(-1).mean()


def orthonormality_loss(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The FB-style orthonormality regularizer on a batch of features ``[B, d]``: with ``C = F F^T``,
    ``-mean_i C_ii + 1/2 mean_{i != j} C_ij^2``. Returns (loss, diagonal term, off-diagonal term)."""
    b = features.shape[0]
    cov = features @ features.T
    diag = -cov.diagonal().mean()
    off = 0.5 * (cov.pow(2).sum() - cov.diagonal().pow(2).sum()) / max(b * b - b, 1)
    return diag + off, diag, off


# --------------------------------------------------------------------------------------------- the method
class TDJEPA(LightningModule):
    """TD-JEPA on transition batches of ``OfflineRLDataModule(mode="transitions")``: ``obs [B, D]``,
    ``action [B, A]``, ``next_obs [B, D]``, ``terminal [B]`` (and ``pixels``/``next_pixels`` uint8
    ``[B, C, H, W]`` with a ``pixel_encoder``). See the module docstring for the algorithm.

    Args:
        phi_encoder: the state encoder phi (e.g. ``jepa_lightning.nn.rl.StateEncoder``); must have ``in_dim``
            (observation size, or the pixel encoder's ``out_dim``) and ``out_dim`` (d_phi).
        action_dim: the action size A (actions in ``[-1, 1]``).
        psi_encoder: the task encoder psi (asymmetric variant); must be None when ``symmetric``.
        symmetric: psi = phi (one encoder, one predictor).
        pixel_encoder: a CNN mapping frames to ``in_dim`` features; set to learn from pixels.
        shift_pad: random-shift augmentation of frames (pixels of padding; 0 disables it).
        predictor_hidden_dim, predictor_hidden_layers, predictor_embedding_layers, ensemble: the predictors'
            architecture (:class:`~jepa_lightning.nn.rl.ConditionedPredictor`) and ensemble size.
        actor_hidden_dim, actor_hidden_layers, actor_embedding_layers: the actor's architecture.
        actor_std, stddev_clip: the truncated-normal noise of the actor (exploration in the actor loss,
            target-policy smoothing in the TD target).
        discount: gamma.
        lr_phi, lr_psi, lr_predictor, lr_actor: Adam learning rates per part; ``warmup_steps``: linear warm-up
            of all of them from 0 (step-based; 0: none). ``weight_decay``: Adam's (L2) weight decay.
        encoder_ema, predictor_ema: EMA momentum of the target encoders / predictors (1 - the reference's tau),
            linear from the first to the second value over training.
        phi_ortho_coef, psi_ortho_coef: weights of the orthonormality regularizers.
        train_goal_ratio: fraction of training z's that are encoded goals (the rest uniform on the sphere).
        predictor_pessimism, actor_pessimism: ensemble pessimism in the TD target and in the actor's Q.
        bc_coef: TD3+BC-style behaviour cloning weight in the actor loss (0: pure TD3 actor, the reference's
            default).
        inference_ridge: ridge of the reward regression in ``infer_z``, relative to the features' mean
            second moment (0: plain least squares).
        seed: z, goals and noise of step t come from a generator seeded by (seed, rank, t).
        nonfinite: on a non-finite loss stop with an error (``raise``) or skip the step (``skip``).
    """

    module_arguments = ("phi_encoder", "psi_encoder", "pixel_encoder")

    def __init__(self, phi_encoder: nn.Module, action_dim: int, psi_encoder: nn.Module | None = None,
                 symmetric: bool = False, pixel_encoder: nn.Module | None = None, shift_pad: int = 4,
                 predictor_hidden_dim: int = 1024, predictor_hidden_layers: int = 1,
                 predictor_embedding_layers: int = 2, ensemble: int = 2, actor_hidden_dim: int = 1024,
                 actor_hidden_layers: int = 1, actor_embedding_layers: int = 2, actor_std: float = 0.2,
                 stddev_clip: float = 0.3, discount: float = 0.98, lr_phi: float = 1e-4, lr_psi: float = 1e-4,
                 lr_predictor: float = 1e-4, lr_actor: float = 1e-4, weight_decay: float = 0.0,
                 warmup_steps: int = 0, encoder_ema: tuple[float, float] = (0.999, 0.999),
                 predictor_ema: tuple[float, float] = (0.999, 0.999), phi_ortho_coef: float = 0.1,
                 psi_ortho_coef: float = 0.1, train_goal_ratio: float = 0.5, predictor_pessimism: float = 0.0,
                 actor_pessimism: float = 0.0, bc_coef: float = 0.0, inference_ridge: float = 1e-6,
                 seed: int = 0, nonfinite: Literal["raise", "skip"] = "raise") -> None:
        super().__init__()
        self.save_hyperparameters(ignore=list(self.module_arguments))
        for name, enc in (("phi_encoder", phi_encoder), ("psi_encoder", psi_encoder)):
            if enc is not None and not (isinstance(getattr(enc, "in_dim", None), int)
                                        and isinstance(getattr(enc, "out_dim", None), int)):
                raise ValueError(f"TDJEPA: {name} ({type(enc).__name__}) must have integer attributes `in_dim` and "
                                 "`out_dim` (e.g. jepa_lightning.nn.rl.StateEncoder)")
        if symmetric and psi_encoder is not None:
            raise ValueError("TDJEPA: symmetric=True uses psi = phi; remove model.init_args.psi_encoder")
        if not symmetric and psi_encoder is None:
            raise ValueError("TDJEPA: the asymmetric variant needs model.init_args.psi_encoder (or set symmetric=true)")
        if not 0.0 <= train_goal_ratio <= 1.0:
            raise ValueError(f"TDJEPA: train_goal_ratio must be in [0, 1], got {train_goal_ratio}")
        if not 0.0 < discount < 1.0:
            raise ValueError(f"TDJEPA: discount must be in (0, 1), got {discount}")
        if nonfinite not in ("raise", "skip"):
            raise ValueError(f"TDJEPA: nonfinite must be 'raise' or 'skip', got {nonfinite!r}")
        if pixel_encoder is not None:
            pix_out = getattr(pixel_encoder, "out_dim", None)
            if pix_out != phi_encoder.in_dim or (psi_encoder is not None and psi_encoder.in_dim != pix_out):
                raise ValueError(f"TDJEPA: pixel_encoder.out_dim ({pix_out}) must equal the in_dim of phi_encoder "
                                 f"({phi_encoder.in_dim}) and psi_encoder "
                                 f"({None if psi_encoder is None else psi_encoder.in_dim})")
        self.symmetric, self.action_dim, self.shift_pad = symmetric, action_dim, shift_pad
        self.actor_std, self.stddev_clip, self.discount = actor_std, stddev_clip, discount
        self.lrs = {"phi": lr_phi, "psi": lr_psi, "predictor": lr_predictor, "actor": lr_actor}
        self.weight_decay, self.warmup_steps = weight_decay, warmup_steps
        self.encoder_ema, self.predictor_ema = tuple(encoder_ema), tuple(predictor_ema)
        self.phi_ortho_coef, self.psi_ortho_coef = phi_ortho_coef, psi_ortho_coef
        self.train_goal_ratio, self.bc_coef = train_goal_ratio, bc_coef
        self.predictor_pessimism, self.actor_pessimism = predictor_pessimism, actor_pessimism
        self.inference_ridge, self.seed, self.nonfinite = inference_ridge, seed, nonfinite
        self.obs_dim = phi_encoder.in_dim  # the raw observation size when learning from states
        self.phi_dim = phi_encoder.out_dim
        self.psi_dim = self.phi_dim if symmetric else psi_encoder.out_dim
        self.z_dim = self.psi_dim

        self.phi_encoder = phi_encoder
        self.pixel_encoder = pixel_encoder
        pred = dict(hidden_dim=predictor_hidden_dim, hidden_layers=predictor_hidden_layers,
                    embedding_layers=predictor_embedding_layers, ensemble=ensemble)
        self.phi_predictor = ConditionedPredictor(self.phi_dim, self.z_dim, action_dim, self.z_dim, **pred)
        self.actor = LatentActor(self.phi_dim, self.z_dim, action_dim, actor_hidden_dim, actor_hidden_layers,
                                 actor_embedding_layers)
        self.phi_encoder_target = EMATeacher(phi_encoder)
        self.phi_predictor_target = EMATeacher(self.phi_predictor)
        if not symmetric:
            self._psi_encoder = psi_encoder
            self.psi_pixel_encoder = (orthogonal_init_(copy.deepcopy(pixel_encoder))
                                      if pixel_encoder is not None else None)
            self.psi_predictor = ConditionedPredictor(self.psi_dim, self.z_dim, action_dim, self.phi_dim, **pred)
            self.psi_encoder_target = EMATeacher(psi_encoder)
            self.psi_predictor_target = EMATeacher(self.psi_predictor)
        self.total_steps = 1  # set by configure_optimizers from the Trainer
        self._checked = False

    # ------------------------------------------------------------------------------ the networks
    @property
    def psi_encoder(self) -> nn.Module:
        return self.phi_encoder if self.symmetric else self._psi_encoder

    @property
    def pixels(self) -> bool:
        return self.pixel_encoder is not None

    def _pixel_trunk(self, which: str) -> nn.Module | None:
        if not self.pixels:
            return None
        return self.pixel_encoder if which == "phi" or self.symmetric else self.psi_pixel_encoder

    def _trunk(self, x: torch.Tensor, which: str) -> torch.Tensor:
        trunk = self._pixel_trunk(which)
        return x if trunk is None else trunk(x)

    @torch.no_grad()
    def phi(self, x: torch.Tensor) -> torch.Tensor:
        """phi of observations ``[N, D]`` (or frames ``[N, C, H, W]`` with a pixel encoder), online network."""
        return self.phi_encoder(self._trunk(x, "phi"))

    @torch.no_grad()
    def psi(self, x: torch.Tensor) -> torch.Tensor:
        """psi of observations (or frames), online network; phi in the symmetric variant."""
        return self.psi_encoder(self._trunk(x, "psi"))

    def sample_z(self, n: int, generator: torch.Generator | None = None,
                 goals: torch.Tensor | None = None) -> torch.Tensor:
        """``n`` task vectors uniform on the sphere of radius sqrt(d_z); with ``goals [n, d_z]`` (encoded next
        states), each row is replaced with probability ``train_goal_ratio`` by ``sphere`` of a randomly
        permuted goal."""
        device = self.device if goals is None else goals.device
        z = sphere(torch.randn(n, self.z_dim, generator=generator, device=device))
        if goals is None or self.train_goal_ratio == 0.0:
            return z
        perm = torch.randperm(n, generator=generator, device=device)
        use_goal = torch.rand(n, 1, generator=generator, device=device) < self.train_goal_ratio
        return torch.where(use_goal, sphere(goals[perm]), z)

    # ------------------------------------------------------------------------------- the objective
    def _check(self, batch: dict[str, Any]) -> None:
        keys = ("pixels", "next_pixels") if self.pixels else ("obs", "next_obs")
        missing = [k for k in (*keys, "action") if k not in batch]
        if missing:
            raise KeyError(f"TDJEPA: the batch has no {missing} (keys: {sorted(batch)}); use "
                           f"OfflineRLDataModule(mode='transitions'{', pixels=True' if self.pixels else ''})")
        if batch["action"].shape[-1] != self.action_dim:
            raise ValueError(f"TDJEPA: batch['action'] has {batch['action'].shape[-1]} dimensions, but the model "
                             f"was built with action_dim={self.action_dim} (model.init_args.action_dim)")
        if not self.pixels and batch["obs"].shape[-1] != self.obs_dim:
            raise ValueError(f"TDJEPA: batch['obs'] has {batch['obs'].shape[-1]} dimensions, but phi_encoder."
                             f"in_dim={self.obs_dim} (model.init_args.phi_encoder.init_args.in_dim"
                             f"{'' if self.symmetric else ' and psi_encoder.init_args.in_dim'})")
        self._checked = True

    def encoder_inputs(self, batch: dict[str, Any], generator: torch.Generator | None = None,
                       augment: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(phi input at s, phi input at s', psi input at s, psi input at s'): the observations, or the CNN
        features of (randomly shifted) frames; the s' features carry no gradient."""
        if not self.pixels:
            obs, nxt = batch["obs"].float(), batch["next_obs"].float()
            return obs, nxt, obs, nxt
        frames, next_frames = batch["pixels"], batch["next_pixels"]
        if augment:
            frames = random_shift(frames, self.shift_pad, generator)
            next_frames = random_shift(next_frames, self.shift_pad, generator)
        phi_x = self._trunk(frames, "phi")
        with torch.no_grad():
            phi_xn = self._trunk(next_frames, "phi")
        if self.symmetric:
            return phi_x, phi_xn, phi_x, phi_xn
        psi_x = self._trunk(frames, "psi")
        with torch.no_grad():
            psi_xn = self._trunk(next_frames, "psi")
        return phi_x, phi_xn, psi_x, psi_xn

    @torch.no_grad()
    def td_targets(self, phi_xn: torch.Tensor, psi_xn: torch.Tensor, discount: torch.Tensor, z: torch.Tensor,
                   generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The TD latent targets from the EMA networks at s' (module docstring): ``"phi"`` ``[B, d_psi]`` for
        ``T_phi`` and, asymmetric, ``"psi"`` ``[B, d_phi]`` for ``T_psi``; the unreduced target-predictor
        members under ``"phi_members"`` ``[E, B, d_psi]`` / ``"psi_members"`` ``[E, B, d_phi]``."""
        next_phi = self.phi_encoder_target(phi_xn)
        next_psi = next_phi if self.symmetric else self.psi_encoder_target(psi_xn)
        next_action = truncated_normal_sample(self.actor(next_phi, z), self.actor_std, self.stddev_clip, generator)
        out = {"phi_members": self.phi_predictor_target(next_phi, next_action, z)}
        out["phi"] = td_target(next_psi, out["phi_members"], discount, self.predictor_pessimism)
        if not self.symmetric:
            out["psi_members"] = self.psi_predictor_target(next_psi, next_action, z)
            out["psi"] = td_target(next_phi, out["psi_members"], discount, self.predictor_pessimism)
        return out

    def actor_loss(self, phi_s: torch.Tensor, action: torch.Tensor, z: torch.Tensor,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``-mean_B reduce_E <T_phi(phi(s), a_pi, z)_e, z>`` with ``a_pi`` the actor's noisy action (plus the
        optional BC term); gradients reach the actor only. Returns (loss, mean Q)."""
        phi_s = phi_s.detach()
        a_pi = truncated_normal_sample(self.actor(phi_s, z), self.actor_std, self.stddev_clip, generator)
        frozen = {k: v.detach() for k, v in self.phi_predictor.named_parameters()}
        preds = functional_call(self.phi_predictor, frozen, (phi_s, a_pi, z))  # [E, B, d_z]
        qs = (preds * z.unsqueeze(0)).sum(-1)  # [E, B]
        q = ensemble_reduce(qs, self.actor_pessimism)
        loss = -q.mean()
        if self.bc_coef > 0:
            loss = loss / qs.abs().mean().detach().clamp_min(1e-6) + self.bc_coef * F.mse_loss(a_pi, action)
        return loss, q.mean().detach()

    def objective(self, batch: dict[str, Any], generator: torch.Generator | None = None,
                  augment: bool = True) -> dict[str, torch.Tensor]:
        """All loss terms of one step (module docstring); ``"loss"`` is their weighted sum, ``"phi"``/``"psi"``
        the online features of s (for the collapse signals)."""
        if not self._checked:
            self._check(batch)
        action = batch["action"].float()
        phi_x, phi_xn, psi_x, psi_xn = self.encoder_inputs(batch, generator, augment)
        terminal = batch.get("terminal")
        not_done = 1.0 - terminal.float() if terminal is not None else torch.ones(len(action), device=action.device)
        discount = self.discount * not_done
        with torch.no_grad():
            z = self.sample_z(len(action), generator, goals=self.psi_encoder(psi_xn))
        targets = self.td_targets(phi_xn, psi_xn, discount, z, generator)

        phi = self.phi_encoder(phi_x)
        out = {"td_phi": td_latent_loss(self.phi_predictor(phi, action, z), targets["phi"])}
        out["ortho_phi"], out["ortho_phi_diag"], out["ortho_phi_offdiag"] = orthonormality_loss(phi)
        loss = out["td_phi"] + self.phi_ortho_coef * out["ortho_phi"]
        psi = phi
        if not self.symmetric:
            psi = self.psi_encoder(psi_x)
            out["td_psi"] = td_latent_loss(self.psi_predictor(psi, action, z), targets["psi"])
            out["ortho_psi"], out["ortho_psi_diag"], out["ortho_psi_offdiag"] = orthonormality_loss(psi)
            loss = loss + out["td_psi"] + self.psi_ortho_coef * out["ortho_psi"]
        out["actor"], out["q"] = self.actor_loss(phi, action, z, generator)
        out["loss"] = loss + out["actor"]
        out["phi"], out["psi"] = phi.detach(), psi.detach()
        return out

    # ------------------------------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Any] | None, batch_idx: int):
        if batch is None:
            return None
        device = batch["action"].device
        g = step_generator(self.seed, self.global_rank, self.global_step, device)
        out = self.objective(batch, g)
        loss = out["loss"]
        finite = self.trainer.strategy.reduce_boolean_decision(bool(torch.isfinite(loss)), all=True)
        if not finite:
            where = f"non-finite loss ({loss.item()}) at global step {self.global_step} (batch {batch_idx})"
            if self.nonfinite == "raise":
                raise FloatingPointError(f"{where}; lower the learning rates, check the data, or set "
                                         "model.init_args.nonfinite=skip to skip such steps")
            rank_zero_warn(f"{where}: optimizer step skipped on every rank")
            return None
        self._log_terms("train", out, len(batch["action"]))
        return loss

    def _log_terms(self, stage: str, out: dict[str, torch.Tensor], bs: int) -> None:
        names = ["loss", "td_phi", "td_psi", "ortho_phi", "ortho_psi", "actor", "q"]
        for name in names:
            if name in out:
                self.log(f"{stage}/{name}", out[name].detach(), batch_size=bs, prog_bar=name == "loss")
        every = max(int(getattr(self.trainer, "log_every_n_steps", 1) or 1), 1)
        if stage != "train" or self.global_step % every == 0:  # collapse signals: an SVD, only when logged
            for name in ("phi", "psi") if not self.symmetric else ("phi",):
                feats = out[name].float()
                self.log(f"{stage}/{name}_rank", effective_rank(feats), batch_size=bs)
                self.log(f"{stage}/{name}_std", feats.std(0).mean(), batch_size=bs)
        if stage == "train":
            opt = self.optimizers(use_pl_optimizer=False)
            self.log("train/lr", opt.param_groups[0]["lr"], batch_size=bs)
            self.log("train/ema", self.momentum("encoder"), batch_size=bs)

    def validation_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        """The loss terms on held-out transitions (``val/*``); returns are logged by the zero-shot callback."""
        if batch is None:
            return None
        g = step_generator(self.seed, self.global_rank, batch_idx, batch["action"].device)
        self._log_terms("val", self.objective(batch, g, augment=False), len(batch["action"]))
        return None

    def test_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        return self.validation_step(batch, batch_idx)

    @torch.no_grad()
    def encode(self, batch: dict[str, Any]) -> torch.Tensor:
        """Frozen-evaluation features: phi of the batch's observations (or frames)."""
        return self.phi(batch["pixels"] if self.pixels else batch["obs"].float())

    # --------------------------------------------------------------------------- optimizer and EMA
    def trainable_modules(self) -> dict[str, list[nn.Module]]:
        parts = {"phi": [self.phi_encoder, self.pixel_encoder], "predictor": [self.phi_predictor],
                 "actor": [self.actor]}
        if not self.symmetric:
            parts["psi"] = [self._psi_encoder, self.psi_pixel_encoder]
            parts["predictor"].append(self.psi_predictor)
        return {k: [m for m in v if m is not None] for k, v in parts.items()}

    def configure_optimizers(self):
        self.total_steps = int(self.trainer.estimated_stepping_batches) if self._trainer is not None else 1
        groups = [{"params": [p for m in mods for p in m.parameters()], "lr": self.lrs[name], "name": name}
                  for name, mods in self.trainable_modules().items()]
        opt = torch.optim.Adam([g for g in groups if g["params"]], weight_decay=self.weight_decay)
        warmup = self.warmup_steps

        def factor(step: int) -> float:
            return linear(step, warmup, 0.0, 1.0) if warmup > 0 else 1.0

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def momentum(self, which: Literal["encoder", "predictor"]) -> float:
        m0, m1 = self.encoder_ema if which == "encoder" else self.predictor_ema
        return linear(self.global_step, self.total_steps, m0, m1)

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        self.update_targets()

    @torch.no_grad()
    def update_targets(self) -> None:
        """EMA step of the target encoders and predictors."""
        m_enc, m_pred = self.momentum("encoder"), self.momentum("predictor")
        self.phi_encoder_target.update(self.phi_encoder, m_enc)
        self.phi_predictor_target.update(self.phi_predictor, m_pred)
        if not self.symmetric:
            self.psi_encoder_target.update(self._psi_encoder, m_enc)
            self.psi_predictor_target.update(self.psi_predictor, m_pred)

    # ------------------------------------------------------------------------ zero-shot inference
    @torch.no_grad()
    def infer_z(self, inputs: torch.Tensor, reward: torch.Tensor, are_features: bool = False,
                chunk: int = 4096) -> torch.Tensor:
        """The task vector of a reward: ``z = sphere(argmin_w ||psi(s') w - r||^2 / N + lam ||w||^2)``, with
        ``lam = inference_ridge * mean_i ||psi(s'_i)||^2 / d`` (the reference: plain least squares, then the
        rescaling to norm sqrt(d_z)). ``inputs``: next observations ``[N, D]`` (frames with a pixel encoder), or
        psi features ``[N, d_z]`` with ``are_features=True``; ``reward [N]`` is the reward of reaching them.
        Returns ``z [d_z]``."""
        if are_features:
            feats = inputs.to(self.device)
        else:
            feats = torch.cat([self.psi(x.to(self.device).float() if not self.pixels else x.to(self.device))
                               for x in inputs.split(chunk)])
        r = torch.as_tensor(reward, device=feats.device).reshape(-1).double()
        if feats.dim() != 2 or feats.shape != (len(r), self.z_dim):
            raise ValueError(f"infer_z: features must be [N, {self.z_dim}] with N = len(reward) = {len(r)}, got "
                             f"{list(feats.shape)}")
        f = feats.double()
        n, d = f.shape
        gram, rhs = f.T @ f / n, f.T @ r / n
        lam = self.inference_ridge * gram.diagonal().mean()
        if lam > 0:
            w = torch.linalg.solve(gram + lam * torch.eye(d, dtype=f.dtype, device=f.device), rhs)
        else:
            w = torch.linalg.lstsq(f, r.unsqueeze(-1)).solution.squeeze(-1)
        return sphere(w).float()

    @torch.no_grad()
    def act(self, obs: torch.Tensor, z: torch.Tensor, noise: bool = False,
            generator: torch.Generator | None = None) -> torch.Tensor:
        """pi_z's action at observations ``[B, D]`` (or one ``[D]``; frames with a pixel encoder): the actor's
        mean, or a truncated-normal sample with ``noise=True``; ``z`` is ``[d_z]`` or ``[B, d_z]``."""
        single = obs.dim() == (3 if self.pixels else 1)
        x = obs.unsqueeze(0) if single else obs
        x = x.to(self.device) if self.pixels else x.to(self.device).float()
        feats = self.phi(x)
        z = z.to(feats).reshape(-1, self.z_dim).expand(len(feats), -1)
        a = self.actor(feats, z)
        if noise:
            a = truncated_normal_sample(a, self.actor_std, self.stddev_clip, generator)
        return a[0] if single else a

    def policy(self, z: torch.Tensor) -> Callable[[np.ndarray], np.ndarray]:
        """``obs (numpy) -> action (numpy)`` of pi_z, for :func:`jepa_lightning.rl.rollout.rollout`."""
        z = z.detach().to(self.device)

        def pi(obs: np.ndarray) -> np.ndarray:
            return self.act(torch.as_tensor(np.asarray(obs)), z).cpu().numpy().astype(np.float64)

        return pi

    def target_networks(self) -> list[TargetNetwork]:
        return [m for m in self.children() if isinstance(m, TargetNetwork)]
