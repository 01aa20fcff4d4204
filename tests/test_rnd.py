"""The RND explorer (jepa_lightning/rl/rnd.py) and ``collect --policy rnd``: the novelty signal, online learning
during a collection, and resuming an interrupted collection exactly."""

import os
import shutil

import numpy as np
import pytest
import torch

from datamodules.offline_rl import OfflineRLDataModule, read_episode
from jepa_lightning.rl.collect import RND_STATE, collect, episode_path
from jepa_lightning.rl.rnd import RND, RNDConfig, RNDExplorer

# small networks and a short warm-up, so a 50-step episode already trains the agent
TINY = RNDConfig(hidden=64, rep_dim=64, batch_size=32, warmup=40)


def test_rnd_error_falls_on_trained_states_and_stays_high_on_novel_ones():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    rnd = RND(obs_dim=8, hidden=64, rep_dim=32)
    seen = torch.randn(512, 8, generator=g) * 0.5  # the states the predictor is trained on: a blob near 0
    novel = torch.randn(512, 8, generator=g) * 0.5 + torch.tensor([3.0, -3.0] * 4)  # a distant blob
    rnd.obs_rms.update(torch.cat([seen, novel]))  # normalise both into range, so only training tells them apart
    opt = torch.optim.Adam(rnd.predictor.parameters(), lr=1e-3)
    with torch.no_grad():
        seen0, novel0 = rnd.error(seen).mean().item(), rnd.error(novel).mean().item()
    for _ in range(300):
        loss = rnd.error(seen[torch.randint(512, (64,), generator=g)]).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        seen1, novel1 = rnd.error(seen).mean().item(), rnd.error(novel).mean().item()
    assert seen1 < 0.01 * seen0  # learned (here ~300x lower)
    assert novel1 > 0.25 * novel0 and novel1 > 50 * seen1  # still novel (~half its error; ~170x the seen one)
    rnd.err_rms.update(rnd.error(seen).detach())  # the reward is the error in units of the training errors' std
    reward = rnd.reward(rnd.error(novel).detach())
    assert reward.shape == (512,) and reward.mean() > 10 * rnd.reward(rnd.error(seen).detach()).mean()


def test_explorer_acts_randomly_during_warmup_then_learns():
    explorer = RNDExplorer(obs_dim=5, action_dim=2, config=RNDConfig(hidden=32, rep_dim=16, batch_size=8, warmup=10))
    explorer.rng = np.random.default_rng(0)
    actor0 = [p.clone() for p in explorer.actor.parameters()]
    obs = np.zeros(5, np.float32)
    before = explorer.intrinsic_reward(np.ones((3, 5), np.float32))  # no statistics yet: a unit scale
    assert np.isfinite(before).all() and 0 < before.max() < 100
    for t in range(20):
        action = explorer(obs)
        assert action.shape == (2,) and np.all(np.abs(action) <= 1.0)
        next_obs = np.full(5, t + 1, np.float32)
        explorer.observe(obs, action, next_obs)
        obs = next_obs
    assert explorer.step == 20 and explorer.updates == 6  # at steps 10, 12, .., 20
    assert any(not torch.equal(a, b) for a, b in zip(actor0, explorer.actor.parameters()))
    assert explorer.replay.size == 20 and torch.equal(explorer.replay.next_obs[19], torch.full((5,), 20.0))
    with pytest.raises(ValueError, match="update_every=0"):
        RNDConfig(update_every=0)


def test_collect_rnd_writes_episodes_with_intrinsic_reward_and_the_agent_state(tmp_path):
    folder = str(tmp_path / "rnd")
    out = collect(folder, "walker", policy="rnd", episodes=3, seed=3, time_limit=50, progress=False, rnd=TINY)
    assert out["collected"] == 3 and out["transitions"] == 150
    assert out["rnd_steps"] == 150 and out["rnd_updates"] == 56  # steps 40, 42, .., 150
    for i in range(3):
        ep = read_episode(episode_path(folder, i))
        assert ep["observation"].shape == (51, 24) and ep["action"].shape == (50, 6)
        assert ep["intrinsic_reward"].shape == (50,) and ep["intrinsic_reward"].dtype == np.float32
        assert np.all(ep["intrinsic_reward"] > 0) and np.isfinite(ep["intrinsic_reward"]).all()
    state = torch.load(os.path.join(folder, RND_STATE), weights_only=True)
    assert state["step"] == 150 and state["updates"] == 56 and state["episodes"] == [0, 1, 2]
    assert state["obs_rms"]["count"] == 150 and state["err_rms"]["count"] == 56 * TINY.batch_size
    dm = OfflineRLDataModule(path=folder, val_fraction=0.0, batch_size=4)
    assert dm.metadata["policy"] == "rnd" and dm.metadata["rnd"]["warmup"] == 40
    assert "intrinsic_reward" in dm.train_episodes.data


def _episodes(folder: str, n: int) -> list[dict]:
    return [read_episode(episode_path(folder, i)) for i in range(n)]


def _same(a: list[dict], b: list[dict]) -> None:
    for x, y in zip(a, b, strict=True):
        assert sorted(x) == sorted(y)
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_interrupted_rnd_collection_resumes_exactly(tmp_path):
    kwargs = dict(domain="walker", policy="rnd", seed=5, time_limit=50, progress=False, rnd=TINY)
    whole = str(tmp_path / "whole")
    collect(whole, episodes=3, **kwargs)

    part = str(tmp_path / "part")
    out = collect(part, episodes=1, **kwargs)  # interrupted after episode 0
    assert out["rnd_steps"] == 50 and out["rnd_updates"] == 6
    first_state = str(tmp_path / "state_after_0.pt")
    shutil.copy(os.path.join(part, RND_STATE), first_state)
    out = collect(part, episodes=3, **kwargs)
    assert out["collected"] == 2 and out["skipped"] == 1
    assert out["rnd_steps"] == 150 and out["rnd_updates"] == 56  # the step counter went on from 50
    _same(_episodes(part, 3), _episodes(whole, 3))  # the same episodes as without the interruption

    # killed between writing episode 1 and saving the state: the agent relearns episode 1 from disk
    crash = str(tmp_path / "crash")
    collect(crash, episodes=2, **kwargs)
    shutil.copy(first_state, os.path.join(crash, RND_STATE))
    collect(crash, episodes=3, **kwargs)
    _same(_episodes(crash, 3), _episodes(whole, 3))
    assert torch.load(os.path.join(crash, RND_STATE), weights_only=True)["episodes"] == [0, 1, 2]

    with pytest.raises(ValueError, match="policy: 'rnd' there, 'noisy' asked"):
        collect(part, "walker", policy="noisy", episodes=4, seed=5, time_limit=50, progress=False)
    with pytest.raises(ValueError, match="other settings.*rnd"):
        collect(part, episodes=4, **(kwargs | {"rnd": RNDConfig(hidden=64, rep_dim=64, batch_size=32, warmup=20)}))
