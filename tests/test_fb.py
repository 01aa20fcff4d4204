"""Forward-backward representations (the TD-JEPA paper's zero-shot baseline): the FB measure loss on hand-computed
cases, shapes and norms, what each loss trains, a few optimisation steps, reward inference, and a recipe fit through
the CLI with zero-shot rollouts."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import ROOT, train_on_batch, transition_batch

from jepa_lightning.methods.fb import FB, fb_loss
from jepa_lightning.methods.td_jepa import TDJEPA
from jepa_lightning.methods.zero_shot_agent import ZeroShotAgent
from jepa_lightning.nn.rl import PixelEncoder, StateEncoder, sphere

OBS, ACT, DZ = 10, 3, 6


def tiny(**kwargs) -> FB:
    return FB(StateEncoder(OBS, 8, 32, hidden_layers=0), ACT, StateEncoder(OBS, DZ, 32, hidden_layers=2),
              forward_hidden_dim=32, actor_hidden_dim=32, **kwargs)


def batch(b: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    return transition_batch(b, OBS, ACT, seed)


def test_fb_loss_by_hand():
    # d = 1, a batch of two: F = (1, 2), B(s') = (3, -1), so M = F B^T = [[3, -1], [6, -2]]
    m = torch.tensor([[1.0], [2.0]]) @ torch.tensor([[3.0], [-1.0]]).T
    target = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    discount = torch.tensor([0.5, 0.0])  # the second transition is terminal
    # diff = M - gamma_i target = [[2.5, -2], [6, -2]]
    loss, diag, off = fb_loss(m.unsqueeze(0), target, discount)
    assert torch.isclose(off, torch.tensor(0.5 * (4.0 + 36.0) / 2))  # 1/2 mean over i != j of diff^2 = 10
    assert torch.isclose(diag, torch.tensor(-(2.5 - 2.0) / 2))  # -mean_i diff_ii = -0.25
    assert torch.isclose(loss, torch.tensor(9.75))
    two, _, _ = fb_loss(torch.stack([m, m]), target, discount)  # the ensemble's members are summed
    assert torch.isclose(two, torch.tensor(19.5))


def test_fb_loss_is_half_the_measure_loss_plus_a_constant():
    """1/2 (E_{i != j}[(M_ij - gamma_i M_bar_ij)^2] - 2 E_i[M_ii]) + E_i[gamma_i M_bar_ii]: the successor-measure
    TD loss with s'' the batch's other next states."""
    g = torch.Generator().manual_seed(0)
    m, target, discount = torch.randn(1, 5, 5, generator=g), torch.randn(5, 5, generator=g), torch.rand(5, generator=g)
    off = ~torch.eye(5, dtype=torch.bool)
    measure = ((m[0] - discount[:, None] * target)[off] ** 2).mean() - 2 * m[0].diagonal().mean()
    expected = 0.5 * measure + (discount * target.diagonal()).mean()
    assert torch.isclose(fb_loss(m, target, discount)[0], expected, atol=1e-6)


def test_shapes_norms_and_target_m():
    torch.manual_seed(0)
    model = tiny(ensemble=3)
    b = batch(16)
    assert isinstance(model, ZeroShotAgent) and model.z_dim == DZ and model.phi_dim == 8
    assert torch.allclose(model.psi(b["next_obs"] * 10).norm(dim=-1), torch.full((16,), math.sqrt(DZ)), atol=1e-4)
    z = model.sample_z(16, torch.Generator().manual_seed(1))
    assert torch.allclose(z.norm(dim=-1), torch.full((16,), math.sqrt(DZ)), atol=1e-4)
    assert model.forward_map(model.phi(b["obs"]), b["action"], z).shape == (3, 16, DZ)
    g = torch.Generator().manual_seed(2)
    target = model.target_m(b["next_obs"], b["next_obs"], z, g)
    next_left = model.phi_encoder_target(b["next_obs"])
    a2 = model.next_action(next_left, z, torch.Generator().manual_seed(2))
    f_bar = model.forward_target(next_left, a2, z).mean(0)  # the ensemble mean (no pessimism)
    assert target.shape == (16, 16)
    assert torch.allclose(target, f_bar @ model.psi_encoder_target(b["next_obs"]).T, atol=1e-5)
    out = model.objective(b, torch.Generator().manual_seed(0))
    assert out["phi"].shape == (16, 8) and out["psi"].shape == (16, DZ)
    assert all(torch.isfinite(out[k]) for k in FB.loss_terms)
    assert torch.isclose(out["loss"], out["fb"] + model.ortho_coef * out["ortho"] + out["actor"])


def test_each_loss_trains_its_own_networks_and_the_groups_and_targets():
    torch.manual_seed(0)
    model = tiny()
    out = model.objective(batch(), torch.Generator().manual_seed(0))
    out["actor"].backward()  # the actor's loss reaches the actor only
    assert all(p.grad is not None for p in model.actor.parameters())
    others = [model.phi_encoder, model.psi_encoder, model.forward_map]
    assert all(p.grad is None for m in others for p in m.parameters())
    model.zero_grad(set_to_none=True)
    out = model.objective(batch(), torch.Generator().manual_seed(0))
    (out["fb"] + out["ortho"]).backward()  # the representation loss trains L, F and B, never the actor or targets
    assert all(p.grad is not None for m in others for p in m.parameters())
    assert all(p.grad is None for p in model.actor.parameters())
    assert all(not p.requires_grad for t in model.target_networks() for p in t.parameters())
    opt = model.configure_optimizers()["optimizer"]
    assert {g["name"]: g["lr"] for g in opt.param_groups} == {"phi": 1e-4, "forward": 1e-4, "psi": 1e-4,
                                                              "actor": 1e-4}
    assert {name for _, _, name in model.target_pairs()} == {"forward", "backward"} and len(model.target_pairs()) == 3


