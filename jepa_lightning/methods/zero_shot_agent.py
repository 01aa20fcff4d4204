"""What the zero-shot RL agents share (TD-JEPA in ``td_jepa.py``, forward-backward in ``fb.py``): everything but the
representation loss.

Both learn from reward-free transitions (s, a, s') a state encoder phi (FB: the "left encoder" in front of F), a
task encoder psi whose features span the rewards (FB: the backward map B), a z-conditioned predictor P whose inner
product with z is the value of the policy pi_z, ``Q(s, a, z) = <P(phi(s), a, z), z>`` (TD-JEPA: T_phi; FB: F), and
a TD3 actor ``mu(phi(s), z)``. :class:`ZeroShotAgent` holds:

* the data interface: batches of ``OfflineRLDataModule(mode="transitions")`` (``obs``, ``action``, ``next_obs``,
  ``terminal``; ``pixels``/``next_pixels`` with a pixel encoder), checked once with errors naming the key;
* the encoder inputs: observations, or CNN features of randomly shifted frames, psi with its own CNN;
* z sampling: uniform on the sphere of radius sqrt(d_z), each row replaced with probability ``train_goal_ratio``
  by an encoded goal ``sphere(psi(s'_j))`` of a permuted next state of the batch;
* the actor: ``a_pi = mu(sg phi(s), z) + clipped noise``, ``L_actor = -mean_B reduce_E <P(sg phi(s), a_pi, z)_e,
  z>`` (plus an optional TD3+BC term), whose gradient reaches the actor only (P's weights are detached), and the
  target policy ``a' = mu(phi_bar(s'), z) + clipped noise`` of the TD targets;
* one Adam optimizer with one parameter group (and learning rate) per part, a linear warm-up;
* EMA target networks, their momenta linear schedules of the global step, updated after each optimizer step;
* the non-finite-loss guard, logging of the loss terms and of collapse signals (effective rank and std of the
  features);
* zero-shot inference ``infer_z`` (least squares of the rewards on psi, or FB's ``sphere(mean_i r_i psi(s'_i))``)
  and acting (``act``, ``policy``).

A subclass builds its predictor(s) and their targets, and implements ``objective`` (the paper's loss),
``predictor_modules`` (its parameter groups) and ``target_pairs`` (its EMA updates).
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
from jepa_lightning.masks.utils import step_generator
from jepa_lightning.nn.rl import LatentActor, orthogonal_init_, random_shift, sphere, truncated_normal_sample
from jepa_lightning.optim import linear
from jepa_lightning.targets import EMATeacher, TargetNetwork


# --------------------------------------------------------------------------- shared loss terms, as functions
def ensemble_reduce(members: torch.Tensor, pessimism: float = 0.0) -> torch.Tensor:
    """Reduce an ensemble ``[E, ...]`` to ``[...]``: mean minus ``pessimism`` times the mean absolute difference
    over ordered pairs of distinct members (0 for a single member)."""
    mean = members.mean(0)
    e = members.shape[0]
    if pessimism == 0.0 or e < 2:
        return mean
    diffs = (members.unsqueeze(0) - members.unsqueeze(1)).abs().sum((0, 1)) / (e * e - e)
    return mean - pessimism * diffs


def off_diagonal_mean(matrices: torch.Tensor) -> torch.Tensor:
    """Mean over the off-diagonal entries of square matrices ``[..., B, B]`` (the leading dimensions summed)."""
    b = matrices.shape[-1]
    return (matrices.sum() - matrices.diagonal(dim1=-2, dim2=-1).sum()) / max(b * b - b, 1)


def orthonormality_loss(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The FB orthonormality regularizer on a batch of features ``[B, d]``: with ``C = F F^T``,
    ``-mean_i C_ii + 1/2 mean_{i != j} C_ij^2``. Returns (loss, diagonal term, off-diagonal term)."""
    cov = features @ features.T
    diag = -cov.diagonal().mean()
    off = 0.5 * off_diagonal_mean(cov.pow(2))
    return diag + off, diag, off


