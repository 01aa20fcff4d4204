"""Offline RL data: the episode format (round trip, bad files), batches of transitions and chunks, dm_control
environments, reward relabeling against the environment's own reward, resumable collection and its CLI."""

import os
import warnings

import numpy as np
import pytest

from datamodules.offline_rl import EpisodeFormatError, OfflineRLDataModule, read_episode, write_episode
from jepa_lightning.cli import main as cli_main
from jepa_lightning.rl.collect import OrnsteinUhlenbeckPolicy, collect, episode_path
from jepa_lightning.rl.envs import domain_tasks, make_env
from jepa_lightning.rl.relabel import relabel
from jepa_lightning.rl.rollout import Env


def episode(steps: int = 5, obs_dim: int = 3, act_dim: int = 2, seed: int = 0, pixels: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    ep = {"observation": rng.normal(size=(steps + 1, obs_dim)), "action": rng.uniform(-1, 1, (steps, act_dim)),
          "terminal": np.arange(steps) == steps - 1, "physics": rng.normal(size=(steps + 1, 4)),
          "reward": rng.normal(size=steps)}
    if pixels:
        ep["pixels"] = rng.integers(0, 256, (steps + 1, 8, 8, 3), dtype=np.uint8)
    return ep


# ---------------------------------------------------------------- format


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_episode_round_trip_keeps_every_key_with_the_format_dtypes(tmp_path, suffix):
    ep = episode(pixels=True)
    path = str(tmp_path / f"ep{suffix}")
    write_episode(path, **ep)
    back = read_episode(path)
    assert sorted(back) == sorted(ep)
    dtypes = {"observation": np.float32, "action": np.float32, "terminal": np.bool_, "physics": np.float64,
              "pixels": np.uint8, "reward": np.float32}
    for key, value in ep.items():
        assert back[key].dtype == dtypes[key], key
        assert back[key].shape == value.shape, key
        np.testing.assert_array_equal(back[key], value.astype(dtypes[key]))


def bad_episode(kind: str) -> tuple[dict, str]:
    ep = episode()
    if kind == "missing":
        del ep["observation"]
        return ep, "observation"
    if kind == "length":
        ep["observation"] = ep["observation"][:-1]  # T rows instead of T+1
        return ep, "observation"
    ep["physics"][2, 1] = np.nan
    return ep, "physics"


@pytest.mark.parametrize("kind", ["missing", "length", "non_finite"])
def test_bad_episode_file_is_an_error_naming_file_and_key(tmp_path, kind):
    ep, key = bad_episode(kind)
    path = str(tmp_path / "bad.npz")
    np.savez(path, **ep)  # bypasses write_episode's own check
    with pytest.raises(EpisodeFormatError, match=rf"bad\.npz.*'?{key}") as err:
        read_episode(path)
    assert path in str(err.value)
    with pytest.raises(EpisodeFormatError, match=key):
        write_episode(str(tmp_path / "again.npz"), **ep)
    write_episode(str(tmp_path / "good.npz"), **episode())
    with pytest.raises(EpisodeFormatError, match="bad.npz"):  # a dataset with a bad episode does not load
        OfflineRLDataModule(path=str(tmp_path), val_fraction=0.0)


def test_per_step_shape_differing_between_episodes_is_an_error(tmp_path):
    write_episode(str(tmp_path / "a.npz"), **episode(obs_dim=3))
    write_episode(str(tmp_path / "b.npz"), **episode(obs_dim=4))
    with pytest.raises(EpisodeFormatError, match=r"b\.npz: 'observation' has per-step shape \(4,\).*a\.npz"):
        OfflineRLDataModule(path=str(tmp_path), val_fraction=0.0)


def test_unreadable_file_is_skipped_reported_and_the_rest_loads(tmp_path):
    for i in range(3):
        write_episode(str(tmp_path / f"ep{i}.npz"), **episode(seed=i))
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 truncated")
    good = (tmp_path / "ep0.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(good[: len(good) // 2])
    with pytest.warns(UserWarning, match="skipped"):
        dm = OfflineRLDataModule(path=str(tmp_path), val_fraction=0.0, batch_size=4)
    assert sorted(os.path.basename(f) for f in dm.skipped_files) == ["broken.npz", "cut.npz"]
    assert len(dm.train_episodes) == 3 and dm.obs_dim == 3 and dm.act_dim == 2
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["obs"].shape == (4, 3) and batch["next_physics"].dtype.is_floating_point


def test_damaged_compressed_member_is_skipped(tmp_path):
    for i in range(2):
        write_episode(str(tmp_path / f"ep{i}.npz"), **episode(steps=50, seed=i))
    data = bytearray((tmp_path / "ep1.npz").read_bytes())
    data[60:100] = bytes(40)  # inside the first member's deflate stream; the zip directory is intact
    (tmp_path / "ep1.npz").write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dm = OfflineRLDataModule(path=str(tmp_path), val_fraction=0.0)
    assert [os.path.basename(f) for f in dm.skipped_files] == ["ep1.npz"]
    assert any("skipped" in str(w.message) for w in caught) and len(dm.train_episodes) == 1


# ---------------------------------------------------------------- batches


def labelled_folder(tmp_path, lengths=(4, 7, 2)) -> str:
    """Episodes whose observation row t of episode e is [e, t]: batches show where every row came from."""
    for e, steps in enumerate(lengths):
        obs = np.stack([np.full(steps + 1, e), np.arange(steps + 1)], 1)
        act = np.stack([np.full(steps, e), np.arange(steps)], 1)
        write_episode(str(tmp_path / f"ep{e}.npz"), observation=obs, action=act)
    return str(tmp_path)


def test_transitions_next_obs_follows_obs_within_its_episode(tmp_path):
    lengths = (4, 7, 2)
    dm = OfflineRLDataModule(path=labelled_folder(tmp_path, lengths), val_fraction=0.0)
    dm.setup("fit")
    ds = dm.train_dataset
    assert len(ds) == sum(lengths)  # every step once, none past an episode's end
    batch = ds.__getitems__(list(range(len(ds))))
    obs, nxt, act = batch["obs"], batch["next_obs"], batch["action"]
    assert (nxt[:, 0] == obs[:, 0]).all()  # same episode: never crosses into the next
    assert (nxt[:, 1] == obs[:, 1] + 1).all()  # the row after
    assert (act == obs).all()  # action t belongs to observation t
    assert sorted(map(tuple, obs.int().tolist())) == [(e, t) for e, n in enumerate(lengths) for t in range(n)]


def test_chunks_mask_and_pad_past_the_episode_end(tmp_path):
    dm = OfflineRLDataModule(path=labelled_folder(tmp_path, (4, 7)), val_fraction=0.0, mode="chunks", chunk=3)
    dm.setup("fit")
    ds = dm.train_dataset
    rows = {tuple(ds[i]["obs"].int().tolist()): i for i in range(len(ds))}
    last = ds[rows[(0, 2)]]  # episode 0 (4 steps), step 2: steps 2, 3 exist, step 4 does not
    assert last["valid"].tolist() == [True, True, False]
    assert last["actions"][:, 1].tolist() == [2, 3, 3]  # padded by repeating the last action
    assert last["future_obs"][:, 1].tolist() == [3, 4, 4]  # observations t+1.. then the final one repeated
    assert (last["future_obs"][:, 0] == 0).all() and (last["actions"][:, 0] == 0).all()
    inner = ds[rows[(1, 1)]]
    assert inner["valid"].all() and inner["future_obs"][:, 1].tolist() == [2, 3, 4]


# ---------------------------------------------------------------- environments and relabeling


def test_dm_control_env_seeding_actions_time_limit_and_errors():
    env = make_env("walker", "walk", time_limit=5)
    assert isinstance(env, Env) and env.max_steps == 5
    assert env.observation_dim == 24 and env.action_dim == 6 and env.tasks == ["stand", "walk", "run"]
    assert env.observation_keys == ["height", "orientations", "velocity"]  # sorted; height is one value
    a, b, c = env.reset(seed=1), env.reset(seed=1), env.reset(seed=2)
    assert a.dtype == np.float32 and a.shape == (24,)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    state = env.physics_state()
    assert state.dtype == np.float64 and state.shape == (18,)
    _, _, done = env.step(np.full(6, 5.0))
    np.testing.assert_array_equal(env.physics.data.ctrl, np.ones(6))  # clipped to the spec
    for _ in range(4):
        assert not done
        _, reward, done = env.step(np.zeros(6))
    assert done and env.steps == 5 and 0.0 <= reward <= 1.0 and not env.terminated
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(6))
    with pytest.raises(ValueError, match="unknown task 'jog'.*stand, walk, run"):
        make_env("walker", "jog")
    with pytest.raises(ValueError, match="unknown dm_control domain 'walkr'.*cheetah.*walker"):
        domain_tasks("walkr")


def env_rewards(domain: str, task: str, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rewards the environment returns along a noisy-policy trajectory, with the states and actions."""
    env = make_env(domain, task, time_limit=steps)
    policy = OrnsteinUhlenbeckPolicy(env.action_dim, np.random.default_rng(seed))
    policy.reset()
    obs, done, rewards, states, actions = env.reset(seed=seed), False, [], [], []
    while not done:
        actions.append(np.clip(policy(obs), -1, 1))
        obs, reward, done = env.step(actions[-1])
        rewards.append(reward)
        states.append(env.physics_state())
    return np.array(rewards), np.array(states), np.array(actions)


@pytest.mark.parametrize("domain,task", [("walker", "stand"), ("walker", "walk"), ("point_mass", "easy")])
def test_relabel_equals_the_environment_reward(domain, task):
    rewards, next_physics, actions = env_rewards(domain, task, steps=150, seed=3)
    assert rewards.std() > 0  # a trajectory that exercises the reward
    relabeled = relabel(domain, task, next_physics, action=actions)
    assert relabeled.dtype == np.float32 and relabeled.shape == rewards.shape
    np.testing.assert_allclose(relabeled, rewards, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(relabeled, rewards.astype(np.float32))


def test_relabel_other_task_and_what_cannot_be_relabeled():
    _, walker_states, _ = env_rewards("walker", "stand", steps=30, seed=0)
    walk = relabel("walker", "walk", walker_states)  # state-only reward: no action needed
    assert walk.shape == (30,) and np.isfinite(walk).all()
    _, states, _ = env_rewards("point_mass", "easy", steps=5, seed=0)
    with pytest.raises(ValueError, match="point_mass/easy.*control cost.*action"):
        relabel("point_mass", "easy", states)
    with pytest.raises(ValueError, match=r"physics must be \[N, 18\].*\(5, 4\)"):
        relabel("walker", "walk", states)
    with pytest.raises(ValueError, match="reacher/easy.*randomizes its target.*geom_pos"):
        relabel("reacher", "easy", np.zeros((3, 4)))


# ---------------------------------------------------------------- collection


def test_collect_is_reproducible_and_resumable(tmp_path):
    folder = str(tmp_path / "data")
    out = collect(folder, "walker", policy="mixed", episodes=3, seed=7, time_limit=20, progress=False)
    assert out["collected"] == 3 and out["transitions"] == 60
    first = {i: read_episode(episode_path(folder, i)) for i in range(3)}
    assert set(first[0]) == {"observation", "action", "terminal", "physics", "reward"}
    assert first[0]["observation"].shape == (21, 24) and first[0]["physics"].shape == (21, 18)
    assert not np.array_equal(first[0]["action"], first[1]["action"])
    np.testing.assert_array_equal(first[0]["reward"], relabel("walker", "stand", first[0]["physics"][1:]))
    mtimes = {i: os.stat(episode_path(folder, i)).st_mtime_ns for i in (0, 2)}
    os.remove(episode_path(folder, 1))  # as if interrupted before episode 1 was written
    out = collect(folder, "walker", policy="mixed", episodes=3, seed=7, time_limit=20, progress=False)
    assert out["collected"] == 1 and out["skipped"] == 2
    again = read_episode(episode_path(folder, 1))
    for key in first[1]:
        np.testing.assert_array_equal(again[key], first[1][key])
    assert {i: os.stat(episode_path(folder, i)).st_mtime_ns for i in (0, 2)} == mtimes  # untouched
    with pytest.raises(ValueError, match="other settings.*seed: 7 there, 8 asked"):
        collect(folder, "walker", policy="mixed", episodes=3, seed=8, time_limit=20, progress=False)


def test_collect_pixels_feed_the_datamodule(tmp_path):
    folder = str(tmp_path / "pix")
    collect(folder, "point_mass", policy="random", episodes=2, time_limit=3, pixels=True, image_size=16,
            progress=False)
    ep = read_episode(episode_path(folder, 0))
    assert ep["pixels"].shape == (4, 16, 16, 3) and ep["pixels"].dtype == np.uint8 and ep["pixels"].std() > 0
    dm = OfflineRLDataModule(path=folder, val_fraction=0.0, pixels=True, batch_size=2)
    assert dm.metadata["domain"] == "point_mass" and dm.metadata["task"] == "easy"
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["pixels"].shape == (2, 3, 16, 16) and batch["next_pixels"].shape == (2, 3, 16, 16)


def test_collect_cli(tmp_path, capsys):
    out = str(tmp_path / "cli")
    with pytest.raises(SystemExit) as exit_:
        cli_main(["collect", "--domain", "point_mass", "--episodes", "2", "--time-limit", "10", "--out", out,
                  "--policy", "noisy", "--no-progress"])
    assert exit_.value.code == 0
    printed = capsys.readouterr().out
    assert f"to {out}" in printed and "2 episodes, 20 transitions" in printed
    assert sorted(os.listdir(out)) == ["dataset.json", "episode_000000.npz", "episode_000001.npz"]
    for bad, message in [(["--domain", "walkr"], "unknown dm_control domain 'walkr'"),
                         (["--domain", "walker", "--task", "jog"], "unknown task 'jog'"),
                         (["--domain", "walker", "--policy", "curious"], "unknown collection policy 'curious'"),
                         (["--domain", "walker", "--policy", "rnd", "--rnd-update-every", "0"],
                          "invalid RND settings: update_every=0")]:
        with pytest.raises(SystemExit) as exit_:
            cli_main(["collect", *bad, "--out", str(tmp_path / "x"), "--episodes", "1", "--no-progress"])
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and message in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1


def test_embedded_walker_is_generated_once_and_loads(tmp_path, monkeypatch):
    monkeypatch.setenv("JEPA_LIGHTNING_CACHE", str(tmp_path / "cache"))
    dm = OfflineRLDataModule(embedded="walker", batch_size=8)
    assert dm.metadata["domain"] == "walker" and dm.metadata["policy"] == "mixed"
    assert len(dm.train_episodes) + len(dm.val_episodes) == 50 and dm.obs_dim == 24 and dm.act_dim == 6
    assert dm.train_episodes.num_transitions == 1000 * len(dm.train_episodes)
    again = OfflineRLDataModule(embedded="walker", batch_size=8)  # cached: same folder, no regeneration
    assert again.path == dm.path
