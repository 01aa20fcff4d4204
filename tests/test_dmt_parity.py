"""Differential check of DMT-JEPA's head against the official code (benchmarks/fidelity/dmt_parity.py).

The official code is never part of this repository: the parity tests run only when env DMT_OFFICIAL names a
checkout of DMTJEPA/DMTJEPA; the weight-mapping tests need nothing of it.
"""

import os

import pytest
import torch
from conftest import load_benchmark

from jepa_lightning.methods.dmt_jepa import LocalAggregationHead

OFFICIAL = os.environ.get("DMT_OFFICIAL")
needs_official = pytest.mark.skipif(
    not OFFICIAL, reason="set DMT_OFFICIAL to a checkout of DMTJEPA/DMTJEPA to run the DMT-JEPA head parity check")


@pytest.fixture(scope="module")
def dp():
    return load_benchmark("benchmarks/fidelity/dmt_parity.py", "dmt_parity")


def _official_like_state(head: LocalAggregationHead) -> dict[str, torch.Tensor]:
    """The official LocalAggHead's state dict names and shapes, written by hand (a DDP 'module.' prefix included)."""
    fake = {}
    for key, value in head.state_dict().items():
        key = key.replace("blocks.", "cls_blocks.").replace(".xattn.", ".attn.")
        if ".attn.kv." in key:
            k, v = torch.randn_like(value).chunk(2)
            fake["module." + key.replace(".kv.", ".k.")], fake["module." + key.replace(".kv.", ".v.")] = k, v
        else:
            fake["module." + key] = torch.randn_like(value)
    return fake


def test_head_mapping_stacks_k_and_v_and_names_what_does_not_map(dp):
    head = LocalAggregationHead(32, num_heads=4)
    fake = _official_like_state(head)
    head.load_state_dict(dp.map_official_to_ours(fake, head))  # strict: every key filled, nothing extra
    assert torch.equal(head.blocks[1].xattn.kv.weight[:32], fake["module.cls_blocks.1.attn.k.weight"])
    assert torch.equal(head.blocks[1].xattn.kv.weight[32:], fake["module.cls_blocks.1.attn.v.weight"])
    assert torch.equal(head.blocks[0].mlp.fc2.bias, fake["module.cls_blocks.0.mlp.fc2.bias"])

    with pytest.raises(KeyError, match=r"without a place in ours \['cls_token'\]"):
        dp.map_official_to_ours({**fake, "cls_token": torch.zeros(1, 1, 32)}, head)
    del fake["module.cls_blocks.0.attn.v.bias"]
    with pytest.raises(KeyError, match=r"cls_blocks\.0\.attn\.k\.bias.*nothing fills \['blocks\.0\.xattn\.kv\.bias'\]"):
        dp.map_official_to_ours(fake, head)


def test_border_patches_of_a_grid(dp):
    edge = dp.border((4, 5))
    assert int(edge.sum()) == 14 and not edge[6] and edge[0] and edge[19]


def test_official_code_is_required_with_a_clear_error(dp, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a checkout of DMTJEPA/DMTJEPA"):
        dp.load_official(tmp_path)


@needs_official
def test_head_equals_the_official_code(dp, tmp_path):
    out = dp.main(["--official", OFFICIAL, "--results-dir", str(tmp_path)])
    gm, tm, bt = out["global_mode"], out["target_mode_per_image"], out["target_mode_batched"]
    assert gm["output_max_abs_diff"] <= 1e-5 and gm["grad_max_rel_diff"] <= 1e-5, gm
    assert tm["interior_max_abs_diff"] <= 1e-5 and tm["interior_topk_sets_equal"], tm
    assert tm["border_topk_sets_differ_frac"] > 0  # the official window wraps around the grid, ours does not
    assert bt["ours_batched_vs_per_image_max_abs_diff"] <= 1e-5
    assert bt["official_batched_vs_per_image_max_abs_diff"] > 1e-2  # its batched queries mix images
    assert (tmp_path / "dmt_parity.json").is_file()
