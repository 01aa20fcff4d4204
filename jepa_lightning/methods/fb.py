"""Forward-backward representations (Touati & Ollivier, "Learning One Representation to Optimize All Rewards",
2021), the zero-shot baseline TD-JEPA compares with, in the TD-JEPA reference's form (its ``agents/fb``).

FB factorizes the successor measure of pi_z: ``M^{pi_z}(s, a, ds') ~ F(s, a, z)^T B(s') rho(ds')`` (rho: the data
distribution), so that for any reward ``Q^{pi_z}_r(s, a) = F(s, a, z)^T z`` with ``z = E_rho[r(s') B(s')]``, and
pi_z is trained to maximise ``F(s, a, z)^T z``. Networks (here in the roles of the shared
:class:`~jepa_lightning.methods.zero_shot_agent.ZeroShotAgent`):

* the left encoder ``L(s)`` (``left_encoder``, phi of the base class; the reference's linear map rescaled to norm
  sqrt(d)), in front of F and the actor;
* the forward map ``F(L(s), a, z) -> R^{d_z}``, an ensemble of E members
  (:class:`~jepa_lightning.nn.rl.ConditionedPredictor`, the reference's ``ForwardMap``);
* the backward map ``B(s') -> R^{d_z}`` rescaled to norm sqrt(d_z) (``backward_map``, psi of the base class; the
  reference's ``BackwardMap`` with ``norm=True``); z lives on the same sphere;
* the actor ``mu(L(s), z)``; EMA targets of L, F (momentum ``forward_ema``) and B (``backward_ema``).

Training step (the reference's ``update_fb`` + ``update_actor``; bars are EMA targets)::

    z       <- uniform on the sphere of radius sqrt(d_z), each row replaced with probability `train_goal_ratio`
               by B(s'_j) of a permuted next state of the batch                                  (no grad)
    a'      <- mu(L_bar(s'), z) + clip(N(0, actor_std^2), -stddev_clip, stddev_clip)
    M_e     <- F(L(s_i), a_i, z_i)_e^T B(s'_j)                         [E, B, B]  (j: the batch's next states)
    M_bar   <- reduce_E F_bar(L_bar(s'_i), a'_i, z_i)_e^T B_bar(s'_j)   [B, B]     (no grad)
    L_fb    <- sum_e [ 1/2 mean_{i != j} (M_e,ij - gamma_i M_bar_ij)^2 - mean_i (M_e,ii - gamma_i M_bar_ii) ]
    L_orth  <- -mean_i C_ii + 1/2 mean_{i != j} C_ij^2,  C = B B^T                 (B of the batch's next states)
    L_actor <- -mean_B reduce_E <F(sg L(s), a_pi, z)_e, z>,  a_pi = mu(sg L(s), z) + clipped noise
    step Adam on L_fb + ortho_coef L_orth + L_actor; EMA-update L_bar, F_bar, B_bar

``L_fb`` is the measure-valued TD loss: with s'' drawn from rho independently of (s, a, s') (the other next states of
the batch), ``E[(F(s,a,z)^T B(s'') - gamma F_bar(s', a', z)^T B_bar(s''))^2] - 2 E[F(s,a,z)^T B(s')]`` halved (the
diagonal term's ``gamma M_bar_ii`` is a constant that only shifts the value, as in the reference). Its fixed point
is ``F^T B = sum_t gamma^t P_pi^{t+1} / rho``. gamma_i is 0 after a terminal transition.

Zero-shot inference (``infer_z``, ``inference="mean"``, the reference's ``reward_inference``): ``z = sphere(sum_i
r_i B(s'_i))``; ``inference="lstsq"`` uses TD-JEPA's least squares instead.

Where it deviates from the reference: one Adam optimizer with parameter groups (phi = L, forward = F, psi = B,
actor) instead of three optimizers (equivalent: Adam is per-parameter); the actor is updated in the same step as F
and B, against the pre-step F (the reference updates it right after); its optional ``q_loss`` term (off by default)
and gradient clipping are not implemented. With a pixel encoder, L and F read one CNN and B its own (the reference's
``fw_encoder`` / ``bw_encoder``), B's CNN trained through ``B(s')``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from jepa_lightning.methods.zero_shot_agent import (
    ZeroShotAgent,
    ensemble_reduce,
    off_diagonal_mean,
    orthonormality_loss,
)
from jepa_lightning.nn.rl import ConditionedPredictor
from jepa_lightning.targets import EMATeacher


def fb_loss(m: torch.Tensor, target_m: torch.Tensor, discount: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The FB measure loss of the module docstring: ``m [E, B, B]`` (online ``F_e(s_i)^T B(s'_j)``), ``target_m
    [B, B]`` (ensemble-reduced target), ``discount [B]`` (gamma times 1 - terminal, per row i). Returns (loss,
    diagonal term, off-diagonal term), each summed over the ensemble members."""
    diff = m - discount[:, None] * target_m  # [E, B, B]
    offdiag = 0.5 * off_diagonal_mean(diff.pow(2))
    diag = -diff.diagonal(dim1=-2, dim2=-1).mean() * m.shape[0]
    return diag + offdiag, diag, offdiag


