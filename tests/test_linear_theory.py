"""Deep linear JEPA vs MAE (Littwin et al., 2024): the synthetic pairs have the requested covariances, the ODE
matches closed forms and the trained model, JEPA and MAE learn two features in opposite orders past the
inversion depth, the learning-order figure reaches TensorBoard, the tiny recipes run through the CLI, and the
fidelity benchmark's smoke run."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import torch
from conftest import ROOT, load_benchmark, run_script
from lightning.pytorch import Trainer
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from datamodules.linear import LinearPairsDataModule
from jepa_lightning.cli import main as cli_main
from jepa_lightning.methods.linear_theory import (
    DeepLinearSSL,
    asymptote,
    critical_time,
    integrate_feature_ode,
    learning_order,
    magnitude_figure,
    ode_critical_time,
)

LAMBDAS, RHOS, EPS = [1.0, 0.75], [0.5, 1.0], 0.01  # feature 0: high lambda / low rho; feature 1: the reverse
RECIPES = ROOT / "recipes" / "linear_theory"


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Steps of this tiny model are ~1 ms: thread-pool hand-offs on a busy machine would dominate them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def second_moments(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
    x, y = x.double(), y.double()
    n = x.shape[0]
    return x.T @ x / n, y.T @ x / n, y.T @ y / n


def fit(model: DeepLinearSSL, dm: LinearPairsDataModule, steps: int, **trainer_kwargs) -> Trainer:
    kwargs = dict(accelerator="cpu", devices=1, max_steps=steps, logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
                  num_sanity_val_steps=0)
    kwargs.update(trainer_kwargs)
    trainer = Trainer(**kwargs)
    trainer.fit(model, datamodule=dm)
    return trainer


# ------------------------------------------------------------------------------------------------ data
@pytest.mark.parametrize("rotate", [False, True])
def test_exact_covariance_pairs_have_the_requested_moments(rotate):
    dm = LinearPairsDataModule([2.0, 1.0, 0.5], [0.4, 0.8, 1.5], noise=[0.1, 0.2, 0.3], num_samples=64,
                               rotate=rotate, seed=3)
    dm.setup("fit")
    xx, yx, yy = second_moments(dm.train_x, dm.train_y)
    assert torch.allclose(xx, dm.cov_xx, atol=1e-5) and torch.allclose(yx, dm.cov_yx, atol=1e-5)
    assert torch.allclose(yy, dm.cov_yy, atol=1e-5)
    assert dm.train_x.double().mean(0).abs().max() < 1e-6
    # the per-feature numbers in the feature basis: sigma^2 = lambda / rho, E[y^2] = lambda rho + noise
    basis = dm.basis
    assert torch.allclose(torch.diagonal(basis.T @ xx @ basis), torch.tensor([5.0, 1.25, 1 / 3], dtype=torch.float64),
                          atol=1e-5)
    assert torch.allclose(torch.diagonal(basis.T @ yy @ basis), torch.tensor([0.9, 1.0, 1.05], dtype=torch.float64),
                          atol=1e-5)
    off = basis.T @ yx @ basis - torch.diag(torch.diagonal(basis.T @ yx @ basis))
    assert off.abs().max() < 1e-5  # simultaneously diagonal
    assert torch.allclose(basis.T @ basis, torch.eye(3, dtype=torch.float64), atol=1e-10)
    assert rotate == (not torch.allclose(basis, torch.eye(3, dtype=torch.float64)))
    # the validation set is another draw with the same moments
    val = dm.val_dataset[0]
    assert not torch.equal(val["x"][:5], dm.train_x[:5])
    assert torch.allclose(second_moments(val["x"], val["y"])[1], dm.cov_yx, atol=1e-5)


def test_sampled_pairs_match_the_covariances_statistically():
    dm = LinearPairsDataModule(LAMBDAS, RHOS, noise=0.1, num_samples=40_000, exact_covariance=False, rotate=True)
    dm.setup("fit")
    xx, yx, yy = second_moments(dm.train_x, dm.train_y)
    for emp, pop in ((xx, dm.cov_xx), (yx, dm.cov_yx), (yy, dm.cov_yy)):
        err = (emp - pop).abs().max().item()
        assert 1e-6 < err < 0.06  # sampling error ~ sigma^2 * sqrt(2 / N) ~ 0.015: really sampled, and right


def test_batches_full_batch_and_minibatch():
    dm = LinearPairsDataModule(LAMBDAS, RHOS, num_samples=32, num_val_samples=16, steps_per_epoch=7)
    dm.setup("fit")
    loader = dm.train_dataloader()
    batches = list(loader)
    assert len(batches) == 7 and all(torch.equal(b["x"], dm.train_x) for b in batches)
    assert batches[0]["x"].shape == (32, 2) and batches[0]["y"].dtype == torch.float32
    assert next(iter(dm.val_dataloader()))["x"].shape == (16, 2)
    mini = LinearPairsDataModule(LAMBDAS, RHOS, num_samples=32, batch_size=8)
    mini.setup("fit")
    batches = list(mini.train_dataloader())
    assert len(batches) == 4 and batches[0]["x"].shape == (8, 2) and batches[0]["y"].shape == (8, 2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(lambdas=[1.0, 0.5], rhos=[0.5]), r"rhos has 1 values but lambdas has 2"),
    (dict(lambdas=[], rhos=[]), r"lambdas is empty"),
    (dict(lambdas=[1.0, -0.5], rhos=[0.5, 1.0]), r"lambdas\[1\] = -0.5: expected a finite value > 0"),
    (dict(lambdas=[1.0], rhos=[0.0]), r"rhos\[0\] = 0.0"),
    (dict(lambdas=[1.0], rhos=[0.5], noise=-0.1), r"noise\[0\] = -0.1: expected a finite value >= 0"),
    (dict(lambdas=[1.0, 1.0], rhos=[0.5, 0.5], noise=[0.1]), r"noise has 1 values, expected one per feature \(2"),
    (dict(lambdas=[1.0, 1.0], rhos=[0.5, 2.0], y_variances=[1.0, 1.0]),
     r"feature 1: lambdas\[1\]\^2 = 1 exceeds .* not be positive semi-definite .*y_variances\[1\] >= .* = 2"),
    (dict(lambdas=[1.0], rhos=[0.5], num_samples=2), r"num_samples = 2: expected at least 3"),
    (dict(lambdas=[1.0], rhos=[0.5], num_samples=8, batch_size=9), r"batch_size = 9: expected None .*\[1, num"),
    (dict(lambdas=[1.0], rhos=[0.5], steps_per_epoch=0), r"steps_per_epoch = 0"),
])
def test_bad_inputs_name_the_key_and_value(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LinearPairsDataModule(**kwargs)


def test_y_variances_at_the_psd_boundary_are_valid():
    dm = LinearPairsDataModule([1.0], [2.0], y_variances=[2.0], num_samples=16)  # lambda^2 = sigma_x^2 s^2 = 1
    dm.setup("fit")
    x, y = dm.train_x.double(), dm.train_y.double()
    assert torch.allclose(y, 2.0 * x, atol=1e-5)  # y = rho x exactly: a singular but valid joint covariance


# ------------------------------------------------------------------------------------------------ theory
def test_ode_matches_closed_forms_at_depth_one():
    lam, rho, w0 = 0.8, 0.6, 0.01
    t = np.linspace(0.0, 20.0, 41)
    # MAE, L = 1: dw/dt = w (lambda - sigma^2 w^2), a Bernoulli equation: w^-2 relaxes exponentially to 1/rho
    closed = (1 / rho + (1 / w0**2 - 1 / rho) * np.exp(-2 * lam * t)) ** -0.5
    ode = integrate_feature_ode("mae", [lam], [rho], 1, w0, t)[:, 0]
    np.testing.assert_allclose(ode, closed, rtol=1e-6)
    p = 0.5
    t_mae = math.log((1 / w0**2 - 1 / rho) / ((1 / p**2 - 1) / rho)) / (2 * lam)
    assert ode_critical_time("mae", [lam], [rho], 1, w0, p)[0] == pytest.approx(t_mae, rel=1e-6)
    # JEPA, L = 1: dw/dt = w^2 (lambda - sigma^2 w), separable: t(w) = (1/w0 - 1/w + ln(w (rho - w0) / (w0 (rho - w))) / rho) / lambda
    w = p * rho
    t_jepa = (1 / w0 - 1 / w + math.log(w * (rho - w0) / (w0 * (rho - w))) / rho) / lam
    assert ode_critical_time("jepa", [lam], [rho], 1, w0, p)[0] == pytest.approx(t_jepa, rel=1e-6)


def test_ode_reaches_the_asymptotes_and_the_order_inverts_with_depth():
    late = integrate_feature_ode("jepa", LAMBDAS, RHOS, 3, EPS, [0.0, 1e4])[-1]
    np.testing.assert_allclose(late, np.array(RHOS) ** 3, rtol=1e-6)
    late = integrate_feature_ode("mae", LAMBDAS, RHOS, 3, EPS, [0.0, 1e3])[-1]
    np.testing.assert_allclose(late, asymptote("mae", np.array(RHOS), 3), rtol=1e-6)
    jepa = {L: learning_order(ode_critical_time("jepa", LAMBDAS, RHOS, L, EPS)) for L in range(1, 6)}
    mae = {L: learning_order(ode_critical_time("mae", LAMBDAS, RHOS, L, EPS)) for L in range(1, 6)}
    assert all(o == [0, 1] for o in mae.values())  # by lambda at every depth
    assert jepa == {1: [0, 1], 2: [0, 1], 3: [1, 0], 4: [1, 0], 5: [1, 0]}  # by rho from depth 3 on


def test_critical_time_interpolates_and_reports_never():
    t = np.array([0.0, 1.0, 2.0, 3.0])
    m = np.array([[0.0, 0.0], [0.2, 0.0], [0.6, 0.1], [1.0, 0.2]])
    got = critical_time(t, m, 0.5, final=[1.0, 1.0])
    assert got[0] == pytest.approx(1.75) and math.isnan(got[1])
    assert critical_time(t, m, 0.5)[1] == pytest.approx(2.0)  # default: half of the last record (0.2)


# ------------------------------------------------------------------------------------------------ model
@pytest.mark.parametrize("objective", ["jepa", "mae"])
def test_initialization_is_balanced_and_scaled(objective):
    model = DeepLinearSSL(dim=3, depth=3, objective=objective, init_scale=0.008, init="orthogonal", init_seed=1)
    wbar = model.end_to_end().detach().double()
    assert torch.allclose(wbar.T @ wbar, 0.008**2 * torch.eye(3, dtype=torch.float64), atol=1e-9)
    layers = [layer.weight.detach().double() for layer in model.encoder]
    for low, high in zip(layers[:-1], layers[1:]):  # W_{a+1}^T W_{a+1} = W_a W_a^T
        assert torch.allclose(high.T @ high, low @ low.T, atol=1e-7)  # float32 weights
    head = model.head.weight.detach().double()
    assert torch.allclose(head.T @ head, layers[-1] @ layers[-1].T, atol=1e-7)
    e2e = head @ wbar  # aligned: MAE's V Wbar is a multiple of the identity, JEPA's V a multiple of it
    target = head if objective == "jepa" else e2e
    assert torch.allclose(target, target[0, 0] * torch.eye(3, dtype=torch.float64), atol=1e-7)
    assert torch.allclose(model.feature_magnitudes(), torch.full((3,), 0.008), rtol=1e-5)


def test_jepa_targets_carry_no_gradient_and_mae_loss_is_reconstruction():
    torch.manual_seed(0)
    batch = {"x": torch.randn(16, 2), "y": torch.randn(16, 2)}
    jepa = DeepLinearSSL(dim=2, depth=2, objective="jepa", init_scale=0.5)
    loss, target = jepa.loss(batch)
    assert not target.requires_grad
    assert loss.item() == pytest.approx(0.5 * (jepa.head(jepa.encoder(batch["x"])) - jepa.encoder(batch["y"]))
                                        .pow(2).sum(1).mean().item(), rel=1e-6)
    mae = DeepLinearSSL(dim=2, depth=2, objective="mae", init_scale=0.5)
    loss, target = mae.loss(batch)
    assert target is batch["y"]
    with pytest.raises(ValueError, match=r"expected two \[B, 2\] tensors \(model.init_args.dim=2\)"):
        mae.loss({"x": torch.randn(4, 3), "y": torch.randn(4, 3)})


@pytest.mark.parametrize("kwargs, match", [
    (dict(objective="byol"), r"objective must be 'jepa' or 'mae', got 'byol'"),
    (dict(init_scale=0.0), r"init_scale must be > 0"),
    (dict(optimizer="adam"), r"optimizer must be 'gd' or 'sgd'"),
    (dict(depth=0), r"depth=0"),
])
def test_model_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DeepLinearSSL(dim=2, **kwargs)


def test_gd_needs_full_batches():
    dm = LinearPairsDataModule(LAMBDAS, RHOS, num_samples=32, batch_size=8)
    with pytest.raises(ValueError, match=r"optimizer=gd is full-batch .* batch_size=8.*batch_size=null"):
        fit(DeepLinearSSL(dim=2, depth=1), dm, steps=2)


def test_gradient_descent_follows_the_ode():
    """Exact covariances + full batch + balanced init: GD is Euler on the per-feature ODE (rotated basis)."""
    depth, lr = 2, 0.02
    ode_t = ode_critical_time("mae", LAMBDAS, RHOS, depth, EPS)
    dm = LinearPairsDataModule(LAMBDAS, RHOS, num_samples=16, rotate=True, steps_per_epoch=250)
    model = DeepLinearSSL(dim=2, depth=depth, objective="mae", init_scale=EPS, lr=lr)
    fit(model, dm, steps=math.ceil(1.3 * ode_t.max() / lr))
    times, mags = model.magnitude_history()
    assert times[-1] == pytest.approx(lr * model.global_step) and mags.shape == (len(times), 2)
    measured = critical_time(times, mags, 0.5, asymptote("mae", np.array(RHOS), depth))
    np.testing.assert_allclose(measured, ode_t, rtol=0.03)
    curve = integrate_feature_ode("mae", LAMBDAS, RHOS, depth, EPS, times)
    np.testing.assert_allclose(mags, curve, rtol=0.05, atol=2e-3)


def test_short_runs_order_two_features_as_the_theory_says():
    """Depth 4 (past this pair's inversion depth 3): MAE learns the high-lambda feature 0 first, JEPA the
    high-rho feature 1; at depth 1 JEPA still follows lambda."""
    orders = {}
    for objective, depth, lr, horizon in (("mae", 4, 0.1, 18.0), ("jepa", 4, 1.0, 1500.0), ("jepa", 1, 1.0, 160.0)):
        dm = LinearPairsDataModule(LAMBDAS, RHOS, num_samples=16, rotate=True, steps_per_epoch=500)
        model = DeepLinearSSL(dim=2, depth=depth, objective=objective, init_scale=EPS, lr=lr, init_seed=depth)
        fit(model, dm, steps=int(horizon / lr))
        times, mags = model.magnitude_history()
        crit = critical_time(times, mags, 0.5, asymptote(objective, np.array(RHOS), depth))
        assert np.all(np.isfinite(crit)), (objective, depth, crit)
        orders[objective, depth] = learning_order(crit)
    assert orders["mae", 4] == [0, 1]
    assert orders["jepa", 4] == [1, 0]
    assert orders["jepa", 1] == [0, 1]


# ------------------------------------------------------------------------------------------------ figure
def test_figure_has_one_curve_per_feature_and_critical_marks():
    t = np.linspace(0, 10, 50)
    mags = np.stack([1 / (1 + np.exp(-(t - 3))), 2 / (1 + np.exp(-(t - 6)))], 1)
    fig = magnitude_figure(t, mags, 0.5, ode=mags * 1.01)
    rel, raw = fig.axes
    assert [line.get_label() for line in rel.get_lines()][:1] == ["feature 0"]
    assert len(raw.get_lines()) == 4  # measured + ODE per feature
    marks = [line for line in rel.get_lines() if line.get_linestyle() == ":"]
    assert len(marks) == 2 and marks[0].get_xdata()[0] == pytest.approx(critical_time(t, mags)[0])


def test_figure_reaches_tensorboard_and_other_loggers_do_not_crash(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    dm = LinearPairsDataModule(LAMBDAS, RHOS, num_samples=16, num_val_samples=16, steps_per_epoch=20)
    model = DeepLinearSSL(dim=2, depth=1, objective="mae", init_scale=EPS, lr=0.1)
    tb = TensorBoardLogger(tmp_path, name="tb")
    fit(model, dm, steps=40, logger=[tb, CSVLogger(tmp_path, name="csv")], limit_val_batches=1,
        log_every_n_steps=5)
    events = EventAccumulator(tb.log_dir, size_guidance={"images": 0}).Reload()
    images = events.Images("features/magnitudes")
    assert [im.step for im in images] == [20, 40]  # one per validation (2 epochs), none repeated at fit end
    assert images[-1].width > 100 and images[-1].encoded_image_string[:4] == b"\x89PNG"
    scalars = events.Tags()["scalars"]
    assert {"features/mag_0", "features/mag_1", "train/loss", "train/time", "val/loss"} <= set(scalars)
    mag = events.Scalars("features/mag_0")
    assert mag[-1].value > mag[0].value  # learned
    # without any logger: nothing to draw on, no error
    model = DeepLinearSSL(dim=2, depth=1, objective="mae", init_scale=EPS, lr=0.1)
    fit(model, dm, steps=5, logger=False, limit_val_batches=1)
    assert model.log_figure() is False


# ------------------------------------------------------------------------------------------------ CLI
def cli_args(recipe: str, tmp_path, *extra: str, subcommand: str = "fit") -> list[str]:
    return [subcommand, "--config", str(RECIPES / recipe), "--trainer.enable_progress_bar=false",
            f"--run_dir={tmp_path / 'runs'}", f"--checkpoint.dirpath={tmp_path / 'ckpt'}",
            *extra]


@pytest.mark.parametrize("recipe", ["jepa_tiny.yaml", "mae_tiny.yaml"])
def test_cli_fit_then_validate_tiny_recipe(recipe, tmp_path):
    cli_main(cli_args(recipe, tmp_path, "--trainer.max_steps=60", "--data.init_args.steps_per_epoch=30"))
    ckpt = tmp_path / "ckpt" / "last.ckpt"
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert {"encoder.0.weight", "encoder.3.weight", "head.weight"} <= set(state["state_dict"])
    assert state["global_step"] == 60
    assert list((tmp_path / "runs").rglob("events.out.tfevents.*"))
    cli_main(cli_args(recipe, tmp_path, f"--ckpt_path={ckpt}", subcommand="validate"))


# ------------------------------------------------------------------------------------------------ benchmark
def test_fidelity_benchmark_quick(tmp_path):
    out = run_script("benchmarks/fidelity/linear_theory.py", "--quick")
    assert {(r["objective"], r["depth"]) for r in out["runs"]} == {("mae", 1), ("mae", 4), ("jepa", 1), ("jepa", 4)}
    claims = out["claims"]
    assert claims["critical_times_match_ode"]["max_relative_error"] < 0.10
    assert claims["mae_order_follows_lambda"]["holds"]
    assert claims["jepa_pair_inverts_past_depth"]["holds"]
    assert claims["jepa_pair_inverts_past_depth"]["inversion_depth"] == 4  # the first depth above 1 run quickly
    assert all(isinstance(c["holds"], bool) for c in claims.values())
    # the published form (benchmarks/results/linear_theory.json): claims only, the critical times in the notes
    bench = load_benchmark("benchmarks/fidelity/linear_theory.py", "linear_theory")
    report = load_benchmark("benchmarks/fidelity/report.py", "report")
    args = argparse.Namespace(depths=[1, 4], lambdas=[1.0, 0.75], rhos=[0.5, 1.0], init_scale=0.01, fraction=0.5,
                              tolerance=0.1, seed=0, quick=True)
    path = bench.write_result(out, args, directory=tmp_path)
    result = report.validate(json.loads(path.read_text()), path)
    assert [c["holds"] for c in result["claims"]] == [True, True, True, True] and result["probes"] == []
    assert result["claims"][1]["value"] == 4 and result["claims"][3]["value"] < 0.1
    assert result["notes"].count("| MAE |") == 2 and "1 then 0" in result["notes"]
