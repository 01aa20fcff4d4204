"""Synthetic ``(x, y)`` pairs for the deep-linear JEPA vs MAE theory (Littwin et al., 2024, "How JEPA Avoids
Noisy Features"). Batches: ``{"x": float32 [B, d], "y": float32 [B, d]}``.

The paper's setting: two views ``x, y`` in ``R^d`` whose covariances are simultaneously diagonalizable,

    Sigma_xx = R diag(sigma_i^2) R^T,   Sigma_yx = R diag(lambda_i) R^T,   Sigma_yy = R diag(s_i^2) R^T,

so that the data is ``d`` independent features (the columns ``u_i`` of the orthogonal ``R``, exposed as
``basis``). Feature ``i`` is described by its cross-covariance ``lambda_i = E[x_i y_i]`` and its regression
coefficient ``rho_i = lambda_i / sigma_i^2`` (``E[y_i | x_i] = rho_i x_i``): the recipe gives ``lambdas`` and
``rhos`` and the input variances follow, ``sigma_i^2 = lambda_i / rho_i``. The target view is
``y_i = rho_i x_i + n_i`` with independent noise of variance ``noise`` (so ``s_i^2 = lambda_i rho_i + noise``),
unless ``y_variances`` gives ``s_i^2`` directly; the joint covariance of ``(x_i, y_i)`` must then be positive
semi-definite, ``lambda_i^2 <= sigma_i^2 s_i^2``.

``exact_covariance=True`` (the default) transforms the Gaussian draws so that the *empirical* moments of the
generated set equal the requested ones exactly (mean 0, ``X^T X / N = Sigma_xx``, ``Y^T X / N = Sigma_yx``,
``Y^T Y / N = Sigma_yy``): full-batch gradient descent on it is then exactly the population dynamics the paper
analyses (no sampling error), up to the step size. ``False`` gives plain i.i.d. samples.

``batch_size=None`` (the default) is gradient descent: every training batch is the whole training set and an
"epoch" is ``steps_per_epoch`` identical full batches (so the Trainer's per-epoch machinery does not run every
step); a number gives shuffled minibatches (SGD). Validation is one batch of a separate ``num_val_samples`` draw.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from jepa_lightning.seeding import mix_seed, random_orthogonal

from .common import JEPADataModule


def _as_list(name: str, values: float | Sequence[float], d: int) -> list[float]:
    if isinstance(values, (int, float)):
        return [float(values)] * d
    values = [float(v) for v in values]
    if len(values) != d:
        raise ValueError(f"{name} has {len(values)} values, expected one per feature ({d}, as many as lambdas)")
    return values


def _check_positive(name: str, values: Sequence[float], allow_zero: bool = False) -> None:
    for i, v in enumerate(values):
        ok = math.isfinite(v) and (v >= 0 if allow_zero else v > 0)
        if not ok:
            raise ValueError(f"{name}[{i}] = {v}: expected a finite value {'>= 0' if allow_zero else '> 0'}")


def _whiten(z: torch.Tensor) -> torch.Tensor:
    """Center ``z [N, k]`` and make its empirical second moment the identity exactly: ``z^T z / N = I``."""
    z = z - z.mean(0, keepdim=True)
    evals, evecs = torch.linalg.eigh(z.T @ z / z.shape[0])
    return z @ (evecs * evals.rsqrt().unsqueeze(0)) @ evecs.T


class PairsFullBatch(Dataset):
    """``length`` items, each the whole set ``{"x": [N, d], "y": [N, d]}`` (load with ``batch_size=None``)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, length: int = 1) -> None:
        self.x, self.y, self.length = x, y, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(index)
        return {"x": self.x, "y": self.y}


