"""Fast smoke versions of the paper-claim benchmarks (`make reproduce`, benchmarks/fidelity/): they run, and print
the JSON the README reports. (A file of its own so that `make test`'s two workers share the benchmark smokes.)"""

import argparse
import json

from conftest import load_benchmark, run_script


def test_image_jepa_fidelity_smoke():
    """I-JEPA and DMT-JEPA on object scenes, one seed, 20 steps of a 1-block ViT: both result files in the schema
    (the smoke writes them to its cache, never over benchmarks/results)."""
    ijepa, dmt = run_script("benchmarks/fidelity/image_jepa.py", "--quick", "--seeds", "0")
    assert ijepa["name"] == "ijepa_scenes_quick" and dmt["name"] == "dmt_jepa_scenes_quick"
    for result in (ijepa, dmt):
        assert {p["name"] for p in result["probes"]} == {"image_linear", "image_knn", "image_linear_tokens",
                                                         "patch_linear", "patch_knn"}
        for probe in result["probes"]:
            assert {"random_init", "pretrained", "context_encoder"} <= set(probe["scores"])
            bound = 100 if probe["metric"].startswith("accuracy") else 1
            assert all(0 <= v <= bound for arm in probe["scores"].values() for v in arm)
        assert all(isinstance(c["holds"], bool) for c in result["claims"])
    assert "ijepa" in dmt["probes"][0]["scores"] and len(dmt["claims"]) == 6
    # the random init is the seed's initial network: the same for both methods
    assert ijepa["probes"][0]["scores"]["random_init"] == dmt["probes"][0]["scores"]["random_init"]
    assert ijepa["monitors"]["ijepa_s0"]["train/target_std"]


def test_ijepa_collapse_smoke():
    out = run_script("benchmarks/fidelity/ijepa_collapse.py", "--quick")
    assert set(out) == {"paper_ema_s0", "average_start_s0"}
    assert out["paper_ema_s0"]["ema_init_share"] > 0.9 and out["average_start_s0"]["ema_init_share"] == 0.0
    for run in out.values():
        assert {"teacher", "encoder", "random_init"} <= set(run)


def test_lejepa_fidelity_smoke():
    """LeJEPA against random init and I-JEPA at matched training FLOPs, one seed of 12 steps of a 1-block ViT, with
    the lambda / lr sweep: the result in the schema (written to the cache), the matched I-JEPA steps from the
    counted FLOPs, and the loss-vs-probe rank correlations over the probed checkpoints."""
    out = run_script("benchmarks/fidelity/lejepa.py", "--quick", "--fresh", "--seeds", "0")
    assert out["name"] == "lejepa_scenes_quick" and out["seeds"] == [0]
    config = out["config"]
    flops = config["step_flops"]
    assert config["ijepa_steps"] == round(12 * flops["lejepa"] / flops["ijepa"])
    for probe in out["probes"]:
        assert set(probe["scores"]) == {"random_init", "pretrained", "ijepa_matched_flops"}
        bound = 100 if probe["metric"].startswith("accuracy") else 1
        assert all(0 <= v <= bound for arm in probe["scores"].values() for v in arm)
    # 1 seed + 4 sweep runs, 2 checkpoints each, every point with its loss and probes
    points = config["sweep_points"]
    assert len(points) == 10 and {p["step"] for p in points} == {6, 12}
    assert all(p["loss"] > 0 and 0 <= p["image_linear"] <= 100 for p in points)
    rhos = [c for c in out["claims"] if "Spearman" in c["statement"]]
    # (NaN: a probe that did not change over a run's 2 checkpoints ranks nothing)
    assert len(rhos) == 9 and all(-1 <= c["value"] <= 1 for c in rhos if c["value"] == c["value"])


