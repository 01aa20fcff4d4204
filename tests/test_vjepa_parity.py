"""Differential check of V-JEPA against the official code (benchmarks/fidelity/vjepa_parity.py).

The official code is never part of this repository: the parity test runs only when env VJEPA_OFFICIAL names a
checkout of facebookresearch/jepa; the state-dict conversion test needs nothing of it.
"""

import os

import pytest
import torch
from conftest import load_benchmark, run_script

OFFICIAL = os.environ.get("VJEPA_OFFICIAL")
needs_official = pytest.mark.skipif(
    not OFFICIAL, reason="set VJEPA_OFFICIAL to a checkout of facebookresearch/jepa to run the V-JEPA parity check")


@pytest.fixture(scope="module")
def vp():
    return load_benchmark("benchmarks/fidelity/vjepa_parity.py", "vjepa_parity")


OFFICIAL_NAMES = {"embed.": "predictor_embed.", "transformer.blocks.": "predictor_blocks.",
                  "transformer.norm.": "predictor_norm.", "proj.": "predictor_proj."}


class _Wrapped:
    """What the official PredictorMultiMaskWrapper's state dict holds: every name under "backbone."."""

    def __init__(self, state):
        self.state = state

    def state_dict(self):
        return {f"backbone.{k}": v for k, v in self.state.items()}


def test_official_predictor_state_maps_onto_ours(vp):
    """The official predictor's names (multi-mask wrapper, one mask token per generator) fill ours exactly."""
    ours = vp.build_ours(vp.Config(depth=1, predictor_depth=1))
    state = {}
    for key, value in ours.predictor.state_dict().items():
        if key == "mask_tokens":  # ours [2, P]; the official: a ParameterList of [1, 1, P]
            state.update({f"mask_tokens.{i}": torch.randn(1, 1, value.size(1)) for i in range(value.size(0))})
            continue
        prefix = next(p for p in OFFICIAL_NAMES if key.startswith(p))
        state[OFFICIAL_NAMES[prefix] + key[len(prefix):]] = torch.randn_like(value)
    converted = vp.official_state(_Wrapped(state), "predictor")
    assert converted["mask_token"].shape == (2, 1, 48) and not any(k.startswith("backbone.") for k in converted)
    ours.predictor.load_state_dict(vp.map_official_to_ours(converted, ours.predictor, "predictor"))  # strict
    assert torch.equal(ours.predictor.mask_tokens[1], state["mask_tokens.1"].flatten())
    assert torch.equal(ours.predictor.proj.weight, state["predictor_proj.weight"])


def test_official_code_is_required_with_a_clear_error(vp, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a checkout of facebookresearch/jepa"):
        vp.load_official(tmp_path)


@needs_official
def test_loss_gradients_and_masks_equal_the_official_code(vp, tmp_path, one_thread):
    out = vp.main(["--official", OFFICIAL, "--results-dir", str(tmp_path), "--mask-batches", "40", "--seeds"])
    eq = out["equivalence"]
    assert eq["params_compared"] > 50
    assert eq["loss_abs_diff"] <= 1e-5 and eq["grad_max_rel_diff"] <= 1e-5, eq
    assert max(eq["pos_embed_max_abs_diff"].values()) <= 1e-5
    tiny = out["masks"]["tiny 4x8x8"]
    for i in range(2):  # short- and long-range generators keep about the same context
        a, b = tiny["official"][i]["context"]["mean"], tiny["ours"][i]["context"]["mean"]
        assert abs(a - b) < 0.05 * 256, (i, a, b)
    assert (tmp_path / "vjepa_parity.json").is_file() and out["training"] == []


@pytest.mark.slow
@needs_official
def test_quick_training_parity_prints_the_schema_result(tmp_path):
    out = run_script("benchmarks/fidelity/vjepa_parity.py", "--quick", "--official", OFFICIAL,
                     "--results-dir", str(tmp_path))
    (run,) = out["training"]
    assert run["ours"]["loss_first"] == pytest.approx(run["official"]["loss_first"], abs=1e-5)  # same init and data
    assert {c["statement"] for c in out["claims"]} >= {"ours and the official code learn the same (within seed "
                                                         "spread)"}
