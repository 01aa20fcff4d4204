"""Fast smoke versions of the benchmark scripts: they run, and print the JSON the README reports."""

import json
import subprocess
import sys

from conftest import ROOT


def run_script(*args: str) -> dict:
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_step_time_smoke():
    out = run_script("benchmarks/step_time.py", "--img", "32", "--patch", "8", "--embed-dim", "64", "--depth", "1",
                     "--heads", "4", "--pred-dim", "32", "--pred-depth", "1", "--steps", "3", "--warmup", "1",
                     "--peak-seconds", "0.3")
    assert out["ms_per_step"] > 0 and out["model_gflop_per_step"] > 0
    assert 0 < out["mfu"] < 1.5 and 0 <= out["mask_share_of_step"] < 1


def test_ijepa_digits_fidelity_smoke():
    out = run_script("benchmarks/fidelity/ijepa_digits.py", "--epochs", "1", "--seeds", "0", "--shots", "3", "--",
                     "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=1")
    run = out["runs"][0]
    assert run["steps"] == 3
    for enc in ("pretrained", "random"):
        assert set(run[enc]) == {"linear_acc", "linear_3shot_acc", "knn_acc"}
        assert all(0.0 <= v <= 1.0 for v in run[enc].values())
    assert run["random"]["linear_acc"] > 0.3  # digits are easy even for random features: the probe works
    assert isinstance(out["claim"]["holds"], bool)


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


def test_salt_fidelity_smoke(tmp_path):
    out = run_script("benchmarks/fidelity/salt.py", "--seeds", "0", "--teacher-steps", "4", "--student-steps", "4",
                     "--probe-epochs", "1", "--num-train", "32", "--num-val", "8", "--cache-dir", str(tmp_path),
                     "--out", str(tmp_path / "out"), "--patch-size", "8", "--digit-size", "14")  # 4x4x4 tokens: fast
    assert (tmp_path / "out" / "t4_s4_p1_d14_k8_n32_v8_seed0.json").is_file()     # the seed's cached result
    (seed,) = out["seeds"]
    assert {"teacher_strong", "student_strong", "teacher_short", "student_short", "teacher_narrow",
            "student_narrow", "vjepa"} <= set(seed["runs"])
    assert seed["runs"]["student_strong"]["steps"] == 4 and seed["runs"]["teacher_short"]["steps"] == 1
    # V-JEPA gets SALT's FLOPs (strong teacher + student), within one step
    salt = seed["runs"]["teacher_strong"]["flops"] + seed["runs"]["student_strong"]["flops"]
    assert abs(seed["runs"]["vjepa"]["flops"] - salt) <= 0.5 * seed["gflop_per_step"]["vjepa"] * 1e9
    for label in ("digit", "motion"):
        assert all(0.0 <= seed["probe"][e][label] <= 1.0 for e in seed["probe"])
        assert isinstance(out["claims"][label]["1_student_beats_teacher"]["holds"], bool)


def test_act_jepa_fidelity_smoke():
    out = run_script("benchmarks/fidelity/act_jepa.py", "--quick")
    assert {r["method"] for r in out["runs"]} == {"act_jepa", "act"}
    for name in ("act_jepa", "act"):
        assert 0.0 <= out[name]["success_rate"]["mean"] <= 1.0
        assert out[name]["probe_rmse"]["5"]["mean"] > 0
    assert out["raw_state_probe_rmse"]["5"] > 0
    assert isinstance(out["claim"]["holds"], bool)


def test_td_jepa_fidelity_smoke():
    out = run_script("benchmarks/fidelity/td_jepa.py", "--quick")
    linear = out["claim_1_linear_successor_features"]
    assert isinstance(linear["holds"], bool) and linear["worst_rel_err"] < 0.2  # 1500 steps: ~0.04 (full: 1e-5)
    walker = out["claim_2_walker_zero_shot"]
    assert set(walker["summary"]) == {"stand", "walk", "run"}
    assert all(s["random"]["mean"] >= 0 for s in walker["summary"].values())
    assert isinstance(walker["holds_far_above_random"], bool)


def test_ui_jepa_fidelity_smoke(tmp_path):
    out = run_script("benchmarks/fidelity/ui_jepa.py", "--quick", "--out", str(tmp_path / "out"),
                     "--cache-dir", str(tmp_path / "cache"))
    assert set(out["summary"]) == {"spatial_temporal", "spatial", "random"}
    run = out["runs"]["0"]
    for variant in ("spatial_temporal", "spatial"):
        assert run[variant]["pretrain"]["steps"] >= 1 and (tmp_path / "out" / f"encoder_{variant}_s0.safetensors").is_file()
    for variant in out["summary"]:
        assert all(0.0 <= v <= 1.0 for v in run[variant]["probe"].values())
        for split in ("few_shot", "zero_shot"):
            scores = run[variant]["decoder"][split]
            assert 0.0 <= scores["intent_similarity"] <= 1.0 and set(scores) >= {"cosine", "rouge1", "rouge2", "rougeL"}
    decoder = run["spatial_temporal"]["decoder"]
    assert decoder["latency_ms_per_recording"] > 0 and decoder["parameters"]["encoder"] > 0
    assert set(out["claims"]) == {"temporal_masking_helps_intent", "temporal_masking_helps_probe",
                                  "few_shot_above_zero_shot", "pretrained_beats_random"}