def test_spearman_ranks():
    bench = load_benchmark("benchmarks/fidelity/lejepa.py", "lejepa_bench")
    assert bench.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == 1.0
    assert bench.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == -1.0
    # ties take their average rank: ranks (0, 1.5, 1.5, 3) against (0, 1, 2, 3)
    assert abs(bench.spearman([1, 2, 2, 3], [1, 2, 3, 4]) - 0.9486833) < 1e-6


def test_sigreg_guard_smoke():
    """The guard benchmark's arms (I-JEPA at the paper's EMA and without an EMA teacher, unguarded and with SIGReg
    on the pooled output or through a projector), 3 steps, seed 0: the result in the schema with the collapse claims
    and the probe comparisons of each guard."""
    out = run_script("benchmarks/fidelity/sigreg_guard.py", "--quick")
    assert out["name"] == "sigreg_guard" and out["seeds"] == [0]
    assert {p["name"] for p in out["probes"]} == {"linear_acc", "knn_acc", "rankme"}
    for probe in out["probes"]:
        assert {"random_init", "pretrained", "unguarded", "unguarded_no_ema", "sigreg_no_ema_proj_0.05"} <= set(
            probe["scores"])
    assert len(out["claims"]) == 2 + 5 * 3 and all(isinstance(c["holds"], bool) for c in out["claims"])
    assert set(out["monitors"]) == {f"{arm}_s0" for arm in (
        "paper_ema", "no_ema", "paper_ema_sigreg", "paper_ema_sigreg_0.01", "paper_ema_sigreg_proj",
        "paper_ema_sigreg_proj_0.01", "no_ema_sigreg_proj")}


def test_salt_fidelity_smoke():
    """SALT on moving objects, one seed, three 1-block teachers and their students, next to vjepa.py's quick V-JEPA:
    the students' steps give SALT V-JEPA's training FLOPs, and the result is in the schema (written to the cache)."""
    out = run_script("benchmarks/fidelity/salt.py", "--quick", "--fresh")
    assert out["name"] == "salt_objects_quick" and out["seeds"] == [0]
    config = out["config"]
    gflop, steps = config["gflop_per_step"], config["student_steps"]
    assert 0 < gflop["teacher"] < gflop["student"] == gflop["vjepa"]  # no target encoder in stage 1
    # the strong teacher and its student cost V-JEPA's steps, to within one student step
    salt = config["teacher_steps"] * gflop["teacher"] + steps * gflop["student"]
    assert abs(salt - config["vjepa_steps"] * gflop["vjepa"]) <= gflop["student"] / 2 + 1e-3
    probes = {p["name"]: p for p in out["probes"]}
    assert {"shape_attentive", "motion_attentive", "shape_linear", "motion_linear"} <= set(probes)
    for probe in probes.values():
        assert set(probe["scores"]) == {"random_init", "pretrained", "teacher_strong", "student_short",
                                        "student_narrow", "vjepa"}
        assert all(0 <= v <= 100 for arm in probe["scores"].values() for v in arm)
    assert len(out["claims"]) == 10 and all(isinstance(c["holds"], bool) for c in out["claims"])
    assert out["monitors"]["salt_student_s0"]["train/target_std"]


def test_act_jepa_fidelity_smoke():
    """ACT-JEPA and plain ACT, one seed, 20 steps: the result in the schema, written to the benchmark's cache."""
    out = run_script("benchmarks/fidelity/act_jepa.py", "--quick", "--fresh")
    assert out["name"] == "act_jepa_push_quick" and out["seeds"] == [0]
    probes = {p["name"]: p for p in out["probes"]}
    assert set(probes) == {"success_rate", "probe_rmse_5"}
    assert set(probes["success_rate"]["scores"]) == {"random_init", "pretrained", "act"}
    assert all(0 <= v <= 100 for arm in probes["success_rate"]["scores"].values() for v in arm)
    rmse = probes["probe_rmse_5"]
    assert not rmse["higher_is_better"] and set(rmse["scores"]) == {"random_init", "pretrained", "act", "raw_state"}
    assert all(0 < v < 1 for arm in rmse["scores"].values() for v in arm)
    assert len(out["claims"]) == 2 and all(isinstance(c["holds"], bool) for c in out["claims"])


