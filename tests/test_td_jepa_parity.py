"""TD-JEPA side by side with the official code (benchmarks/fidelity/td_jepa_parity.py).

The official code is never part of this repository: the equivalence test runs only when env TDJEPA_OFFICIAL names a
checkout of marbaga/td_jepa_public (benchmarks/fidelity/official.sh clones it); the rest needs nothing of it.
"""

import os
import sys

import pytest
import torch
from conftest import load_benchmark

OFFICIAL = os.environ.get("TDJEPA_OFFICIAL")
needs_official = pytest.mark.skipif(
    not OFFICIAL, reason="set TDJEPA_OFFICIAL to a checkout of marbaga/td_jepa_public to run the TD-JEPA equivalence check")


@pytest.fixture(scope="module")
def tp():
    return load_benchmark("benchmarks/fidelity/td_jepa_parity.py", "td_jepa_parity")


def test_every_weight_of_ours_has_one_official_name(tp):
    args = tp.td_jepa.parse_args(["--hidden", "32"])
    names = list(tp.td_jepa.build_agent("td_jepa", tp.OBS_DIM, tp.ACTION_DIM, args).state_dict())
    mapped = [tp.ours_to_official(n) for n in names]
    assert len(set(mapped)) == len(names)
    assert tp.ours_to_official("phi_encoder.mlp.net.0.weight") == "_phi_mlp_encoder.net.0.weight"
    assert tp.ours_to_official("psi_encoder_target.module.mlp.net.5.bias") == "_target_psi_mlp_encoder.net.5.bias"
    assert tp.ours_to_official("phi_predictor.embed_a.net.3.weight") == "_phi_predictor.embed_sa.3.weight"
    assert tp.ours_to_official("psi_predictor_target.module.head.2.bias") == "_target_psi_predictor.Fs.2.bias"
    assert tp.ours_to_official("actor.head.0.weight") == "_actor.policy.0.weight"
    assert tp.ours_to_official("actor.embed_s.net.1.weight") == "_actor.embed_s.1.weight"
    with pytest.raises(KeyError, match="no official counterpart"):
        tp.ours_to_official("pixel_encoder.trunk.0.weight")


def test_the_official_replay_gives_td_jepa_minibatches(tp):
    n = 50
    data = {"obs": torch.randn(n, 3), "action": torch.rand(n, 2), "next_obs": torch.randn(n, 3),
            "terminal": (torch.arange(n) % 5 == 0).float()}
    replay, g = tp.Replay(data, seed=4), torch.Generator().manual_seed(4)
    for _ in range(3):  # td_jepa.train_agent's index draws, step by step
        idx = torch.randint(n, (8,), generator=g)
        got = replay.sample(8)
        assert torch.equal(got["observation"], data["obs"][idx]) and torch.equal(got["action"], data["action"][idx])
        assert torch.equal(got["next"]["observation"], data["next_obs"][idx])
        term = got["next"]["terminated"]
        assert term.dtype == torch.bool and term.shape == (8, 1)  # the official update's `~terminated` mask
        assert torch.equal(term[:, 0], data["terminal"][idx].bool())


def test_official_code_is_required_with_a_clear_error(tp, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a checkout of marbaga/td_jepa_public"):
        tp.load_official(str(tmp_path))


def test_a_missing_gymnasium_is_named_with_the_fix(tp, tmp_path, monkeypatch):
    pkg = tmp_path / "metamotivo" / "agents" / "td_jepa"
    pkg.mkdir(parents=True)
    for d in (pkg, pkg.parent, pkg.parent.parent):
        (d / "__init__.py").write_text("")
    (pkg / "agent.py").write_text("import gymnasium\n")
    monkeypatch.setitem(sys.modules, "gymnasium", None)  # as if it were not installed
    with pytest.raises(ModuleNotFoundError, match=r"imports gymnasium: install it with .*\[parity\]"):
        tp.load_official(str(tmp_path))
    assert "metamotivo" not in sys.modules  # the stand-in checkout does not linger for a real one


@needs_official
def test_ours_equals_the_official_update_given_the_same_weights_batch_z_and_noise(tp):
    out = tp.equivalence(tp.load_official(OFFICIAL), seed=0, batch=32, hidden=32)
    assert out["max_rel_loss_diff"] <= 1e-5 and out["max_grad_diff"] <= 1e-5 * out["max_grad"]
    assert out["grad_tensors"] > 50 and not out["grad_missing"]
    assert set(out["losses"]) == {"td_phi", "td_psi", "ortho_phi", "ortho_psi", "actor", "q"}


@needs_official
def test_the_official_ensemble_layers_start_larger_than_ours(tp):
    gains = tp.init_gains(tp.load_official(OFFICIAL), hidden=32)
    assert gains["predictor_weights"] > 1.2  # its orthogonal gain sqrt(2) on DenseParallel, ours 1
    assert gains["actor_weights"] == pytest.approx(1.0, abs=1e-3)
    assert gains["encoder_weights"] == pytest.approx(1.0, abs=1e-3)
