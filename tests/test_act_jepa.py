"""ACT-JEPA: the Push2D task and its expert, the demonstrations' format, the objective (padding, plain-ACT
baseline), temporal ensembling, learning, and a CLI fit + validate with rollouts."""

import numpy as np
import pytest
import torch
from conftest import ROOT

from datamodules.offline_rl import OfflineRLDataModule, list_episodes, read_episode, read_metadata
from jepa_lightning.cli import JEPACLI
from jepa_lightning.eval.rollouts import RolloutEvaluation, build_env
from jepa_lightning.methods.act_jepa import (
    ACTJEPA,
    ChunkPolicy,
    QueryDecoder,
    StateEncoder,
    TemporalEnsemble,
    masked_l1,
)
from jepa_lightning.optim import param_groups
from jepa_lightning.rl.reach2d import (
    OBSERVATION_PARTS,
    PROPRIOCEPTION,
    Push2D,
    collect_demos,
    generate_demos,
    state_observations,
)
from jepa_lightning.rl.rollout import Env, rollout

TINY = str(ROOT / "recipes" / "act_jepa" / "tiny.yaml")
H = 4


def tiny_model(jepa_weight: float = 1.0, pixels: bool = False, **kwargs) -> ACTJEPA:
    torch.manual_seed(0)
    enc = StateEncoder(12, embed_dim=32, depth=1, num_heads=2, pixels=pixels, image_size=16)
    dec = QueryDecoder(32, 2, H, dim=32, depth=1, num_heads=2)
    pred = QueryDecoder(32, 32, H, dim=16, depth=1, num_heads=2)
    return ACTJEPA(enc, dec, pred, jepa_weight=jepa_weight, use_pixels=pixels, **kwargs)


