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
rates, and a reward-free RL objective instead of masks. What it shares with the forward-backward baseline
(``fb.py``) lives in :class:`~jepa_lightning.methods.zero_shot_agent.ZeroShotAgent`: the data interface, encoder
inputs, z sampling, the actor, parameter groups and EMA targets, ``infer_z``/``act``/``policy``. One Adam optimizer
with one parameter group per part (phi, psi, predictors, actor) is equivalent to the reference's five Adam
optimizers (Adam is per-parameter); the actor's loss reaches only the actor because it is computed with detached
encoder features and detached predictor weights. Unlike the reference, the actor is updated in the same step as the
representation (with the pre-step predictor) rather than right after it.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from jepa_lightning.methods.zero_shot_agent import ZeroShotAgent, ensemble_reduce, orthonormality_loss
from jepa_lightning.nn.rl import ConditionedPredictor
from jepa_lightning.targets import EMATeacher

__all__ = ["TDJEPA", "ensemble_reduce", "orthonormality_loss", "td_latent_loss", "td_target"]


# --------------------------------------------------------------------------- the loss terms, as functions
def td_target(next_features: torch.Tensor, next_predictions: torch.Tensor, discount: torch.Tensor,
              pessimism: float = 0.0) -> torch.Tensor:
    """The TD latent target ``f_bar(s') + discount * reduce_E T_bar(s', a', z)``: ``next_features [B, d]``,
    ``next_predictions [E, B, d]``, ``discount [B]`` (gamma times 1 - terminal) -> ``[B, d]``."""
    return next_features + discount.unsqueeze(-1) * ensemble_reduce(next_predictions, pessimism)


def td_latent_loss(predictions: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean_{E,B} ||pred_e - target||^2``: squared error summed over features, averaged over members and batch
    (``predictions [E, B, d]``, ``target [B, d]``)."""
    return (predictions - target.unsqueeze(0)).pow(2).sum(-1).mean()


# --------------------------------------------------------------------------------------------- the method
class TDJEPA(ZeroShotAgent):
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

    loss_terms = ("loss", "td_phi", "td_psi", "ortho_phi", "ortho_psi", "actor", "q")

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
        if symmetric and psi_encoder is not None:
            raise ValueError("TDJEPA: symmetric=True uses psi = phi; remove model.init_args.psi_encoder")
        if not symmetric and psi_encoder is None:
            raise ValueError("TDJEPA: the asymmetric variant needs model.init_args.psi_encoder (or set symmetric=true)")
        super().__init__(
            phi_encoder, action_dim, psi_encoder, pixel_encoder, shift_pad, actor_hidden_dim, actor_hidden_layers,
            actor_embedding_layers, actor_std, stddev_clip, discount,
            lrs={"phi": lr_phi, "psi": lr_psi, "predictor": lr_predictor, "actor": lr_actor},
            weight_decay=weight_decay, warmup_steps=warmup_steps,
            emas={"encoder": encoder_ema, "predictor": predictor_ema}, train_goal_ratio=train_goal_ratio,
            actor_pessimism=actor_pessimism, bc_coef=bc_coef, inference="lstsq", inference_ridge=inference_ridge,
            seed=seed, nonfinite=nonfinite)
        self.save_hyperparameters(ignore=list(self.module_arguments))
        self.phi_ortho_coef, self.psi_ortho_coef = phi_ortho_coef, psi_ortho_coef
        self.predictor_pessimism = predictor_pessimism
        pred = dict(hidden_dim=predictor_hidden_dim, hidden_layers=predictor_hidden_layers,
                    embedding_layers=predictor_embedding_layers, ensemble=ensemble)
        self.phi_predictor = ConditionedPredictor(self.phi_dim, self.z_dim, action_dim, self.z_dim, **pred)
        self.phi_predictor_target = EMATeacher(self.phi_predictor)
        if not symmetric:
            self.psi_predictor = ConditionedPredictor(self.psi_dim, self.z_dim, action_dim, self.phi_dim, **pred)
            self.psi_predictor_target = EMATeacher(self.psi_predictor)

    @torch.no_grad()
    def td_targets(self, phi_xn: torch.Tensor, psi_xn: torch.Tensor, discount: torch.Tensor, z: torch.Tensor,
                   generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The TD latent targets from the EMA networks at s' (module docstring): ``"phi"`` ``[B, d_psi]`` for
        ``T_phi`` and, asymmetric, ``"psi"`` ``[B, d_phi]`` for ``T_psi``; the unreduced target-predictor
        members under ``"phi_members"`` ``[E, B, d_psi]`` / ``"psi_members"`` ``[E, B, d_phi]``."""
        next_phi = self.phi_encoder_target(phi_xn)
        next_psi = next_phi if self.symmetric else self.psi_encoder_target(psi_xn)
        next_action = self.next_action(next_phi, z, generator)
        out = {"phi_members": self.phi_predictor_target(next_phi, next_action, z)}
        out["phi"] = td_target(next_psi, out["phi_members"], discount, self.predictor_pessimism)
        if not self.symmetric:
            out["psi_members"] = self.psi_predictor_target(next_psi, next_action, z)
            out["psi"] = td_target(next_phi, out["psi_members"], discount, self.predictor_pessimism)
        return out

    def objective(self, batch: dict[str, Any], generator: torch.Generator | None = None,
                  augment: bool = True) -> dict[str, torch.Tensor]:
        """All loss terms of one step (module docstring); ``"loss"`` is their weighted sum, ``"phi"``/``"psi"``
        the online features of s (for the collapse signals)."""
        phi_x, phi_xn, psi_x, psi_xn = self.encoder_inputs(batch, generator, augment)
        action, discount = batch["action"].float(), self.discounts(batch)
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
        out["actor"], out["q"] = self.actor_loss(self.phi_predictor, phi, action, z, generator)
        out["loss"] = loss + out["actor"]
        out["phi"], out["psi"] = phi.detach(), psi.detach()
        return out

    # --------------------------------------------------------------------------- optimizer and EMA
    def predictor_modules(self) -> dict[str, list[nn.Module]]:
        return {"predictor": [self.phi_predictor] + ([] if self.symmetric else [self.psi_predictor])}

    def target_pairs(self) -> list[tuple[EMATeacher, nn.Module, str]]:
        pairs = [(self.phi_encoder_target, self.phi_encoder, "encoder"),
                 (self.phi_predictor_target, self.phi_predictor, "predictor")]
        if not self.symmetric:
            pairs += [(self.psi_encoder_target, self._psi_encoder, "encoder"),
                      (self.psi_predictor_target, self.psi_predictor, "predictor")]
        return pairs