class PairsSamples(Dataset):
    """One ``{"x": [d], "y": [d]}`` pair per index (minibatches are collated by the DataLoader)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[index], "y": self.y[index]}


class LinearPairsDataModule(JEPADataModule):
    """Pairs ``(x, y)`` with per-feature cross-covariance ``lambdas`` and regression coefficients ``rhos``.

    Args:
        lambdas: ``lambda_i = E[x_i y_i] > 0`` per feature.
        rhos: ``rho_i > 0`` per feature; ``sigma_i^2 = E[x_i^2] = lambda_i / rho_i``.
        noise: variance of the target's noise, ``y_i = rho_i x_i + n_i`` (one value, or one per feature).
        y_variances: ``E[y_i^2]`` per feature instead (``noise`` is then unused); needs
            ``lambda_i^2 <= sigma_i^2 E[y_i^2]``.
        num_samples, num_val_samples: sizes of the training and validation sets (separate draws).
        exact_covariance: make the empirical moments of each set equal the requested ones exactly.
        rotate: express the features in a random orthogonal basis ``R`` (seeded) instead of the axes; ``basis``
            holds the feature directions as columns either way, and a method reads it to measure per-feature
            magnitudes.
        batch_size: ``None``: gradient descent (the whole training set each step); else SGD minibatches.
        steps_per_epoch: full-batch mode only: optimizer steps per epoch.
        seed: seeds the draws, the rotation and the minibatch order.
    """

    def __init__(
        self,
        lambdas: list[float],
        rhos: list[float],
        noise: float | list[float] = 0.1,
        y_variances: list[float] | None = None,
        num_samples: int = 1024,
        num_val_samples: int = 256,
        exact_covariance: bool = True,
        rotate: bool = False,
        batch_size: int | None = None,
        steps_per_epoch: int = 100,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        if batch_size is not None and not 1 <= batch_size <= num_samples:
            raise ValueError(f"batch_size = {batch_size}: expected None (full batch: gradient descent) or a "
                             f"number in [1, num_samples={num_samples}]")
        super().__init__(batch_size=batch_size or num_samples, num_workers=num_workers, pin_memory=False,
                         drop_last=True, seed=seed)
        self.save_hyperparameters()
        d = len(lambdas)
        if d == 0:
            raise ValueError("lambdas is empty: expected one cross-covariance per feature")
        if len(rhos) != d:
            raise ValueError(f"rhos has {len(rhos)} values but lambdas has {d}: expected one of each per feature")
        self.lambdas = torch.tensor([float(v) for v in lambdas], dtype=torch.float64, device="cpu")
        self.rhos = torch.tensor([float(v) for v in rhos], dtype=torch.float64, device="cpu")
        _check_positive("lambdas", self.lambdas.tolist())
        _check_positive("rhos", self.rhos.tolist())
        self.sigma_x2 = self.lambdas / self.rhos
        if y_variances is None:
            noise_list = _as_list("noise", noise, d)
            _check_positive("noise", noise_list, allow_zero=True)
            self.sigma_y2 = self.lambdas * self.rhos + torch.tensor(noise_list, dtype=torch.float64, device="cpu")
        else:
            y_list = _as_list("y_variances", y_variances, d)
            _check_positive("y_variances", y_list)
            self.sigma_y2 = torch.tensor(y_list, dtype=torch.float64, device="cpu")
            for i in range(d):
                lam, sx2, sy2 = float(self.lambdas[i]), float(self.sigma_x2[i]), float(self.sigma_y2[i])
                if lam * lam > sx2 * sy2 * (1 + 1e-12):
                    raise ValueError(
                        f"feature {i}: lambdas[{i}]^2 = {lam * lam:.6g} exceeds sigma_x^2 * y_variances[{i}] = "
                        f"{sx2:.6g} * {sy2:.6g}: the joint covariance of (x_{i}, y_{i}) would not be positive "
                        f"semi-definite (need y_variances[{i}] >= lambdas[{i}] * rhos[{i}] = {lam * lam / sx2:.6g})")
        min_n = 2 * d + 1 if exact_covariance else 1
        for name, n in (("num_samples", num_samples), ("num_val_samples", num_val_samples)):
            if n < min_n:
                raise ValueError(f"{name} = {n}: expected at least {min_n} "
                                 + ("(exact_covariance whitens 2*dim Gaussian columns)" if exact_covariance else ""))
        if steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch = {steps_per_epoch}: expected >= 1")
        self.dim = d
        self.num_samples, self.num_val_samples = num_samples, num_val_samples
        self.exact_covariance, self.rotate = exact_covariance, rotate
        self.full_batch = batch_size is None
        self.steps_per_epoch = steps_per_epoch
        g = torch.Generator().manual_seed(mix_seed(seed, 0))
        self.basis = random_orthogonal(d, g) if rotate else torch.eye(d, dtype=torch.float64, device="cpu")

    # ------------------------------------------------------------------ population moments
    def _rotate(self, diag: torch.Tensor) -> torch.Tensor:
        return self.basis @ torch.diag(diag) @ self.basis.T

    @property
    def cov_xx(self) -> torch.Tensor:
        return self._rotate(self.sigma_x2)

    @property
    def cov_yx(self) -> torch.Tensor:
        return self._rotate(self.lambdas)

    @property
    def cov_yy(self) -> torch.Tensor:
        return self._rotate(self.sigma_y2)

    # ------------------------------------------------------------------ sampling
    def sample(self, n: int, seed: int, exact: bool | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` pairs ``(x [n, d], y [n, d])`` float32, drawn from ``seed``.

        Per feature, from two unit Gaussians ``a_i, b_i`` (whitened exactly when ``exact``):
        ``x_i = sigma_i a_i`` and ``y_i = (lambda_i / sigma_i) a_i + sqrt(s_i^2 - lambda_i^2 / sigma_i^2) b_i``,
        which has ``E[x_i^2] = sigma_i^2``, ``E[x_i y_i] = lambda_i``, ``E[y_i^2] = s_i^2``; then rotated by ``R``.
        """
        exact = self.exact_covariance if exact is None else exact
        g = torch.Generator().manual_seed(mix_seed(seed, 1))
        z = torch.randn(n, 2 * self.dim, generator=g, dtype=torch.float64, device="cpu")
        if exact:
            z = _whiten(z)
        a, b = z[:, :self.dim], z[:, self.dim:]
        sx = self.sigma_x2.sqrt()
        resid = (self.sigma_y2 - self.lambdas ** 2 / self.sigma_x2).clamp_min(0.0).sqrt()
        x = a * sx
        y = a * (self.lambdas / sx) + b * resid
        return (x @ self.basis.T).float(), (y @ self.basis.T).float()

    def setup(self, stage: str | None = None) -> None:
        if self.train_dataset is None:
            x, y = self.sample(self.num_samples, mix_seed(self.seed, 10))
            self.train_x, self.train_y = x, y
            if self.full_batch:
                self.train_dataset = PairsFullBatch(x, y, self.steps_per_epoch)
            else:
                self.train_dataset = PairsSamples(x, y)
            self.train_eval_dataset = PairsFullBatch(x, y)
        if self.val_dataset is None:
            x, y = self.sample(self.num_val_samples, mix_seed(self.seed, 11))
            self.val_dataset = self.test_dataset = PairsFullBatch(x, y)

    # ------------------------------------------------------------------ loaders
    def _full(self, dataset: Dataset | None, split: str) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__} has no {split} dataset: call setup() first")
        return DataLoader(dataset, batch_size=None, shuffle=False, num_workers=0)

    def train_dataloader(self) -> DataLoader:
        if self.full_batch:
            return self._full(self.train_dataset, "train")
        return super().train_dataloader()

    def val_dataloader(self) -> DataLoader:
        return self._full(self.val_dataset, "val")

    def test_dataloader(self) -> DataLoader:
        return self._full(self.test_dataset, "test")

    def train_eval_dataloader(self) -> DataLoader:
        if self.train_eval_dataset is None:
            self.setup("fit")
        return self._full(self.train_eval_dataset, "train_eval")