class FB(ZeroShotAgent):
    """Forward-backward representations on transition batches of ``OfflineRLDataModule(mode="transitions")``
    (the batch keys and the evaluation interface of :class:`~jepa_lightning.methods.td_jepa.TDJEPA`). See the
    module docstring for the algorithm.

    Args:
        left_encoder: L, the state features that F and the actor read (e.g. ``StateEncoder(obs, 256,
            hidden_layers=0)``); needs ``in_dim`` and ``out_dim``.
        action_dim: the action size A (actions in ``[-1, 1]``).
        backward_map: B (e.g. ``StateEncoder(obs, d_z, 256, hidden_layers=2)``, rescaled to norm sqrt(d_z));
            its ``out_dim`` is d_z.
        pixel_encoder, shift_pad: learning from pixels (as TDJEPA; B gets its own CNN).
        forward_hidden_dim, forward_hidden_layers, forward_embedding_layers, ensemble: F's architecture.
        actor_hidden_dim, actor_hidden_layers, actor_embedding_layers, actor_std, stddev_clip: the actor.
        discount: gamma.
        lr_f, lr_b, lr_actor: Adam learning rates of L and F, of B, of the actor; ``warmup_steps``,
            ``weight_decay`` as TDJEPA.
        forward_ema, backward_ema: EMA momenta (first, last; 1 - the reference's ``f_target_tau`` /
            ``b_target_tau``) of L_bar and F_bar, and of B_bar.
        ortho_coef: weight of B's orthonormality regularizer.
        train_goal_ratio: fraction of training z's that are B of a next state of the batch.
        fb_pessimism, actor_pessimism: ensemble pessimism in the target M and in the actor's Q.
        bc_coef: TD3+BC-style behaviour cloning weight in the actor loss (0: the reference's default).
        inference: ``"mean"`` (the reference) or ``"lstsq"``; ``inference_ridge`` for ``"lstsq"``.
        seed, nonfinite: as TDJEPA.
    """

    module_arguments = ("left_encoder", "backward_map", "pixel_encoder")
    encoder_args = ("left_encoder", "backward_map")
    loss_terms = ("loss", "fb", "fb_diag", "fb_offdiag", "ortho", "actor", "q")

    def __init__(self, left_encoder: nn.Module, action_dim: int, backward_map: nn.Module,
                 pixel_encoder: nn.Module | None = None, shift_pad: int = 4, forward_hidden_dim: int = 1024,
                 forward_hidden_layers: int = 1, forward_embedding_layers: int = 2, ensemble: int = 2,
                 actor_hidden_dim: int = 1024, actor_hidden_layers: int = 1, actor_embedding_layers: int = 2,
                 actor_std: float = 0.2, stddev_clip: float = 0.3, discount: float = 0.98, lr_f: float = 1e-4,
                 lr_b: float = 1e-4, lr_actor: float = 1e-4, weight_decay: float = 0.0, warmup_steps: int = 0,
                 forward_ema: tuple[float, float] = (0.999, 0.999),
                 backward_ema: tuple[float, float] = (0.999, 0.999), ortho_coef: float = 1.0,
                 train_goal_ratio: float = 0.5, fb_pessimism: float = 0.0, actor_pessimism: float = 0.0,
                 bc_coef: float = 0.0, inference: Literal["mean", "lstsq"] = "mean", inference_ridge: float = 1e-6,
                 seed: int = 0, nonfinite: Literal["raise", "skip"] = "raise") -> None:
        if backward_map is None:
            raise ValueError("FB: model.init_args.backward_map is required (e.g. jepa_lightning.nn.rl.StateEncoder)")
        super().__init__(
            left_encoder, action_dim, backward_map, pixel_encoder, shift_pad, actor_hidden_dim, actor_hidden_layers,
            actor_embedding_layers, actor_std, stddev_clip, discount,
            lrs={"phi": lr_f, "forward": lr_f, "psi": lr_b, "actor": lr_actor}, weight_decay=weight_decay,
            warmup_steps=warmup_steps, emas={"forward": forward_ema, "backward": backward_ema},
            train_goal_ratio=train_goal_ratio, actor_pessimism=actor_pessimism, bc_coef=bc_coef,
            inference=inference, inference_ridge=inference_ridge, seed=seed, nonfinite=nonfinite, psi_at_next=True)
        self.save_hyperparameters(ignore=list(self.module_arguments))
        self.ortho_coef, self.fb_pessimism = ortho_coef, fb_pessimism
        self.forward_map = ConditionedPredictor(self.phi_dim, self.z_dim, action_dim, self.z_dim, forward_hidden_dim,
                                                forward_hidden_layers, forward_embedding_layers, ensemble)
        self.forward_target = EMATeacher(self.forward_map)

    @property
    def left_encoder(self) -> nn.Module:
        return self.phi_encoder

    @property
    def backward_map(self) -> nn.Module:
        return self._psi_encoder

    @torch.no_grad()
    def target_m(self, phi_xn: torch.Tensor, psi_xn: torch.Tensor, z: torch.Tensor,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """``reduce_E F_bar(L_bar(s'_i), a'_i, z_i)_e^T B_bar(s'_j)``, ``[B, B]``."""
        next_left = self.phi_encoder_target(phi_xn)
        members = self.forward_target(next_left, self.next_action(next_left, z, generator), z)  # [E, B, d_z]
        return ensemble_reduce(members @ self.psi_encoder_target(psi_xn).T, self.fb_pessimism)

    def objective(self, batch: dict[str, Any], generator: torch.Generator | None = None,
                  augment: bool = True) -> dict[str, torch.Tensor]:
        """All loss terms of one step (module docstring); ``"loss"`` is their weighted sum, ``"phi"`` L(s) and
        ``"psi"`` B(s') (for the collapse signals)."""
        phi_x, phi_xn, _, psi_xn = self.encoder_inputs(batch, generator, augment)
        action = batch["action"].float()
        backward = self.psi_encoder(psi_xn)  # B(s'_j) [B, d_z]
        with torch.no_grad():
            z = self.sample_z(len(action), generator, goals=backward.detach())
        target = self.target_m(phi_xn, psi_xn, z, generator)
        left = self.phi_encoder(phi_x)
        m = self.forward_map(left, action, z) @ backward.T  # [E, B, B]
        out: dict[str, torch.Tensor] = {}
        out["fb"], out["fb_diag"], out["fb_offdiag"] = fb_loss(m, target, self.discounts(batch))
        out["ortho"], out["ortho_diag"], out["ortho_offdiag"] = orthonormality_loss(backward)
        out["actor"], out["q"] = self.actor_loss(self.forward_map, left, action, z, generator)
        out["loss"] = out["fb"] + self.ortho_coef * out["ortho"] + out["actor"]
        out["phi"], out["psi"] = left.detach(), backward.detach()
        return out

    # --------------------------------------------------------------------------- optimizer and EMA
    def predictor_modules(self) -> dict[str, list[nn.Module]]:
        return {"forward": [self.forward_map]}

    def target_pairs(self) -> list[tuple[EMATeacher, nn.Module, str]]:
        return [(self.phi_encoder_target, self.phi_encoder, "forward"),
                (self.forward_target, self.forward_map, "forward"),
                (self.psi_encoder_target, self._psi_encoder, "backward")]