def test_a_few_steps_lower_the_fb_loss_and_move_the_targets(one_thread):
    torch.manual_seed(0)
    model = tiny(lr_f=1e-3, lr_b=1e-3, lr_actor=1e-3, forward_ema=(0.9, 0.9), backward_ema=(0.9, 0.9))
    before = model.psi_encoder_target.module.mlp.net[0].weight.clone()
    losses = train_on_batch(model, batch(64), 60, ("fb", "ortho"))
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.0, (losses[:3], losses[-3:])
    after = model.psi_encoder_target.module.mlp.net[0].weight
    assert not torch.equal(before, after) and not torch.equal(after, model.psi_encoder.mlp.net[0].weight)


def test_inference_is_the_reward_weighted_mean_of_b_on_the_sphere():
    torch.manual_seed(0)
    model = tiny()
    next_obs, reward = torch.randn(300, OBS), torch.rand(300)
    z = model.infer_z(next_obs, reward)
    assert z.shape == (DZ,) and torch.isclose(z.norm(), torch.tensor(math.sqrt(DZ)), atol=1e-4)
    assert torch.allclose(z, sphere(reward @ model.psi(next_obs)), atol=1e-5)
    assert torch.allclose(model.infer_z(next_obs, 5 * reward), z, atol=1e-5)  # the scale of r does not matter
    w = torch.randn(DZ)  # least squares (TD-JEPA's inference) recovers a reward linear in B
    lstsq = tiny(inference="lstsq")
    assert torch.allclose(lstsq.infer_z(next_obs, lstsq.psi(next_obs) @ w), sphere(w), atol=1e-3)
    assert model.act(next_obs[:4], z).shape == (4, ACT) and model.policy(z)(next_obs[0].numpy()).shape == (ACT,)


def test_pixels_train_both_cnns_through_their_own_maps():
    """As in the reference: L and F read one CNN, B its own, trained through B(s') (the next frames)."""
    torch.manual_seed(0)
    model = FB(StateEncoder(16, 8, 32, 0), ACT, StateEncoder(16, DZ, 32, 1), pixel_encoder=PixelEncoder(3, 20, 16),
               forward_hidden_dim=32, actor_hidden_dim=32)
    assert model.psi_pixel_encoder is not model.pixel_encoder
    frames = torch.randint(0, 256, (4, 3, 20, 20), dtype=torch.uint8)
    out = model.objective({"pixels": frames, "next_pixels": frames.flip(0), "action": torch.rand(4, ACT)},
                          torch.Generator().manual_seed(0))
    assert torch.isfinite(out["loss"]) and out["psi"].shape == (4, DZ)
    (out["fb"] + out["ortho"]).backward()
    assert model.pixel_encoder.trunk[0].weight.grad is not None and model.psi_pixel_encoder.trunk[0].weight.grad is not None
    assert model.act(frames[0], model.sample_z(1)[0]).shape == (ACT,) and model.infer_z(frames, torch.rand(4)).shape == (DZ,)


def test_bad_arguments_and_batches_name_the_fb_argument():
    with pytest.raises(ValueError, match="inference must be 'lstsq' or 'mean'"):
        tiny(inference="median")
    with pytest.raises(ValueError, match="backward_map is required"):
        FB(StateEncoder(OBS, 8), ACT, None)
    with pytest.raises(ValueError, match=r"left_encoder.in_dim=10 \(model.init_args.left_encoder.init_args.in_dim "
                                         r"and backward_map.init_args.in_dim\)"):
        tiny().objective({**batch(), "obs": torch.randn(32, 11), "next_obs": torch.randn(32, 11)})
    assert not isinstance(tiny(), TDJEPA)


def test_recipe_fit_with_zero_shot_rollouts(tmp_path, walker_episodes, one_thread):
    from jepa_lightning.cli import JEPACLI

    cli = JEPACLI(args=[
        "fit", "--config", str(ROOT / "recipes" / "td_jepa" / "fb_tiny.yaml"), f"--data.init_args.path={walker_episodes}",
        "--data.init_args.embedded=null", "--data.init_args.batch_size=64", "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false", f"--run_dir={tmp_path / 'runs'}",
        f"--checkpoint.dirpath={tmp_path / 'ckpt'}", "--model.init_args.forward_hidden_dim=32",
        "--model.init_args.actor_hidden_dim=32", "--trainer.max_steps=6", "--trainer.val_check_interval=6",
        "--trainer.log_every_n_steps=2"])
    assert isinstance(cli.model, FB) and cli.trainer.global_step == 6 and (tmp_path / "ckpt" / "last.ckpt").is_file()
    metrics = cli.trainer.callback_metrics
    for task in ("stand", "walk", "run"):  # the recipe's ZeroShotRollouts ran at the validation
        assert 0.0 <= float(metrics[f"val/return/{task}"]) <= 100.0
    assert all(torch.isfinite(metrics[k]) for k in ("train/fb", "train/ortho", "val/loss", "train/psi_rank"))