def test_act_jepa_pixels_fidelity_smoke():
    """The pixels setting (a 32-px top view + the agent's proprioception; the probe's target the full state), one
    seed, 20 steps: its own result name, the proprioception-only probe beside the full-state one."""
    out = run_script("benchmarks/fidelity/act_jepa.py", "--setting", "pixels", "--quick", "--fresh")
    assert out["name"] == "act_jepa_push_pixels_quick" and out["seeds"] == [0]
    assert out["config"]["setting"] == "pixels" and out["config"]["image_size"] == 32 and "top view" in out["setting"]
    probes = {p["name"]: p for p in out["probes"]}
    assert set(probes) == {"success_rate", "probe_rmse_5"}
    assert all(0 <= v <= 100 for arm in probes["success_rate"]["scores"].values() for v in arm)
    rmse = probes["probe_rmse_5"]["scores"]
    assert set(rmse) == {"random_init", "pretrained", "act", "raw_state", "raw_proprio"}
    assert all(0 < v < 1 for arm in rmse.values() for v in arm)
    assert rmse["raw_state"][0] < rmse["raw_proprio"][0]  # the block and the goal are not in the proprioception
    assert len(out["claims"]) == 2 and all(isinstance(c["holds"], bool) for c in out["claims"])


def test_td_jepa_fidelity_smoke():
    """TD-JEPA, FB, per-task TD3 and the random policy on walker, one seed, 50 steps, and the linear-MDP claim at
    1500 steps: both results in the schema, written to the benchmark's cache."""
    walker, linear = run_script("benchmarks/fidelity/td_jepa.py", "--quick", "--fresh")
    assert walker["name"] == "td_jepa_walker_quick" and walker["seeds"] == [0]
    assert [p["name"] for p in walker["probes"]] == ["stand", "walk", "run"]
    for probe in walker["probes"]:
        assert set(probe["scores"]) == {"random_init", "pretrained", "fb", "td3"}
        assert all(0 <= v[0] <= 50 for v in probe["scores"].values())  # one episode of 50 steps, rewards in [0, 1]
    assert len(walker["claims"]) == 9 and all(isinstance(c["holds"], bool) for c in walker["claims"])
    assert set(walker["monitors"]) == {"pretrained_s0", "fb_s0"}
    coverage = walker["config"]["data_coverage"]   # what the training data show of each task's reward
    assert set(coverage) == {"stand", "walk", "run"}
    assert all(0 <= c["share_above_half"] <= 1 and 0 <= c["mean_reward"] <= 1 for c in coverage.values())
    assert coverage["stand"]["mean_reward"] > coverage["run"]["mean_reward"] > 0   # lying down is not running
    assert linear["name"] == "td_jepa_linear_quick" and linear["probes"] == []
    assert len(linear["claims"]) == 2 and all(isinstance(c["holds"], bool) for c in linear["claims"])
    assert linear["claims"][0]["value"] < 0.2  # 1500 steps: ~0.04 (full: 1e-5)


