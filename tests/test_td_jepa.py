"""TD-JEPA: the TD latent targets and losses, zero-shot task inference, the symmetric variant, the pixel path,
the linear-MDP successor-feature claim at small scale, and fit + validate with zero-shot rollouts via the CLI."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import ROOT, load_benchmark, train_on_batch, transition_batch

from jepa_lightning.methods.td_jepa import (
    TDJEPA,
    ensemble_reduce,
    orthonormality_loss,
    td_latent_loss,
    td_target,
)
from jepa_lightning.nn.rl import PixelEncoder, StateEncoder, random_shift, sphere, truncated_normal_sample

OBS, ACT = 10, 3


def tiny(symmetric: bool = False, **kwargs) -> TDJEPA:
    psi = None if symmetric else StateEncoder(OBS, 6, 32, hidden_layers=2)
    return TDJEPA(StateEncoder(OBS, 8, 32, hidden_layers=1), ACT, psi, symmetric=symmetric,
                  predictor_hidden_dim=32, actor_hidden_dim=32, **kwargs)


def batch(b: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    return transition_batch(b, OBS, ACT, seed)


def test_td_targets_shapes_and_definition():
    torch.manual_seed(0)
    model = tiny(ensemble=2)
    b = batch(16)
    disc = 0.98 * (1 - b["terminal"])
    z = model.sample_z(16, torch.Generator().manual_seed(1))
    t = model.td_targets(b["next_obs"], b["next_obs"], disc, z, torch.Generator().manual_seed(2))
    assert t["phi_members"].shape == (2, 16, 6) and t["phi"].shape == (16, 6)  # T_phi predicts in psi space
    assert t["psi_members"].shape == (2, 16, 8) and t["psi"].shape == (16, 8)  # T_psi predicts in phi space
    # target = psi_bar(s') + gamma (1 - terminal) * mean over the ensemble of the target predictor
    expected = model.psi_encoder_target(b["next_obs"]) + disc[:, None] * t["phi_members"].mean(0)
    assert torch.allclose(t["phi"], expected, atol=1e-6)
    done = b["terminal"].bool()
    assert done.any() and torch.allclose(t["psi"][done], model.phi_encoder_target(b["next_obs"])[done])
    sym = tiny(symmetric=True, ensemble=3)
    ts = sym.td_targets(b["next_obs"], b["next_obs"], disc, sym.sample_z(16), None)
    assert ts["phi_members"].shape == (3, 16, 8) and ts["phi"].shape == (16, 8) and "psi" not in ts


def test_loss_terms_match_their_definitions():
    g = torch.Generator().manual_seed(0)
    members = torch.randn(3, 5, 4, generator=g)
    pairs = sum((members[i] - members[j]).abs() for i in range(3) for j in range(3) if i != j) / 6
    assert torch.allclose(ensemble_reduce(members, 0.5), members.mean(0) - 0.5 * pairs, atol=1e-6)
    y = torch.randn(5, 4, generator=g)
    assert torch.allclose(td_target(y, members, torch.full((5,), 0.9)), y + 0.9 * members.mean(0))
    assert torch.allclose(td_latent_loss(members, y), ((members - y) ** 2).sum(-1).mean())
    f = torch.randn(6, 4, generator=g)
    c = f @ f.T
    off = [c[i, j] ** 2 for i in range(6) for j in range(6) if i != j]
    loss, diag, offdiag = orthonormality_loss(f)
    assert torch.allclose(diag, -c.diagonal().mean()) and torch.allclose(offdiag, 0.5 * torch.stack(off).mean())
    assert torch.allclose(loss, diag + offdiag)


def test_features_and_z_live_on_the_sphere_and_goals_mix_at_the_ratio():
    torch.manual_seed(0)
    model = tiny(train_goal_ratio=0.25)
    x = torch.randn(50, OBS) * 10
    assert torch.allclose(model.phi(x).norm(dim=-1), torch.full((50,), math.sqrt(8)), atol=1e-4)
    assert torch.allclose(model.psi(x).norm(dim=-1), torch.full((50,), math.sqrt(6)), atol=1e-4)
    goals = torch.randn(4000, 6) * 3 + 5  # far from isotropic: recognisable after rescaling
    z = model.sample_z(4000, torch.Generator().manual_seed(0), goals=goals)
    assert torch.allclose(z.norm(dim=-1), torch.full((4000,), math.sqrt(6)), atol=1e-4)
    from_goal = (z @ sphere(goals).T).amax(1) > 6 - 1e-3  # rows equal to a rescaled goal
    assert abs(from_goal.float().mean().item() - 0.25) < 0.03


def test_lstsq_inference_recovers_z_of_a_reward_linear_in_psi():
    torch.manual_seed(0)
    model = tiny()
    next_obs = torch.randn(500, OBS)
    w = torch.randn(6)
    reward = model.psi(next_obs) @ w  # exactly linear in the task features
    z = model.infer_z(next_obs, reward)
    assert z.shape == (6,) and torch.allclose(z.norm(), torch.tensor(math.sqrt(6)), atol=1e-4)
    assert torch.allclose(z, sphere(w), atol=1e-3)
    z_feat = model.infer_z(model.psi(next_obs), reward, are_features=True)
    assert torch.allclose(z_feat, z, atol=1e-5)
    with pytest.raises(ValueError, match=r"features must be \[N, 6\] with N = len\(reward\) = 499"):
        model.infer_z(next_obs, reward[:-1])


def test_symmetric_variant_shares_phi_and_psi():
    model = tiny(symmetric=True)
    x = torch.randn(7, OBS)
    assert model.psi_encoder is model.phi_encoder and model.z_dim == model.phi_dim == 8
    assert torch.equal(model.phi(x), model.psi(x))
    assert not hasattr(model, "psi_predictor") and not any("psi" in n for n, _ in model.named_parameters())
    asym = tiny()
    assert asym.psi_encoder is not asym.phi_encoder and asym.z_dim == 6
    with pytest.raises(ValueError, match="symmetric=True uses psi = phi"):
        TDJEPA(StateEncoder(OBS, 8), ACT, StateEncoder(OBS, 6), symmetric=True)
    with pytest.raises(ValueError, match="asymmetric variant needs model.init_args.psi_encoder"):
        TDJEPA(StateEncoder(OBS, 8), ACT)


def test_bad_batches_name_the_key_and_the_expected_size():
    model = tiny()
    with pytest.raises(ValueError, match=r"batch\['obs'\] has 11 dimensions, but phi_encoder.in_dim=10"):
        model.objective({**batch(), "obs": torch.randn(32, 11), "next_obs": torch.randn(32, 11)})
    with pytest.raises(ValueError, match=r"action_dim=3"):
        model.objective({**batch(), "action": torch.zeros(32, 5)})
    with pytest.raises(KeyError, match=r"no \['next_obs'\]"):
        model.objective({k: v for k, v in batch().items() if k != "next_obs"})


def test_loss_decreases_on_a_fixed_batch_and_actor_loss_trains_only_the_actor(one_thread):
    torch.manual_seed(0)
    model = tiny(lr_phi=1e-3, lr_psi=1e-3, lr_predictor=1e-3, lr_actor=1e-3)
    b = batch(64)
    # the actor's loss reaches the actor only
    out = model.objective(b, torch.Generator().manual_seed(0))
    out["actor"].backward()
    assert all(p.grad is not None for p in model.actor.parameters())
    others = [model.phi_encoder, model._psi_encoder, model.phi_predictor, model.psi_predictor]
    assert all(p.grad is None for m in others for p in m.parameters())
    model.zero_grad(set_to_none=True)
    opt = model.configure_optimizers()["optimizer"]
    assert {g["name"] for g in opt.param_groups} == {"phi", "psi", "predictor", "actor"}
    before = model.phi_encoder_target.module.mlp.net[0].weight.clone()
    td = train_on_batch(model, b, 150, ("td_phi", "td_psi"))
    assert sum(td[-10:]) / 10 < 0.6 * sum(td[:10]) / 10, (td[:3], td[-3:])
    after = model.phi_encoder_target.module.mlp.net[0].weight
    assert not torch.equal(before, after)  # the EMA target moved ...
    assert not torch.equal(after, model.phi_encoder.mlp.net[0].weight)  # ... but is not the online network


def test_truncated_normal_and_act():
    mean = torch.full((2000, 2), 0.9, requires_grad=True)
    a = truncated_normal_sample(mean, 0.2, 0.3, torch.Generator().manual_seed(0))
    assert a.max() < 1 and a.min() >= 0.6 - 1e-6  # noise clipped to +-0.3, action clamped below 1
    a.sum().backward()
    assert torch.equal(mean.grad, torch.ones_like(mean))  # straight-through clamp
    model = tiny()
    z = model.sample_z(1)[0]
    obs = torch.randn(5, OBS)
    act = model.act(obs, z)
    assert act.shape == (5, ACT) and act.abs().max() < 1
    assert torch.allclose(model.act(obs[0], z), act[0])
    assert model.policy(z)(obs[0].numpy()).shape == (ACT,)


def test_pixel_path_shapes_and_random_shift():
    frames = torch.randint(0, 256, (4, 3, 20, 20), dtype=torch.uint8)
    shifted = random_shift(frames, 4, torch.Generator().manual_seed(0))
    assert shifted.shape == frames.shape and shifted.dtype == torch.uint8
    padded = torch.nn.functional.pad(frames.float(), (4, 4, 4, 4), mode="replicate")
    for i in range(4):  # every image is some crop of its own padded frame
        crops = padded[i].unfold(1, 20, 1).unfold(2, 20, 1)  # [3, 9, 9, 20, 20]
        assert (crops == shifted[i].float()[:, None, None]).flatten(3).all(-1).all(0).any()
    torch.manual_seed(0)
    model = TDJEPA(StateEncoder(16, 8, 32, 0), ACT, StateEncoder(16, 6, 32, 1), pixel_encoder=PixelEncoder(3, 20, 16),
                   predictor_hidden_dim=32, actor_hidden_dim=32)
    assert model.psi_pixel_encoder is not model.pixel_encoder
    b = {"pixels": frames, "next_pixels": frames.flip(0), "action": torch.rand(4, ACT)}
    out = model.objective(b, torch.Generator().manual_seed(0))
    assert out["phi"].shape == (4, 8) and out["psi"].shape == (4, 6) and torch.isfinite(out["loss"])
    out["loss"].backward()
    assert model.pixel_encoder.trunk[0].weight.grad is not None
    assert model.act(frames[0], model.sample_z(1)[0]).shape == (ACT,)
    assert model.infer_z(frames, torch.rand(4)).shape == (6,)
    with pytest.raises(ValueError, match=r"PixelEncoder expects \[B, 3, 20, 20\]"):
        model.phi(torch.zeros(2, 3, 24, 24, dtype=torch.uint8))


def _benchmark():
    return load_benchmark("benchmarks/fidelity/td_jepa.py", "td_jepa_fidelity")


def test_linear_td_jepa_converges_to_closed_form_successor_features(one_thread):
    bench = _benchmark()
    out = bench.linear_sf_experiment(n=8, actions=3, gamma=0.9, steps=1500, lr=2e-2, ema=0.9, seed=1)
    # Phi^-1 T_a Phi against (P_a (I - gamma P_pi)^-1)^T, relative Frobenius error, worst action
    assert out["rel_err_max_over_actions"] < 1e-2, out
    assert out["phi_condition_number"] < 2.0  # the orthonormality term kept the representation well spread
    short = bench.linear_sf_experiment(n=8, actions=3, gamma=0.9, steps=30, lr=2e-2, ema=0.9, seed=1)
    assert short["rel_err_max_over_actions"] > 10 * out["rel_err_max_over_actions"]  # it is learned, not given


def test_cli_fit_then_validate_with_zero_shot_rollouts(tmp_path, walker_episodes, one_thread):
    from jepa_lightning.cli import JEPACLI
    from jepa_lightning.cli import main as cli_main

    common = ["--config", str(ROOT / "recipes" / "td_jepa" / "tiny.yaml"),
              f"--data.init_args.path={walker_episodes}", "--data.init_args.embedded=null",
              "--data.init_args.batch_size=64", "--trainer.enable_progress_bar=false",
              "--trainer.enable_model_summary=false", f"--run_dir={tmp_path / 'runs'}",
              f"--checkpoint.dirpath={tmp_path / 'ckpt'}", "--model.init_args.predictor_hidden_dim=32",
              "--model.init_args.actor_hidden_dim=32"]
    # the recipe's ZeroShotRollouts (stand, walk, run; 1 episode of 100 steps) runs at each validation
    cli_main(["fit", *common, "--trainer.max_steps=12", "--trainer.val_check_interval=6"])
    ckpt = tmp_path / "ckpt" / "last.ckpt"
    assert ckpt.is_file()
    cli = JEPACLI(args=["validate", *common, f"--ckpt_path={ckpt}"])
    metrics = cli.trainer.callback_metrics
    for task in ("stand", "walk", "run"):
        assert f"val/return/{task}" in metrics and 0.0 <= float(metrics[f"val/return/{task}"]) <= 100.0
    assert float(metrics["val/return/stand"]) > 0  # walker's stand reward is positive in any upright-ish state
    assert torch.isfinite(metrics["val/loss"])


def test_zero_shot_callback_errors_are_clear():
    from types import SimpleNamespace

    from jepa_lightning.eval.zero_shot import ZeroShotRollouts, sample_transitions

    with pytest.raises(ValueError, match=r"episodes \(0\)"):
        ZeroShotRollouts(episodes=0)
    with pytest.raises(ValueError, match="no domain given and the DataModule's metadata"):
        ZeroShotRollouts()._domain(SimpleNamespace(metadata={}))
    assert ZeroShotRollouts()._domain(SimpleNamespace(metadata={"domain": "walker"})) == "walker"

    class NoPhysics:
        def __len__(self):
            return 10

        def __getitems__(self, index):
            return {"next_obs": torch.zeros(len(index), OBS)}

    with pytest.raises(KeyError, match=r"no \['next_physics'\]"):
        sample_transitions(NoPhysics(), 5)