def random_batch(b: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    valid = torch.ones(b, H, dtype=torch.bool)
    valid[0, 2:] = False
    valid[b - 1, 1:] = False
    return {"obs": torch.randn(b, 12, generator=g), "actions": torch.rand(b, H, 2, generator=g) * 2 - 1,
            "future_obs": torch.randn(b, H, 12, generator=g), "valid": valid}


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("push_demos")
    generate_demos(str(folder), episodes=40, seed=0)
    return str(folder)


# ------------------------------------------------------------------------------------------------ task
def test_expert_succeeds_and_random_policy_fails():
    env = Push2D()
    assert isinstance(env, Env)
    _, stats = collect_demos(30, seed=123, only_success=False, env=env)
    assert stats["expert_success_rate"] >= 0.9
    rng = np.random.default_rng(0)
    random = rollout(env, lambda obs: rng.uniform(-1, 1, 2), episodes=20, seed=1000)
    assert random["success_rate"] <= 0.1
    assert max(random["lengths"]) == env.config.time_limit  # failures run to the time limit


def test_dynamics_are_deterministic_and_contact_pushes_the_block():
    env = Push2D()
    obs = env.reset(seed=3)
    assert obs.shape == (12,) and obs.dtype == np.float32
    state = env.physics_state()
    env.set_physics_state(np.array([0.0, 0.0, 0.0, 0.0, 0.16, 0.0, 0.9, 0.0, 0.0]))  # agent just left of block
    obs, _, _ = env.step(np.array([1.0, 0.0]))
    assert env.block[0] > 0.16 and abs(env.block[1]) < 1e-9  # pushed straight along +x
    assert np.linalg.norm(env.block - env.agent) >= env.contact - 1e-9  # no overlap
    np.testing.assert_allclose(obs[8:10], env.block - env.agent, atol=1e-6)
    env.set_physics_state(state)
    a = [env.step(np.array([0.3, -0.7]))[0] for _ in range(5)]
    env.set_physics_state(state)
    b = [env.step(np.array([0.3, -0.7]))[0] for _ in range(5)]
    np.testing.assert_array_equal(np.stack(a), np.stack(b))
    image = env.render(32)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    assert (image == np.array([220, 40, 40], dtype=np.uint8)).all(-1).any()  # the agent is drawn


# ------------------------------------------------------------------------------------------------ data
def test_demos_round_trip_through_the_chunk_datamodule(demos):
    meta = read_metadata(demos)
    assert meta["env_factory"] == "jepa_lightning.rl.reach2d:make_env" and meta["expert_success_rate"] >= 0.9
    assert isinstance(build_env(meta["env_factory"], meta["env_kwargs"]), Push2D)
    files = list_episodes(demos)
    assert len(files) == 40
    ep = read_episode(files[0])
    assert ep["terminal"][-1] and not ep["terminal"][:-1].any()  # ends in the success state
    dm = OfflineRLDataModule(path=demos, embedded=None, mode="chunks", chunk=H, val_fraction=0.0, batch_size=8)
    dm.setup("fit")
    assert (dm.obs_dim, dm.act_dim) == (12, 2)
    ds = dm.train_dataset
    first = dm.train_episodes.files.index(files[0])
    start = int(dm.train_episodes.steps[:first].sum())  # dataset index of the episode's first step
    t_last = len(ep["action"]) - 2
    batch = ds.__getitems__([start, start + t_last])
    torch.testing.assert_close(batch["obs"][0], torch.from_numpy(ep["observation"][0]))
    torch.testing.assert_close(batch["actions"][0], torch.from_numpy(ep["action"][:H]))
    torch.testing.assert_close(batch["future_obs"][0], torch.from_numpy(ep["observation"][1:H + 1]))
    assert batch["valid"][0].all() and batch["valid"][1].tolist() == [True, True, False, False]


def test_observation_keys_pick_the_parts_and_rollouts_and_demos_agree(tmp_path):
    full, proprio = Push2D(), Push2D(observation_keys=PROPRIOCEPTION)
    assert full.observation_keys == OBSERVATION_PARTS and (full.observation_dim, proprio.observation_dim) == (12, 4)
    obs, small = full.reset(seed=7), proprio.reset(seed=7)
    assert small.shape == (4,) and small.dtype == np.float32
    np.testing.assert_array_equal(small, obs[:4])  # agent position, velocity / max_speed
    a, _, _ = full.step(np.array([0.5, -0.2]))
    b, _, _ = proprio.step(np.array([0.5, -0.2]))
    np.testing.assert_array_equal(b, a[:4])
    swapped = Push2D(observation_keys=("goal", "agent"))
    np.testing.assert_array_equal(swapped.reset(seed=7), np.concatenate([obs[6:8], obs[0:2]]))
    for bad in (("agent", "colour"), ("agent", "agent"), ()):
        with pytest.raises(ValueError, match="observation_keys"):
            Push2D(observation_keys=bad)
    # demonstrations recorded with the reduced observation and frames: the metadata rebuilds the same env, the
    # chunk batches carry 4-d states (targets included) and the frame of step t
    folder = str(tmp_path / "pixel_demos")
    generate_demos(folder, episodes=3, seed=0, pixels=True, image_size=16, observation_keys=PROPRIOCEPTION)
    meta = read_metadata(folder)
    env = build_env(meta["env_factory"], meta["env_kwargs"])
    assert env.observation_keys == PROPRIOCEPTION and meta["pixels"] and meta["image_size"] == 16
    ep = read_episode(list_episodes(folder)[0])
    assert ep["observation"].shape[1] == 4 and ep["pixels"].shape == (len(ep["observation"]), 16, 16, 3)
    assert env.reset(seed=0).tolist() == ep["observation"][0].tolist()  # layout seed 0, the first demonstration
    states = state_observations(ep["physics"], **meta["env_kwargs"])
    assert states.shape == (len(ep["observation"]), 12)
    np.testing.assert_allclose(states[:, :4], ep["observation"], atol=1e-6)
    full.reset(seed=0)
    np.testing.assert_array_equal(states[0], full.observation())
    dm = OfflineRLDataModule(path=folder, embedded=None, mode="chunks", chunk=H, pixels=True, val_fraction=0.0,
                             batch_size=2)
    dm.setup("fit")
    batch = dm.train_dataset.__getitems__([0, 1])
    assert dm.obs_dim == 4 and batch["future_obs"].shape == (2, H, 4) and batch["pixels"].shape == (2, 3, 16, 16)


def test_a_rendered_demo_frame_is_the_state_it_was_recorded_with(tmp_path):
    folder = str(tmp_path / "pixel_demos")
    generate_demos(folder, episodes=1, seed=3, pixels=True, image_size=32, observation_keys=PROPRIOCEPTION)
    ep = read_episode(list_episodes(folder)[0])
    env = Push2D()
    coords = (np.arange(32) + 0.5) / 32 * 2 - 1
    for t in (0, len(ep["action"]) // 2, len(ep["action"])):
        env.set_physics_state(ep["physics"][t])
        np.testing.assert_array_equal(ep["pixels"][t], env.render(32))
        # the agent's and the block's pixels lie around their positions (the block's may be partly behind the agent)
        for colour, centre in (((220, 40, 40), env.agent), ((40, 90, 220), env.block)):
            rows, cols = np.nonzero((ep["pixels"][t] == np.array(colour, dtype=np.uint8)).all(-1))
            drawn = np.array([coords[cols].mean(), -coords[rows].mean()])
            assert len(rows) and np.abs(drawn - centre).max() < 0.1, (t, colour, drawn, centre)


# ------------------------------------------------------------------------------------------------ objective
def test_losses_ignore_padded_steps():
    model = tiny_model()
    batch = random_batch()
    base = model.losses(batch)
    changed = {k: v.clone() for k, v in batch.items()}
    changed["actions"][0, 3] += 5.0
    changed["future_obs"][4, 2] += 5.0  # padded steps
    out = model.losses(changed)
    assert torch.equal(out["action"], base["action"]) and torch.equal(out["latent"], base["latent"])
    changed["actions"][0, 1] += 5.0  # a valid step
    changed["future_obs"][0, 1] += 5.0
    out = model.losses(changed)
    assert out["action"] > base["action"] and not torch.equal(out["latent"], base["latent"])
    pred, target = torch.zeros(1, 2, 3), torch.tensor([[[1.0, 1.0, 1.0], [9.0, 9.0, 9.0]]])
    assert masked_l1(pred, target, torch.tensor([[True, False]])) == 1.0


def test_targets_are_the_teachers_layer_normed_latents_of_each_future_state():
    model = tiny_model()
    batch = random_batch()
    targets = model.targets(batch["future_obs"])
    one = model.teacher(batch["future_obs"][2, 1][None]).mean(1)
    torch.testing.assert_close(targets[2, 1], torch.nn.functional.layer_norm(one, one.shape[-1:])[0])
    out = model.losses(batch)
    out["loss"].backward()
    assert model.predictor.queries.grad is not None and model.encoder.tokenizer.weight.grad is not None
    assert all(p.grad is None for p in model.teacher.parameters())


def test_plain_act_has_no_target_encoder_and_the_same_action_loss():
    jepa, act = tiny_model(1.0), tiny_model(0.0)
    assert act.teacher is None and act.predictor is None and act.ema is None
    act.encoder.load_state_dict(jepa.encoder.state_dict())
    act.decoder.load_state_dict(jepa.decoder.state_dict())
    batch = random_batch()
    a, j = act.losses(batch), jepa.losses(batch)
    assert "latent" not in a and torch.equal(a["loss"], a["action"])
    torch.testing.assert_close(a["action"], j["action"])
    optimized = {id(p) for g in param_groups(act.trainable_modules(), 0.1) for p in g["params"]}
    own = {id(p) for m in (act.encoder, act.decoder) for p in m.parameters()}
    assert optimized == own
    jepa_params = {id(p) for g in param_groups(jepa.trainable_modules(), 0.1) for p in g["params"]}
    assert not jepa_params & {id(p) for p in jepa.teacher.parameters()}
    assert {id(p) for p in jepa.predictor.parameters()} <= jepa_params


def test_configuration_errors_name_the_mismatch():
    with pytest.raises(ValueError, match="needs a predictor"):
        ACTJEPA(StateEncoder(12, 32, 1, 2), QueryDecoder(32, 2, H, 32, 1, 2), None, jepa_weight=1.0)
    with pytest.raises(ValueError, match="num_queries=4"):
        ACTJEPA(StateEncoder(12, 32, 1, 2), QueryDecoder(32, 2, H, 32, 1, 2), QueryDecoder(32, 32, 6, 16, 1, 2))
    batch = random_batch()
    batch["actions"] = batch["actions"][:, :3]
    with pytest.raises(ValueError, match=r"chunks are \[3, 2\].*data.init_args.chunk"):
        tiny_model().losses(batch)


def test_pixels_add_image_tokens_to_the_context():
    model = tiny_model(pixels=True)
    batch = random_batch(3)
    batch["pixels"] = torch.randint(0, 255, (3, 3, 16, 16), dtype=torch.uint8)
    assert model.encode(batch).shape == (3, 3 + 4, 32)  # 3 state tokens (12 features / 4) + 2x2 image tokens
    assert torch.isfinite(model.losses(batch)["loss"])
    env = Push2D()
    policy = model.policy(render=lambda: env.render(16))
    assert policy(env.reset(seed=0)).shape == (2,)
    with pytest.raises(KeyError, match="pixels"):
        model.losses(random_batch(3))


# ------------------------------------------------------------------------------------------------ inference
def test_temporal_ensembling_weights_and_averages():
    ens = TemporalEnsemble(chunk=3, act_dim=1, decay=0.5)
    chunks = [np.array([[1.0], [2.0], [3.0]]) * 10**i for i in range(4)]
    w2 = np.exp(-0.5 * np.arange(2)) / np.exp(-0.5 * np.arange(2)).sum()
    w3 = np.exp(-0.5 * np.arange(3)) / np.exp(-0.5 * np.arange(3)).sum()
    assert ens(chunks[0])[0] == pytest.approx(1.0)
    assert ens(chunks[1])[0] == pytest.approx(w2 @ [2.0, 10.0])                # oldest first
    assert ens(chunks[2])[0] == pytest.approx(w3 @ [3.0, 20.0, 100.0])
    assert ens(chunks[3])[0] == pytest.approx(w3 @ [30.0, 200.0, 1000.0])      # chunk 0 has expired
    assert w3[0] > w3[2]  # ACT: m > 0 trusts the oldest prediction most
    ens.reset()
    assert ens(chunks[3])[0] == pytest.approx(1000.0)
    flat = TemporalEnsemble(3, 1, decay=0.0)
    flat(chunks[0])
    assert flat(chunks[1])[0] == pytest.approx(6.0)  # plain average


def test_open_loop_policy_queries_once_per_chunk(monkeypatch):
    model = tiny_model()
    calls = []
    monkeypatch.setattr(model, "predict_chunk",
                        lambda obs, pixels=None: (calls.append(1), torch.arange(8.0).view(1, H, 2) / 10)[1])
    policy = ChunkPolicy(model, decay=None)
    actions = [policy(np.zeros(12, dtype=np.float32)) for _ in range(6)]
    assert len(calls) == 2 and np.allclose(actions[1], [0.2, 0.3]) and np.allclose(actions[4], [0.0, 0.1])
    policy.reset()
    policy(np.zeros(12, dtype=np.float32))
    assert len(calls) == 3


# ------------------------------------------------------------------------------------------------ training
def test_short_training_lowers_both_losses(demos, one_thread):
    dm = OfflineRLDataModule(path=demos, embedded=None, mode="chunks", chunk=H, val_fraction=0.0)
    dm.setup("fit")
    model = tiny_model()
    opt = torch.optim.AdamW(param_groups(model.trainable_modules(), 0.0), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    history = []
    for _ in range(80):
        batch = dm.train_dataset.__getitems__(torch.randint(len(dm.train_dataset), (64,), generator=g).tolist())
        out = model.losses(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        model.teacher.update(model.encoder, 0.99)
        history.append((float(out["action"]), float(out["latent"])))
    first, last = np.mean(history[:5], 0), np.mean(history[-5:], 0)
    assert last[0] < 0.6 * first[0] and last[1] < first[1], (first, last)


def test_cli_fit_then_validate_with_rollouts(tmp_path, monkeypatch, one_thread):
    monkeypatch.setenv("JEPA_LIGHTNING_CACHE", str(tmp_path / "cache"))
    common = ["--config", TINY, "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
              f"--run_dir={tmp_path / 'runs'}", f"--checkpoint.dirpath={tmp_path / 'ckpt'}",
              "--trainer.callbacks.init_args.episodes=2", "--trainer.callbacks.init_args.max_steps=15"]
    fit = JEPACLI(args=["fit", *common, "--trainer.max_steps=12", "--trainer.limit_val_batches=2"])
    assert fit.trainer.global_step == 12 and (tmp_path / "ckpt" / "last.ckpt").is_file()
    assert (tmp_path / "cache" / "offline_rl" / "reach2d_expert-v1" / "dataset.json").is_file()
    val = JEPACLI(args=["validate", *common, f"--ckpt_path={tmp_path / 'ckpt' / 'last.ckpt'}",
                        "--trainer.limit_val_batches=2"])
    metrics = val.trainer.callback_metrics
    assert 0.0 <= float(metrics["val/success_rate"]) <= 1.0 and "val/return" in metrics
    assert float(metrics["val/action_l1"]) > 0 and "val/latent_l1" in metrics
    callback = next(c for c in val.trainer.callbacks if isinstance(c, RolloutEvaluation))
    assert callback.last["lengths"] and max(callback.last["lengths"]) <= 15
