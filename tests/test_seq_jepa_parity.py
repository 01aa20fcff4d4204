"""seq-JEPA side by side with the official code (benchmarks/fidelity/seq_jepa_parity.py).

The official code is never part of this repository: the equivalence test runs only when env SEQJEPA_OFFICIAL names
a checkout of hafezgh/seq-jepa (benchmarks/fidelity/official.sh clones it); the rest needs nothing of it.
"""

import math
import os

import pytest
import torch
from conftest import load_benchmark

OFFICIAL = os.environ.get("SEQJEPA_OFFICIAL")
needs_official = pytest.mark.skipif(
    not OFFICIAL, reason="set SEQJEPA_OFFICIAL to a checkout of hafezgh/seq-jepa to run the seq-JEPA equivalence check")


@pytest.fixture(scope="module")
def sp():
    return load_benchmark("benchmarks/fidelity/seq_jepa_parity.py", "seq_jepa_parity")


def test_official_names_map_onto_ours(sp):
    state = {"encoder.net.stem.0.weight": 1, "encoder.fc.weight": 2, "target_encoder.net.stem.0.weight": 3,
             "transformer_encoder.transformer_encoder.layers.2.linear1.bias": 4, "transformer_encoder.norm.weight": 5,
             "predictor.1.running_mean": 6, "action_proj.0.weight": 7, "agg_token": 8,
             "online_equiprobe.0.weight": 9}
    assert sp.official_to_ours(state) == {
        "encoder.stem.0.weight": 1, "teacher.module.stem.0.weight": 3, "aggregator.0.layers.2.linear1.bias": 4,
        "aggregator.1.weight": 5, "predictor.1.running_mean": 6, "action_embed.0.weight": 7, "agg_token": 8}


def test_official_schedules_warm_up_then_hold_the_lr_and_raise_the_momentum_by_epoch(sp):
    lrs, moms = sp.official_schedules(epochs=10, lr=5e-4, initial_lr=1e-5, warmup=2, momentum=0.996)
    assert lrs[0] == pytest.approx(1e-5) and lrs[1] == pytest.approx(1e-5 + (5e-4 - 1e-5) / 2)
    assert lrs[2:] == [5e-4] * 8  # its cosine steps are overwritten every epoch: constant after the warmup
    assert moms[0] == pytest.approx(0.996)
    assert moms[5] == pytest.approx(1 - 0.004 * (math.cos(math.pi / 2) + 1) / 2)
    assert all(a < b < 1 for a, b in zip(moms, moms[1:]))


def test_the_backbone_stands_in_for_resnet18_with_its_width(sp):
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 5))
    backbone = sp.Backbone(net, 5)
    assert backbone.fc.in_features == 5  # what the official code reads as the ResNet's width
    x = torch.randn(2, 3, 2, 2)
    assert torch.equal(backbone(x), net(x))


def test_official_code_is_required_with_a_clear_error(sp, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a checkout of hafezgh/seq-jepa"):
        sp.load_official(str(tmp_path))


@needs_official
@pytest.mark.parametrize("use_actions", [True, False])
def test_ours_equals_the_official_model_given_the_same_weights(sp, use_actions):
    out = sp.equivalence(sp.load_official(OFFICIAL), seed=0, quick=True, use_actions=use_actions)
    assert out["eval_loss_diff"] <= 1e-5 and out["max_grad_diff"] <= 1e-5 * out["max_grad"]
    assert out["grad_tensors"] > 30 and not out["grad_missing"]
    if use_actions:  # the official action BatchNorm's batch includes the action to the predicted view
        assert 0 < out["train_loss_diff"] < 0.05
    else:  # without actions nothing else differs in train mode
        assert out["train_loss_diff"] <= 1e-5