def test_ui_jepa_fidelity_smoke(tmp_path):
    """UI-JEPA on the interact recordings, one seed, one epoch: the result in the schema, every network's category
    probe beside the data-alone floors, the intent decoders' scores, the pipeline's latency and size."""
    out = run_script("benchmarks/fidelity/ui_jepa.py", "--quick", "--out", str(tmp_path / "out"),
                     "--cache-dir", str(tmp_path / "cache"))
    assert out["name"] == "ui_jepa_interact_quick" and out["seeds"] == [0]
    (run_dir,) = (tmp_path / "out").iterdir()  # one folder per setting
    for variant in ("spatial_temporal", "spatial"):
        for kind in ("encoder", "context"):
            assert (run_dir / f"{kind}_{variant}_s0.safetensors").is_file()
    probes = {p["name"]: p["scores"] for p in out["probes"]}
    for split in ("seen", "few_shot", "held_out_cv"):
        assert set(probes[f"category_{split}"]) == {"random_init", "pretrained", "spatial", "context_encoder",
                                                    "colour_pixels", "one_frame_pixels", "all_frames_pixels"}
        assert all(0 <= v <= 100 for arm in probes[f"category_{split}"].values() for v in arm)
    for split in ("seen", "few_shot", "zero_shot"):
        scores = probes[f"intent_similarity_{split}"]
        assert set(scores) == {"random_init", "pretrained", "spatial"}
        assert all(0.0 <= v <= 1.0 for arm in scores.values() for v in arm)
    pipeline = out["config"]["pipeline"]
    assert pipeline["latency_ms_per_recording"][0] > 0 and pipeline["parameters"]["encoder"] > 0
    assert len(out["claims"]) == 6 and all(isinstance(c["holds"], bool) for c in out["claims"])


def test_vjepa_fidelity_smoke():
    """V-JEPA on moving objects, two seeds, 10 steps of a 1-block ViT: the result in the schema, with the raw-pixel
    floors beside the linear probes (the smoke writes it to its cache, never over benchmarks/results)."""
    out = run_script("benchmarks/fidelity/vjepa.py", "--quick", "--fresh")
    assert out["name"] == "vjepa_objects_quick" and out["seeds"] == [0, 1]
    probes = {p["name"]: p for p in out["probes"]}
    assert set(probes) == {"shape_attentive", "motion_attentive", "shape_linear", "motion_linear", "video_share",
                           "local_share"}
    for probe in probes.values():
        assert {"random_init", "pretrained", "context_encoder"} <= set(probe["scores"])
        assert all(0 <= v <= 100 for arm in probe["scores"].values() for v in arm)
    for arm in ("random_init", "pretrained"):  # shares of the token variance: fractions below 1 together
        video, local = probes["video_share"]["scores"][arm][0], probes["local_share"]["scores"][arm][0]
        assert 0 < video < 1 and 0 < local < 1 and video + local <= 1
    assert {"clip_pixels", "one_frame_pixels"} <= set(probes["motion_linear"]["scores"])
    assert len(out["claims"]) == 4 and all(isinstance(c["holds"], bool) for c in out["claims"])
    assert out["monitors"]["vjepa_s0"]["train/target_std"] and out["monitors"]["vjepa_s0"]["train/target_sample_share"]


def test_t_jepa_fidelity_smoke():
    """T-JEPA on wine and credit_data, one seed, 2 epochs, one MLP configuration: one result file per table in the
    schema (written to the cache, never over benchmarks/results), every arm in every head probe, the collapse
    statistics as probes, the trajectories as monitors, the GBDT comparison reported but not judged; with the
    official code's downstream MLP as a third head and its claims."""
    results = run_script("benchmarks/fidelity/t_jepa.py", "--quick", "--fresh", "--reference-head")
    assert [r["name"] for r in results] == ["t_jepa_wine_quick", "t_jepa_credit_data_quick"]
    for result in results:
        d = result["name"].removeprefix("t_jepa_").removesuffix("_quick")
        assert result["variant"] == "T-JEPA" and result["seeds"] == [0] and "2 epochs" in result["setting"]
        probes = {p["name"]: p for p in result["probes"]}
        assert set(probes) == {f"{d}_mlp", f"{d}_linear", f"{d}_mlp_reference", f"{d}_spread", f"{d}_rankme"}
        for kind in ("mlp", "linear", "mlp_reference"):
            probe = probes[f"{d}_{kind}"]
            assert probe["metric"] == "accuracy %" and probe["higher_is_better"]
            assert set(probe["scores"]) == {"random_init", "pretrained", "no_reg", "raw", "gbdt"}
            assert all(25 <= v <= 100 for arm in probe["scores"].values() for v in arm)  # 2-3 classes
        for stat in ("spread", "rankme"):
            assert set(probes[f"{d}_{stat}"]["scores"]) == {"random_init", "pretrained", "no_reg"}
        assert all(0 < v <= 1 for arm in probes[f"{d}_spread"]["scores"].values() for v in arm)
        assert all(v > 1 for arm in probes[f"{d}_rankme"]["scores"].values() for v in arm)
        claims = result["claims"]
        assert len(claims) == 7 and all(isinstance(c["holds"], bool) for c in claims[:6])
        assert sum("official code's downstream MLP" in c["statement"] for c in claims) == 2
        assert claims[6]["holds"] is None and "gradient-boosted" in claims[6]["statement"]
        curves = result["monitors"][f"tjepa_{d}_s0"]
        assert set(curves) == {"spread", "rankme", "loss"} and set(result["monitors"][f"tjepa_noreg_{d}_s0"])
        assert curves["spread"][0][0] == 0 and len(curves["spread"]) >= 3
        # the random-init arm is the recipe's model before fit: the pretraining's first probe
        assert curves["spread"][0][1] == probes[f"{d}_spread"]["scores"]["random_init"][0]


