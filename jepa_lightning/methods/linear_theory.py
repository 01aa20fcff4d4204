r"""Deep linear JEPA vs MAE: which features are learned first (Littwin et al., 2024, "How JEPA Avoids Noisy
Features: The Implicit Bias of Deep Linear Self Distillation Networks").

The model. An encoder ``Wbar = W_L ... W_1`` (``depth`` square linear layers, no bias) and a linear
predictor/decoder ``V``, trained on pairs ``(x, y)`` by plain gradient descent (full batch) or SGD:

    JEPA:  L = 1/2 E || V Wbar x - StopGrad(Wbar y) ||^2     (predict the encoding of y; no EMA: the target
                                                            encoder is the current encoder, gradient stopped)
    MAE:   L = 1/2 E || V Wbar x - y ||^2                    (reconstruct y itself)

The data (``datamodules.linear``): ``Sigma_xx = E[x x^T]``, ``Sigma_yx = E[y x^T]`` diagonal in one orthogonal
basis ``u_i``, with ``E[(u_i^T x)^2] = sigma_i^2``, ``E[(u_i^T y)(u_i^T x)] = lambda_i`` and regression coefficient
``rho_i = lambda_i / sigma_i^2``.

Initialization (small and balanced, aligned with every basis): ``W_a = eps^(1/L) O_a`` with orthogonal ``O_a``
(random, or the identity), so ``Wbar(0) = eps O`` with ``O = O_L ... O_1``; ``V(0) = eps^(1/L) I`` for JEPA
(latent -> latent) and ``V(0) = eps^(1/L) O^T`` for MAE (latent -> data). Orthogonal changes of basis of the
hidden spaces leave both losses invariant and map this initialization to the all-identity one, so the dynamics
below hold for either (``init``).

Derivation of the per-feature ODE (gradient flow, continuous time ``t = lr * step``). With the identity
initialization every matrix stays diagonal in the data basis: write ``w_a, v`` for the entries of feature ``i``
and ``wbar = w_1 ... w_L`` (drop ``i``). Per feature the losses are

    JEPA: 1/2 (v^2 wbar^2 sigma^2 - 2 v wbar sg(wbar) lambda) + const,   MAE: 1/2 (v^2 wbar^2 sigma^2 - 2 v wbar lambda) + const,

and ``dtheta/dt = -dL/dtheta`` gives

    JEPA:  dv/dt = wbar^2 (lambda - v sigma^2),      dw_a/dt = (wbar^2 / w_a) v (lambda - v sigma^2)
    MAE:   dv/dt = wbar (lambda - v wbar sigma^2),   dw_a/dt = (wbar / w_a) v (lambda - v wbar sigma^2)

so ``d(w_a^2)/dt = d(v^2)/dt`` for every layer: the balance ``w_a^2 - v^2`` is conserved (it is also preserved
exactly by discrete gradient descent), and the balanced start ``w_a(0) = v(0) = eps^(1/L)`` keeps ``w_a = v = w``
and ``wbar = w^L``. One scalar ODE per feature remains:

    JEPA:  dw/dt = w^(2L) (lambda - sigma^2 w),          w -> rho,            wbar -> rho^L
    MAE:   dw/dt = w^L (lambda - sigma^2 w^(L+1)),       w^(L+1) -> rho,      wbar -> rho^(L/(L+1))

or, for the encoder's magnitude ``wbar`` (the paper's form, with the factor ``L`` of time kept here),

    JEPA:  dwbar/dt = L (wbar^(3 - 1/L) lambda - wbar^3 sigma^2),   MAE:  dwbar/dt = L (wbar^(2 - 1/L) lambda - wbar^3 sigma^2).

Critical time (as in the paper): the time ``t*_i`` at which ``wbar_i`` reaches a fraction ``p`` (default 1/2) of
its asymptotic value. Expanding ``integral dw / f(w)`` from ``w(0) = eps^(1/L)`` in powers of ``eps^(-1/L)``:

    JEPA:  t* = 1/lambda sum_{n=1}^{2L-1} rho^(n+1-2L) eps^(-n/L) / n + O(log(1/eps) / (lambda rho^(2L-1)))
    MAE:   t* = eps^(-(L-1)/L) / ((L-1) lambda) + O(1 / (lambda rho^((L-1)/(L+1))))      (L >= 2)
           t* = log(1/eps) / lambda + O(1 / lambda)                                    (L = 1)

The leading terms depend on ``lambda`` alone (for a vanishing ``eps`` both learn in order of ``lambda``), but the
JEPA series has ``2L-1`` divergent terms whose weights grow like ``rho^-(2L-1-n)`` while ``eps^(-n/L)`` flattens
as ``L`` grows: at a fixed ``eps`` a deep JEPA learns features with a large regression coefficient first, even
against a larger ``lambda``; MAE has a single divergent term and stays ordered by ``lambda``.
``ode_critical_time`` integrates the ODE numerically (no truncated series) and is what measured runs are
compared against. Plain gradient descent preserves the balance exactly too, so GD with step ``lr`` is the Euler
method on the scalar ODE: its critical times match the ODE's up to ``O(lr)``.

What is logged: ``train/loss``, ``train/lr``, ``train/time`` (``lr * step``), ``train/target_std`` (JEPA, the
collapse signal), ``features/mag_i`` = ``|Wbar u_i|`` (the encoder's gain on feature ``i``; ``wbar_i`` above), and
``val/loss``; after each validation and at the end of ``fit``, a figure of the magnitudes over time with each
feature's critical time marked, on every logger that has ``add_figure`` (TensorBoard).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch import LightningModule
from lightning.pytorch.utilities.rank_zero import rank_zero_warn
from scipy.integrate import solve_ivp
from torch import nn

from jepa_lightning.seeding import random_orthogonal

Objective = Literal["jepa", "mae"]


# ------------------------------------------------------------------------------------------ theory
def _check_objective(objective: str) -> None:
    if objective not in ("jepa", "mae"):
        raise ValueError(f"objective must be 'jepa' or 'mae', got {objective!r}")


def asymptote(objective: Objective, rho: float | np.ndarray, depth: int) -> np.ndarray:
    """The encoder magnitude ``wbar`` at the end of training: ``rho^L`` (JEPA), ``rho^(L/(L+1))`` (MAE)."""
    _check_objective(objective)
    rho = np.asarray(rho, dtype=np.float64)
    return rho ** depth if objective == "jepa" else rho ** (depth / (depth + 1))


def _log_rate(objective: Objective, lam: np.ndarray, sigma2: np.ndarray, depth: int):
    """``d log(w)/dt`` of the per-layer weight as a function of ``s = log w`` (well conditioned from tiny w)."""
    if objective == "jepa":
        return lambda s: np.exp((2 * depth - 1) * s) * (lam - sigma2 * np.exp(s))
    return lambda s: np.exp((depth - 1) * s) * (lam - sigma2 * np.exp((depth + 1) * s))


def _features(lambdas, rhos) -> tuple[np.ndarray, np.ndarray]:
    lam = np.atleast_1d(np.asarray(lambdas, dtype=np.float64))
    rho = np.atleast_1d(np.asarray(rhos, dtype=np.float64))
    if lam.shape != rho.shape or np.any(lam <= 0) or np.any(rho <= 0):
        raise ValueError(f"lambdas and rhos must be positive and of equal length, got {lam} and {rho}")
    return lam, lam / rho


def integrate_feature_ode(objective: Objective, lambdas: Sequence[float], rhos: Sequence[float], depth: int,
                          init_scale: float, times: Sequence[float]) -> np.ndarray:
    """``wbar_i(t)`` [len(times), d] from the per-feature ODE (module docstring), integrated numerically
    (``solve_ivp``, LSODA, in ``log w``) from ``wbar_i(0) = init_scale``; ``times`` increasing, from >= 0."""
    _check_objective(objective)
    lam, sigma2 = _features(lambdas, rhos)
    times = np.asarray(times, dtype=np.float64)
    rate = _log_rate(objective, lam, sigma2, depth)
    s0 = np.full_like(lam, np.log(init_scale) / depth)
    sol = solve_ivp(lambda t, s: rate(s), (0.0, float(times[-1])), s0, t_eval=times, method="LSODA",
                    rtol=1e-10, atol=1e-12)
    if not sol.success:
        raise RuntimeError(f"ODE integration failed: {sol.message}")
    return np.exp(depth * sol.y.T)


def ode_critical_time(objective: Objective, lambdas: Sequence[float], rhos: Sequence[float], depth: int,
                      init_scale: float, fraction: float = 0.5) -> np.ndarray:
    """Per feature, the time at which the ODE's ``wbar_i`` reaches ``fraction`` of its asymptote (integrated
    numerically with a terminal event; 0 where the initialization already is past it)."""
    _check_objective(objective)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    lam, sigma2 = _features(lambdas, rhos)
    out = np.zeros_like(lam)
    s0 = np.log(init_scale) / depth
    for i in range(lam.size):
        target = np.log(fraction * asymptote(objective, lam[i] / sigma2[i], depth)) / depth
        if s0 >= target:
            continue
        try:
            out[i] = _time_to_reach(_log_rate(objective, lam[i], sigma2[i], depth), s0, target)
        except RuntimeError as err:
            raise RuntimeError(f"feature {i}: the ODE did not reach {fraction} of its asymptote ({err})") from None
    return out


def _time_to_reach(rate, s0: float, target: float) -> float:
    """First time ``s(t)`` (``ds/dt = rate(s)``, ``s(0) = s0``) crosses ``target`` upwards."""
    def event(t, s):
        return s[0] - target

    event.terminal, event.direction = True, 1.0
    sol = solve_ivp(lambda t, s: rate(s), (0.0, 1e12), [s0], events=event, method="LSODA", rtol=1e-10,
                    atol=1e-12)
    if not sol.t_events[0].size:
        raise RuntimeError(sol.message)
    return float(sol.t_events[0][0])


def critical_time(times: Sequence[float], magnitudes: np.ndarray, fraction: float = 0.5,
                  final: Sequence[float] | None = None) -> np.ndarray:
    """Per feature, the first time a measured magnitude ``[T, d]`` reaches ``fraction * final`` (linear
    interpolation between records; ``final`` defaults to the last record, pass the asymptote for runs stopped
    early); NaN where it never does."""
    times = np.asarray(times, dtype=np.float64)
    mags = np.asarray(magnitudes, dtype=np.float64).reshape(len(times), -1)
    final = mags[-1] if final is None else np.asarray(final, dtype=np.float64)
    out = np.full(mags.shape[1], np.nan)
    for i in range(mags.shape[1]):
        level = fraction * final[i]
        above = np.flatnonzero(mags[:, i] >= level)
        if not above.size:
            continue
        k = above[0]
        if k == 0:
            out[i] = times[0]
            continue
        m0, m1 = mags[k - 1, i], mags[k, i]
        out[i] = times[k - 1] + (times[k] - times[k - 1]) * (level - m0) / (m1 - m0)
    return out


def learning_order(times: Sequence[float]) -> list[int]:
    """Feature indices sorted by critical time (first learned first)."""
    return [int(i) for i in np.argsort(np.asarray(times), kind="stable")]


def magnitude_figure(times: np.ndarray, magnitudes: np.ndarray, fraction: float = 0.5,
                     final: Sequence[float] | None = None, ode: np.ndarray | None = None, title: str = ""):
    """A matplotlib figure of the learning order: left, each feature's magnitude as a fraction of its final value
    (``final``, default the last record) with its critical time as a dotted vertical line; right, the raw
    magnitudes on a log scale. The ODE's prediction (``ode`` [T, d] on the same times) is drawn dashed."""
    from matplotlib.figure import Figure

    times = np.asarray(times, dtype=np.float64)
    mags = np.asarray(magnitudes, dtype=np.float64).reshape(len(times), -1)
    final = mags[-1] if final is None else np.asarray(final, dtype=np.float64)
    crit = critical_time(times, mags, fraction, final)
    fig = Figure(figsize=(10.0, 4.0), dpi=90)
    rel, raw = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for i in range(mags.shape[1]):
        (line,) = rel.plot(times, mags[:, i] / final[i], label=f"feature {i}")
        raw.plot(times, mags[:, i], color=line.get_color())
        if ode is not None:
            ode_i = np.asarray(ode)[:, i]
            rel.plot(times, ode_i / final[i], "--", color=line.get_color(), linewidth=1.0)
            raw.plot(times, ode_i, "--", color=line.get_color(), linewidth=1.0)
        if np.isfinite(crit[i]):
            rel.axvline(crit[i], linestyle=":", color=line.get_color())
    rel.axhline(fraction, color="gray", linewidth=0.5)
    rel.set(xlabel="time = lr x step", ylabel="|Wbar u_i| / final", ylim=(0.0, 1.1),
            title=f"fraction of final (dotted: critical times, {fraction:g})")
    raw.set(xlabel="time = lr x step", ylabel="|Wbar u_i|", yscale="log", title="encoder gain per feature")
    rel.legend(loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------ model
class DeepLinearSSL(LightningModule):
    """Deep linear encoder + linear predictor (JEPA) or decoder (MAE), trained by GD/SGD (module docstring).

    Batches: ``{"x": [B, dim], "y": [B, dim]}``. The loss is computed from the batch's samples, i.e. from its
    empirical moments; on a full batch of data with exact covariances (``datamodules.linear``) plain GD is then
    exactly the Euler discretization, with step ``lr``, of the population gradient flow the theory solves.

    Args:
        dim: data dimension (the layers are ``dim x dim``).
        depth: number of encoder layers ``L``.
        objective: ``jepa`` (predict the stop-gradient encoding of y) or ``mae`` (reconstruct y).
        init_scale: ``eps``: the encoder starts at ``Wbar(0) = eps O`` (every layer ``eps^(1/L)`` times an
            orthogonal matrix), balanced with the predictor/decoder.
        init: ``orthogonal`` (random orthogonal layers, from ``init_seed``) or ``identity``.
        lr: the step size; continuous time is ``lr * global_step``.
        optimizer: ``gd`` (full-batch gradient descent: the data must give the whole set as every batch) or
            ``sgd`` (minibatches); both plain ``torch.optim.SGD`` without momentum or decay.
        critical_fraction: the fraction of the final magnitude that defines a critical time in the figure.
        figure_every_n_val: draw the figure at every n-th validation (it is always drawn at the end of fit).
    """

    def __init__(self, dim: int, depth: int = 3, objective: Objective = "jepa", init_scale: float = 0.01,
                 init: Literal["orthogonal", "identity"] = "orthogonal", init_seed: int = 0, lr: float = 0.05,
                 optimizer: Literal["gd", "sgd"] = "gd", critical_fraction: float = 0.5,
                 figure_every_n_val: int = 1) -> None:
        super().__init__()
        if dim < 1 or depth < 1:
            raise ValueError(f"dim and depth must be >= 1, got dim={dim}, depth={depth}")
        _check_objective(objective)
        if not 0.0 < init_scale:
            raise ValueError(f"init_scale must be > 0, got {init_scale}")
        if init not in ("orthogonal", "identity"):
            raise ValueError(f"init must be 'orthogonal' or 'identity', got {init!r}")
        if optimizer not in ("gd", "sgd"):
            raise ValueError(f"optimizer must be 'gd' or 'sgd', got {optimizer!r}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not 0.0 < critical_fraction < 1.0:
            raise ValueError(f"critical_fraction must be in (0, 1), got {critical_fraction}")
        if figure_every_n_val < 1:
            raise ValueError(f"figure_every_n_val must be >= 1, got {figure_every_n_val}")
        self.save_hyperparameters()
        self.dim, self.depth, self.objective, self.lr = dim, depth, objective, lr
        self.optimizer_kind, self.critical_fraction = optimizer, critical_fraction
        self.figure_every_n_val = figure_every_n_val
        self.encoder = nn.Sequential(*[nn.Linear(dim, dim, bias=False) for _ in range(depth)])
        self.head = nn.Linear(dim, dim, bias=False)  # JEPA: predictor (latent -> latent); MAE: decoder
        self.reset_parameters(init_scale, init, init_seed)
        # feature directions (columns) in which magnitudes are measured; from the DataModule's `basis` if any
        self.register_buffer("feature_basis", torch.eye(dim), persistent=False)
        self._steps: list[int] = []
        self._mags: list[torch.Tensor] = []
        self._validations = 0
        self._figure_step: int | None = None

    @torch.no_grad()
    def reset_parameters(self, init_scale: float, init: str = "orthogonal", seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)  # drawn on the CPU (also when built under a meta/cuda device)
        per_layer = init_scale ** (1.0 / self.depth)
        eye = torch.eye(self.dim, dtype=torch.float64, device="cpu")
        product = eye
        for layer in self.encoder:
            o = random_orthogonal(self.dim, g) if init == "orthogonal" else eye
            layer.weight.copy_(per_layer * o)
            product = o @ product
        head = eye if self.objective == "jepa" else product.T
        self.head.weight.copy_(per_layer * head)

    # ----------------------------------------------------------------- the objective
    def end_to_end(self) -> torch.Tensor:
        """``Wbar = W_L ... W_1`` [dim, dim]."""
        w = self.encoder[0].weight
        for layer in self.encoder[1:]:
            w = layer.weight @ w
        return w

    def loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(loss, targets)`` on a batch: 1/2 the squared error summed over dimensions, mean over samples."""
        x, y = batch["x"], batch["y"]
        if x.shape[-1] != self.dim or y.shape != x.shape:
            raise ValueError(f"batch x {tuple(x.shape)} / y {tuple(y.shape)}: expected two [B, {self.dim}] "
                             f"tensors (model.init_args.dim={self.dim})")
        pred = self.head(self.encoder(x))
        if self.objective == "jepa":
            with torch.no_grad():
                target = self.encoder(y)  # StopGrad(Wbar y)
        else:
            target = y
        return 0.5 * (pred - target).pow(2).sum(-1).mean(), target

    @torch.no_grad()
    def feature_magnitudes(self) -> torch.Tensor:
        """``|Wbar u_i|`` per feature direction ``u_i`` (columns of ``feature_basis``) [dim]."""
        return torch.linalg.vector_norm(self.end_to_end() @ self.feature_basis.to(self.dtype), dim=0)

    # ----------------------------------------------------------------- Lightning hooks
    def setup(self, stage: str) -> None:
        basis = getattr(self.trainer.datamodule, "basis", None) if self.trainer is not None else None
        if basis is not None:
            basis = torch.as_tensor(basis, dtype=torch.float32)
            if basis.shape != (self.dim, self.dim):
                raise ValueError(f"the DataModule's basis has shape {tuple(basis.shape)}, expected "
                                 f"[{self.dim}, {self.dim}] (model.init_args.dim={self.dim})")
            self.feature_basis.copy_(basis)

    def on_train_start(self) -> None:
        full = getattr(self.trainer.datamodule, "full_batch", None)
        if self.optimizer_kind == "gd" and full is False:
            raise ValueError("model.init_args.optimizer=gd is full-batch gradient descent but the data gives "
                             f"minibatches (data batch_size={self.trainer.datamodule.batch_size}); set "
                             "data.init_args.batch_size=null, or model.init_args.optimizer=sgd")
        if self.optimizer_kind == "sgd" and full is True:
            rank_zero_warn("model.init_args.optimizer=sgd on full batches is gradient descent")

    def training_step(self, batch: dict[str, Any] | None, batch_idx: int):
        if batch is None:
            return None
        mags = self.feature_magnitudes()  # of the parameters this step starts from
        self._record(self.global_step, mags)
        loss, target = self.loss(batch)
        if self._logging_step():
            bs = batch["x"].shape[0]
            self.log("train/loss", loss, prog_bar=True, batch_size=bs)
            self.log("train/lr", self.lr, batch_size=bs)
            self.log("train/time", self.lr * self.global_step, batch_size=bs)
            if self.objective == "jepa":
                self.log("train/target_std", target.std(0).mean(), batch_size=bs)
            self.log_dict({f"features/mag_{i}": m for i, m in enumerate(mags)}, batch_size=bs)
        return loss

    def _logging_step(self) -> bool:
        """Whether the Trainer writes this step's metrics (every `log_every_n_steps`): `self.log` costs ~1 ms,
        longer than a step of this model, so the scalars are only logged when they are written."""
        every = self.trainer.log_every_n_steps
        return every > 0 and (self.global_step + 1) % every == 0

    def on_train_end(self) -> None:
        self._record(self.global_step, self.feature_magnitudes())

    def validation_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        if batch is None:
            return None
        loss, _ = self.loss(batch)
        self.log("val/loss", loss, prog_bar=True, batch_size=batch["x"].shape[0])

    def test_step(self, batch: dict[str, Any] | None, batch_idx: int) -> None:
        if batch is None:
            return None
        loss, _ = self.loss(batch)
        self.log("test/loss", loss, batch_size=batch["x"].shape[0])

    def on_validation_epoch_end(self) -> None:
        if self.trainer.sanity_checking or not self._steps:
            return
        self._validations += 1
        if self._validations % self.figure_every_n_val == 0:
            self.log_figure()

    def on_fit_end(self) -> None:
        if self._figure_step != self.global_step:  # not drawn at this step by the last validation
            self.log_figure()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.0)

    # ----------------------------------------------------------------- history and figure
    def _record(self, step: int, mags: torch.Tensor) -> None:
        if self._steps and self._steps[-1] == step:
            self._mags[-1] = mags.detach().clone()
            return
        self._steps.append(int(step))
        self._mags.append(mags.detach().clone())

    def magnitude_history(self) -> tuple[np.ndarray, np.ndarray]:
        """``(times [T], magnitudes [T, dim])`` recorded in this process (one record per training step, before
        it, and one after the last), times in continuous time ``lr * step``."""
        if not self._steps:
            return np.zeros(0), np.zeros((0, self.dim))
        times = self.lr * np.asarray(self._steps, dtype=np.float64)
        return times, torch.stack(self._mags).float().cpu().numpy()

    def figure(self, title: str = ""):
        times, mags = self.magnitude_history()
        return magnitude_figure(times, mags, self.critical_fraction,
                                title=title or f"{self.objective.upper()}, depth {self.depth}: learning order")

    def log_figure(self, tag: str = "features/magnitudes") -> bool:
        """Add the figure to every logger with ``add_figure`` (TensorBoard), on rank zero. True if one did."""
        if self.trainer is None or not self.trainer.is_global_zero or len(self._steps) < 2:
            return False
        targets = [exp for logger in self.loggers if hasattr(exp := logger.experiment, "add_figure")]
        if not targets:
            return False
        fig = self.figure()
        self._figure_step = self.global_step
        for exp in targets:
            exp.add_figure(tag, fig, global_step=self.global_step, close=False)
            if hasattr(exp, "flush"):
                exp.flush()
        return True