# --------------------------------------------------------------------------------------------- the base class
class ZeroShotAgent(LightningModule):
    """The machinery of the module docstring; a subclass passes its typed constructor arguments on.

    Args (those a subclass's docstring does not repeat):
        phi_encoder, psi_encoder: modules with integer ``in_dim`` and ``out_dim``; ``psi_encoder=None``: psi = phi.
        lrs: learning rate per parameter group (``"phi"``, ``"psi"``, ``"actor"`` and the subclass's groups).
        emas: (first, last) EMA momentum per schedule name used in ``target_pairs``; the first is logged.
        inference: ``"lstsq"`` (least squares, TD-JEPA) or ``"mean"`` (reward-weighted mean, FB) in ``infer_z``.
        psi_at_next: psi is trained at s' (FB's B(s')) rather than at s (TD-JEPA's psi(s)); decides which psi
            input carries gradient through a pixel CNN.
    """

    module_arguments: tuple[str, ...] = ("phi_encoder", "psi_encoder", "pixel_encoder")
    encoder_args: tuple[str, str] = ("phi_encoder", "psi_encoder")  # constructor names, for error messages
    loss_terms: tuple[str, ...] = ("loss", "actor", "q")  # logged under train/ and val/

    def __init__(self, phi_encoder: nn.Module, action_dim: int, psi_encoder: nn.Module | None,
                 pixel_encoder: nn.Module | None, shift_pad: int, actor_hidden_dim: int, actor_hidden_layers: int,
                 actor_embedding_layers: int, actor_std: float, stddev_clip: float, discount: float,
                 lrs: dict[str, float], weight_decay: float, warmup_steps: int,
                 emas: dict[str, tuple[float, float]], train_goal_ratio: float, actor_pessimism: float,
                 bc_coef: float, inference: Literal["lstsq", "mean"], inference_ridge: float, seed: int,
                 nonfinite: Literal["raise", "skip"], psi_at_next: bool = False) -> None:
        super().__init__()
        name = type(self).__name__
        for arg, enc in zip(self.encoder_args, (phi_encoder, psi_encoder)):
            if enc is not None and not (isinstance(getattr(enc, "in_dim", None), int)
                                        and isinstance(getattr(enc, "out_dim", None), int)):
                raise ValueError(f"{name}: {arg} ({type(enc).__name__}) must have integer attributes `in_dim` and "
                                 "`out_dim` (e.g. jepa_lightning.nn.rl.StateEncoder)")
        if not 0.0 <= train_goal_ratio <= 1.0:
            raise ValueError(f"{name}: train_goal_ratio must be in [0, 1], got {train_goal_ratio}")
        if not 0.0 < discount < 1.0:
            raise ValueError(f"{name}: discount must be in (0, 1), got {discount}")
        if nonfinite not in ("raise", "skip"):
            raise ValueError(f"{name}: nonfinite must be 'raise' or 'skip', got {nonfinite!r}")
        if inference not in ("lstsq", "mean"):
            raise ValueError(f"{name}: inference must be 'lstsq' or 'mean', got {inference!r}")
        if pixel_encoder is not None:
            pix_out = getattr(pixel_encoder, "out_dim", None)
            if pix_out != phi_encoder.in_dim or (psi_encoder is not None and psi_encoder.in_dim != pix_out):
                raise ValueError(f"{name}: pixel_encoder.out_dim ({pix_out}) must equal the in_dim of "
                                 f"{self.encoder_args[0]} ({phi_encoder.in_dim}) and {self.encoder_args[1]} "
                                 f"({None if psi_encoder is None else psi_encoder.in_dim})")
        self.symmetric, self.action_dim, self.shift_pad = psi_encoder is None, action_dim, shift_pad
        self.actor_std, self.stddev_clip, self.discount = actor_std, stddev_clip, discount
        self.lrs, self.weight_decay, self.warmup_steps = dict(lrs), weight_decay, warmup_steps
        self.emas = {k: tuple(v) for k, v in emas.items()}
        self.train_goal_ratio, self.actor_pessimism, self.bc_coef = train_goal_ratio, actor_pessimism, bc_coef
        self.inference, self.inference_ridge = inference, inference_ridge
        self.seed, self.nonfinite, self.psi_at_next = seed, nonfinite, psi_at_next
        self.obs_dim = phi_encoder.in_dim  # the raw observation size when learning from states
        self.phi_dim = phi_encoder.out_dim
        self.psi_dim = self.phi_dim if psi_encoder is None else psi_encoder.out_dim
        self.z_dim = self.psi_dim

        self.phi_encoder = phi_encoder
        self.pixel_encoder = pixel_encoder
        self.actor = LatentActor(self.phi_dim, self.z_dim, action_dim, actor_hidden_dim, actor_hidden_layers,
                                 actor_embedding_layers)
        self.phi_encoder_target = EMATeacher(phi_encoder)
        if psi_encoder is not None:
            self._psi_encoder = psi_encoder
            self.psi_pixel_encoder = (orthogonal_init_(copy.deepcopy(pixel_encoder))
                                      if pixel_encoder is not None else None)
            self.psi_encoder_target = EMATeacher(psi_encoder)
        self.total_steps = 1  # set by configure_optimizers from the Trainer
        self._checked = False

    # ------------------------------------------------------------------------------ the networks
    @property
    def psi_encoder(self) -> nn.Module:
        return self.phi_encoder if self.symmetric else self._psi_encoder

    @property
    def pixels(self) -> bool:
        return self.pixel_encoder is not None

    def _trunk(self, x: torch.Tensor, which: str) -> torch.Tensor:
        if not self.pixels:
            return x
        return (self.pixel_encoder if which == "phi" or self.symmetric else self.psi_pixel_encoder)(x)

    @torch.no_grad()
    def phi(self, x: torch.Tensor) -> torch.Tensor:
        """phi of observations ``[N, D]`` (or frames ``[N, C, H, W]`` with a pixel encoder), online network."""
        return self.phi_encoder(self._trunk(x, "phi"))

    @torch.no_grad()
    def psi(self, x: torch.Tensor) -> torch.Tensor:
        """psi of observations (or frames), online network (phi when symmetric; FB's B)."""
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
        name, (phi_arg, psi_arg) = type(self).__name__, self.encoder_args
        keys = ("pixels", "next_pixels") if self.pixels else ("obs", "next_obs")
        missing = [k for k in (*keys, "action") if k not in batch]
        if missing:
            raise KeyError(f"{name}: the batch has no {missing} (keys: {sorted(batch)}); use "
                           f"OfflineRLDataModule(mode='transitions'{', pixels=True' if self.pixels else ''})")
        if batch["action"].shape[-1] != self.action_dim:
            raise ValueError(f"{name}: batch['action'] has {batch['action'].shape[-1]} dimensions, but the model "
                             f"was built with action_dim={self.action_dim} (model.init_args.action_dim)")
        if not self.pixels and batch["obs"].shape[-1] != self.obs_dim:
            raise ValueError(f"{name}: batch['obs'] has {batch['obs'].shape[-1]} dimensions, but {phi_arg}."
                             f"in_dim={self.obs_dim} (model.init_args.{phi_arg}.init_args.in_dim"
                             f"{'' if self.symmetric else f' and {psi_arg}.init_args.in_dim'})")
        self._checked = True

    def encoder_inputs(self, batch: dict[str, Any], generator: torch.Generator | None = None,
                       augment: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """(phi input at s, phi input at s', psi input at s, psi input at s'): the observations, or the CNN
        features of (randomly shifted) frames. Through a CNN, phi's s' input carries no gradient, and psi's
        carries it at s' only with ``psi_at_next`` (then psi's input at s is not computed: None)."""
        if not self._checked:
            self._check(batch)
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
        if self.psi_at_next:
            return phi_x, phi_xn, None, self._trunk(next_frames, "psi")
        psi_x = self._trunk(frames, "psi")
        with torch.no_grad():
            psi_xn = self._trunk(next_frames, "psi")
        return phi_x, phi_xn, psi_x, psi_xn

    def discounts(self, batch: dict[str, Any]) -> torch.Tensor:
        """``gamma * (1 - terminal)`` per transition ``[B]`` (no ``terminal`` key: nothing terminates)."""
        action, terminal = batch["action"], batch.get("terminal")
        not_done = 1.0 - terminal.float() if terminal is not None else torch.ones(len(action), device=action.device)
        return self.discount * not_done

    def next_action(self, next_phi: torch.Tensor, z: torch.Tensor,
                    generator: torch.Generator | None = None) -> torch.Tensor:
        """The target policy's action at s': ``mu(phi_bar(s'), z)`` plus clipped noise (target smoothing)."""
        return truncated_normal_sample(self.actor(next_phi, z), self.actor_std, self.stddev_clip, generator)

    def actor_loss(self, predictor: nn.Module, phi_s: torch.Tensor, action: torch.Tensor, z: torch.Tensor,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``-mean_B reduce_E <P(phi(s), a_pi, z)_e, z>`` with ``a_pi`` the actor's noisy action (plus the optional
        BC term); gradients reach the actor only (features and ``predictor``'s weights detached). Returns
        (loss, mean Q)."""
        phi_s = phi_s.detach()
        a_pi = truncated_normal_sample(self.actor(phi_s, z), self.actor_std, self.stddev_clip, generator)
        frozen = {k: v.detach() for k, v in predictor.named_parameters()}
        preds = functional_call(predictor, frozen, (phi_s, a_pi, z))  # [E, B, d_z]
        qs = (preds * z.unsqueeze(0)).sum(-1)  # [E, B]
        q = ensemble_reduce(qs, self.actor_pessimism)
        loss = -q.mean()
        if self.bc_coef > 0:
            loss = loss / qs.abs().mean().detach().clamp_min(1e-6) + self.bc_coef * F.mse_loss(a_pi, action)
        return loss, q.mean().detach()

    def objective(self, batch: dict[str, Any], generator: torch.Generator | None = None,
                  augment: bool = True) -> dict[str, torch.Tensor]:
        """All loss terms of one step; ``"loss"`` is their weighted sum, ``"phi"``/``"psi"`` the online features
        (for the collapse signals)."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Any] | None, batch_idx: int):
        if batch is None:
            return None
        g = step_generator(self.seed, self.global_rank, self.global_step, batch["action"].device)
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
        for name in self.loss_terms:
            if name in out:
                self.log(f"{stage}/{name}", out[name].detach(), batch_size=bs, prog_bar=name == "loss")
        every = max(int(getattr(self.trainer, "log_every_n_steps", 1) or 1), 1)
        if stage != "train" or self.global_step % every == 0:  # collapse signals: an SVD, only when logged
            for name in ("phi",) if self.symmetric else ("phi", "psi"):
                feats = out[name].float()
                self.log(f"{stage}/{name}_rank", effective_rank(feats), batch_size=bs)
                self.log(f"{stage}/{name}_std", feats.std(0).mean(), batch_size=bs)
        if stage == "train":
            opt = self.optimizers(use_pl_optimizer=False)
            self.log("train/lr", opt.param_groups[0]["lr"], batch_size=bs)
            self.log("train/ema", self.momentum(next(iter(self.emas))), batch_size=bs)

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
    def predictor_modules(self) -> dict[str, list[nn.Module]]:
        """The subclass's parameter groups (name -> modules), beside phi, psi and the actor."""
        raise NotImplementedError

    def target_pairs(self) -> list[tuple[EMATeacher, nn.Module, str]]:
        """(target, online network, name of its momentum schedule in ``emas``) for every EMA target."""
        raise NotImplementedError

    def trainable_modules(self) -> dict[str, list[nn.Module]]:
        parts = {"phi": [self.phi_encoder, self.pixel_encoder], **self.predictor_modules(), "actor": [self.actor]}
        if not self.symmetric:
            parts["psi"] = [self._psi_encoder, self.psi_pixel_encoder]
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

    def momentum(self, which: str) -> float:
        m0, m1 = self.emas[which]
        return linear(self.global_step, self.total_steps, m0, m1)

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        self.update_targets()

    @torch.no_grad()
    def update_targets(self) -> None:
        """EMA step of every target network (``target_pairs``)."""
        for target, online, schedule in self.target_pairs():
            target.update(online, self.momentum(schedule))

    def target_networks(self) -> list[TargetNetwork]:
        return [m for m in self.children() if isinstance(m, TargetNetwork)]

    # ------------------------------------------------------------------------ zero-shot inference
    @torch.no_grad()
    def infer_z(self, inputs: torch.Tensor, reward: torch.Tensor, are_features: bool = False,
                chunk: int = 4096) -> torch.Tensor:
        """The task vector of a reward. ``inference="lstsq"``: ``z = sphere(argmin_w ||psi(s') w - r||^2 / N + lam
        ||w||^2)``, ``lam = inference_ridge * mean_i ||psi(s'_i)||^2 / d`` (the TD-JEPA reference: plain least
        squares, then the rescaling to norm sqrt(d_z)); ``"mean"``: ``z = sphere(sum_i r_i psi(s'_i))`` (the FB
        reference's ``B^T r``). ``inputs``: next observations ``[N, D]`` (frames with a pixel encoder), or psi
        features ``[N, d_z]`` with ``are_features=True``; ``reward [N]`` is the reward of reaching them.
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
        if self.inference == "mean":
            return sphere(r @ f).float()
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