def test_image_jepa_reports_the_dmt_ablation_beside_the_paper_head(tmp_path, monkeypatch):
    """When every seed's neighbour-query run is cached, the DMT-JEPA result gains the arm `neighbour_query`, two
    claims marked "ablation" (the paper-head verdicts unchanged) and the monitors' ranges in its notes; with one
    seed missing it gains nothing."""
    bench = load_benchmark("benchmarks/fidelity/image_jepa.py", "image_jepa")
    monkeypatch.setattr(bench, "CACHE", tmp_path)
    args = argparse.Namespace(steps=100, max_patches=10, quick=True, overrides=[], seeds=[0, 1])

    def fake(method: str, seed: int, offset: float, share: float) -> dict:
        scores = {p: offset + seed + (0.1 if p.startswith("patch") else 10.0) for p in bench.PROBES}
        return {"method": method, "seed": seed, "steps": 100, "ema_init_share": 0.0,
                "curves": {"train/target_sample_share": [[5, 0.0], [50, share], [100, share + 0.01]]},
                "pretrained": scores, "context_encoder": scores, "random_init": {p: 0.0 for p in bench.PROBES}}

    runs = [fake(m, s, o, sh) for m, o, sh in (("ijepa", 1.0, 0.5), ("dmt_jepa", 0.0, 0.95)) for s in (0, 1)]
    ablation_args = argparse.Namespace(**{**vars(args), "overrides": bench.ABLATION})
    bench.cache_path("dmt_jepa", 0, ablation_args).write_text(json.dumps(fake("dmt_jepa", 0, 5.0, 0.6)))
    _, dmt = bench.write_results(runs, args, [], 1.0)
    assert "neighbour_query" not in json.loads(dmt.read_text())["probes"][0]["scores"]  # seed 1 missing
    bench.cache_path("dmt_jepa", 1, ablation_args).write_text(json.dumps(fake("dmt_jepa", 1, 5.0, 0.6)))
    _, dmt = bench.write_results(runs, args, [], 1.0)
    result = json.loads(dmt.read_text())
    probes = {p["name"]: p["scores"] for p in result["probes"]}
    assert probes["patch_knn"]["neighbour_query"] == [5.1, 6.1] and probes["patch_knn"]["pretrained"] == [0.1, 1.1]
    ablations = [c for c in result["claims"] if c["statement"].startswith("ablation")]
    assert len(result["claims"]) == 8 and len(ablations) == 2 and all(c["holds"] for c in ablations)
    assert not any(c["holds"] for c in result["claims"] if "beats I-JEPA" in c["statement"]
                   and not c["statement"].startswith("ablation"))
    assert "official query 0.95-0.96, neighbour query 0.60-0.61, I-JEPA 0.50-0.51" in " ".join(result["notes"].split())
    assert {"neighbour_query_s0", "neighbour_query_s1"} <= set(result["monitors"])
