"""Fast smoke versions of the speed benchmarks (`make bench`): they run, and print the JSON the README reports."""

import pytest
from conftest import run_script


def test_step_time_smoke():
    out = run_script("benchmarks/step_time.py", "--img", "32", "--patch", "8", "--embed-dim", "64", "--depth", "1",
                     "--heads", "4", "--pred-dim", "32", "--pred-depth", "1", "--steps", "3", "--warmup", "1",
                     "--peak-seconds", "0.3")
    assert out["ms_per_step"] > 0 and out["model_gflop_per_step"] > 0
    assert 0 < out["mfu"] < 1.5 and 0 <= out["mask_share_of_step"] < 1


def test_scaling_smoke():
    out = run_script("benchmarks/scaling.py", "--quick", "--procs", "1", "2")
    runs = {r["procs"]: r for r in out["runs"]}
    assert set(runs) == {1, 2}
    for procs, r in runs.items():
        assert r["steps_per_s"] > 0 and r["samples_per_s"] > 0 and r["steps_timed"] > 0
        assert r["global_batch"] == procs * r["batch_per_proc"]
        assert r["gflop_per_step"] > 0 and r["gflop_per_s"] > 0
        assert r["peak_rss_mib"] > 0 and len(r["peak_rss_mib_per_rank"]) == procs
    (vs_one,) = out["scaling"]
    assert vs_one["speedup"] > 0 and vs_one["efficiency"] > 0
    assert 1.3 < vs_one["flops_ratio"] < 3  # twice the global batch, about twice the FLOPs per step


def test_video_loader_smoke():
    out = run_script("benchmarks/video_loader.py", "--quick", "--workers", "0")
    assert out["h264_224"]["workers0_seek"] > 0 and out["h264_224"]["workers0_from_start"] > 0
    digits = out["moving_digits"]
    assert digits["workers0"] > 0 and digits["tiny_recipe_training"]["samples_per_s"] > 0
    assert digits["loader_over_training"]["workers0"] > 0


def test_paper_step_smoke():
    """The paper-size step benchmark, eager only, at a tiny size on CPU: a timed step and its FLOPs."""
    out = run_script("benchmarks/paper_step.py", "--quick", "--compile")
    (arm,) = out["arms"]
    assert arm["compiled"] is None and arm["step_seconds"] > 0 and arm["gflop_per_step"] > 0
    assert arm["mfu_percent"] >= 0 and arm["speedup_vs_eager"] == 1.0
    lo, hi = arm["context_tokens_range"]
    assert 1 <= lo <= hi <= 16  # a 4x4 grid of tokens


def test_memory_smoke():
    """Activation checkpointing's memory and time at a tiny size on CPU, and one paper recipe on the meta device."""
    out = run_script("benchmarks/memory.py", "--quick")
    eager, ckpt = out["cpu"]["arms"]
    assert eager["checkpoint_blocks"] == 0 and ckpt["checkpoint_blocks"] == "all"
    assert eager["step_seconds"] > 0 and eager["step_peak_mib"] > 0 and ckpt["step_peak_mib"] > 0
    (row,) = out["paper"]
    assert row["method"] == "IJEPA" and row["input"] == [128, 3, 224, 224]
    assert 600 < row["trainable_params_m"] < 700  # ViT-H/14 (632 M) and its predictor
    assert 0 < row["activations_checkpointed_gib"] < 0.3 * row["activations_gib"]
    one, eight = row["per_gpu"]
    assert eight["states_gib"] * 8 == pytest.approx(one["states_gib"], rel=0.01)
    assert one["total_checkpointed_gib"] < one["total_gib"]


def test_footprint_smoke():
    """The import-footprint benchmark on this checkout (no `--before`): the CLI's import and a 3-step fit of the
    digits I-JEPA, from fresh processes; what it reports as loaded matches tests/test_import_footprint.py."""
    out = run_script("benchmarks/footprint.py")
    after = out["after"]
    assert 0 < after["import"]["rss_mib"] <= after["fit"]["recipes/ijepa/tiny.yaml"]["peak_rss_mib"]
    fit = after["fit"]["recipes/ijepa/tiny.yaml"]
    assert "jepa_lightning.methods.ijepa" in fit["ours"] and "jepa_lightning.methods.td_jepa" not in fit["ours"]
    assert "sklearn" not in fit["heavy"] and "tensorboard" in fit["heavy"]  # the default logger is TensorBoard
    assert [layer["import"] for layer in out["layers"]][-1] == "jepa_lightning.cli"
