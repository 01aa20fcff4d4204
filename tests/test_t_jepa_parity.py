"""T-JEPA side by side with the official code (benchmarks/fidelity/t_jepa_parity.py).

The official code is never part of this repository: the official-training test runs only when env TJEPA_OFFICIAL
names a checkout of jose-melo/t-jepa (benchmarks/fidelity/official.sh clones it); the input and recipe mapping
tests need nothing of it.
"""

import os

import pytest
import torch
from conftest import load_benchmark

OFFICIAL = os.environ.get("TJEPA_OFFICIAL")
needs_official = pytest.mark.skipif(
    not OFFICIAL, reason="set TJEPA_OFFICIAL to a checkout of jose-melo/t-jepa to run the T-JEPA side-by-side check")


@pytest.fixture(scope="module")
def tp():
    return load_benchmark("benchmarks/fidelity/t_jepa_parity.py", "t_jepa_parity")


def test_official_rows_put_numeric_columns_first_then_category_codes(tp):
    split = {"num": torch.tensor([[0.5, 1.0], [0.0, 0.25]]), "cat": torch.tensor([[2, 0, 1], [0, 3, 1]]),
             "label": torch.tensor([0, 1])}
    rows = tp.official_rows(split)
    assert rows.dtype == torch.float32
    assert rows.tolist() == [[0.5, 1.0, 2.0, 0.0, 1.0], [0.0, 0.25, 0.0, 3.0, 1.0]]
    assert tp.official_rows({"num": torch.ones(4, 3), "cat": torch.zeros(4, 0, dtype=torch.long)}).shape == (4, 3)


def test_the_official_arm_takes_the_tiny_recipe_sizes_and_schedule(tp):
    s = tp.recipe_settings("credit_data")  # recipes/t_jepa/credit_data_tiny.yaml
    assert (s["dim"], s["depth"], s["heads"], s["ffn"]) == (32, 3, 2, 64)  # FFN = embed_dim x mlp_ratio
    assert (s["pred_dim"], s["pred_depth"], s["pred_heads"], s["num_targets"]) == (16, 2, 4, 4)
    assert (s["batch_size"], s["epochs"], s["lr"], s["ema"]) == (64, 40, 1e-3, [0.99, 1.0])
    assert s["ctx"] == [0.1363, 0.3682] and s["tgt"] == [0.1556, 0.6222]


def test_official_code_is_required_with_a_clear_error(tp, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a checkout of jose-melo/t-jepa"):
        tp.load_official(str(tmp_path))


@needs_official
def test_official_tjepa_trains_on_our_rows_and_gets_our_heads(tp):
    out = tp.run("wine", 0, OFFICIAL, epochs=4)
    assert out["steps"] == 4 * -(-out["rows"]["train"] // out["settings"]["batch_size"])
    assert out["loss_last"] < out["loss_first"]  # the official objective goes down on our rows
    for arm in ("official", "official_random_init"):
        assert out[arm]["dim"] == (1 + 13) * 32  # [CLS] + wine's 13 feature tokens, flattened
        assert 1 / 3 < out[arm]["linear"] <= 1 and 1 / 3 < out[arm]["mlp"] <= 1  # 3 classes: above chance


def test_collapse_statistics_of_any_encoders_tokens(tp):
    heads = load_benchmark("benchmarks/fidelity/t_jepa_heads.py", "t_jepa_heads")
    g = torch.Generator().manual_seed(0)
    per_feature = torch.randn(1, 5, 8, generator=g)
    collapsed = heads.token_collapse(per_feature.expand(64, -1, -1))  # every row embedded alike: position only
    assert collapsed["spread"] == 0.0
    mostly_position = heads.token_collapse(per_feature + 0.1 * torch.randn(64, 5, 8, generator=g))
    varied = heads.token_collapse(torch.randn(64, 5, 8, generator=g))
    assert 0.05 < mostly_position["spread"] < 0.2 < 0.9 < varied["spread"] <= 1.0
    assert varied["rankme_token"] > 5  # isotropic 8-d tokens: near-full effective rank


def test_our_arms_come_from_t_jepa_py_runs_with_its_own_arguments(tp):
    """The parity asks t_jepa.py's own parser for our runs' settings, so a flag t_jepa.py gains never breaks it."""
    quick = tp.t_jepa.parse_args(["--quick"])
    assert (quick.epochs, quick.probes, quick.seeds, quick.reference_head) == (2, 3, [0], False)
    assert tp.t_jepa.cache_path("credit_data", 0, quick).name == "credit_data_s0_e2_p3_quick.json"
    longer = tp.t_jepa.parse_args(["--epochs", "20"])
    assert tp.t_jepa.cache_path("diamonds", 1, longer).name == "diamonds_s1_e20.json"
    table = tp.t_jepa.parse_args(["--", *tp.TABLE])  # our arm with the official sin-cos table: its own runs
    assert tp.t_jepa.cache_path("diamonds", 1, table).name == "diamonds_s1_model.encoder.pos_embed=sincos.json"
    assert tp.ARMS["ours_table"] == ("ours_table", "pretrained")


def test_claims_say_which_of_our_arms_agrees_with_the_official_code(tp):
    """dataset_entries on made-up runs: the official pretraining level with its init, ours with the table level
    with the official code, ours without it 6 points below: the claims say exactly that."""
    def side(arms: dict[str, float]) -> dict:
        return {"arms": {a: {"linear": v / 100, "mlp": v / 100, "final": {"spread": 0.1, "rankme": 5.0}}
                         for a, v in arms.items()}}

    pairs = []
    for seed, jitter in enumerate((-0.5, 0.0, 0.5)):
        official = {k: {"linear": (71 + jitter) / 100, "mlp": (78 + jitter) / 100,
                        "final": {"spread": 0.01, "rankme": 14.0}} for k in ("official", "official_random_init")}
        pairs.append({"dataset": "diamonds", "seed": seed, "official": official | {
            "task": "classification", "rows": {"train": 10, "val": 2, "test": 2}, "epochs": 1, "steps": 1,
            "loss_first": 0.3, "loss_last": 0.003},
            "ours": side({"pretrained": 65 + jitter, "random_init": 73, "raw": 65}),
            "ours_table": side({"pretrained": 70.5 + jitter, "random_init": 72.5})})
    probes, claims, _ = tp.dataset_entries(pairs)
    verdict = {c["statement"]: c["holds"] for c in claims}
    assert verdict["diamonds: ours and the official code agree on the linear head (minus official)"] is False
    assert verdict["diamonds: ours with the official sin-cos table on its tokens and the official code agree on the "
                   "linear head (minus official)"] is True
    assert not any(v for k, v in verdict.items() if "beats its random-init" in k)
    linear = next(p for p in probes if p["name"] == "diamonds_linear_official")
    assert set(linear["scores"]) == set(tp.ARMS)
