"""The CLI a newcomer meets: one folder per run, resume only the same run, user errors as short messages with
exit status 2, sizes linked from the data to the model, the recipes listing."""

import pytest
import torch
import yaml
from conftest import TINY, TINY_OVERRIDES

from jepa_lightning.cli import JEPACLI, main
from jepa_lightning.errors import UserError, condense
from jepa_lightning.runs import config_diff, run_config

QUICK = [*TINY_OVERRIDES, "--trainer.limit_val_batches=0", "--data.init_args.batch_size=16"]


def fit(capsys, *extra: str) -> tuple[int, str]:
    """`jepa-lightning fit` of the tiny recipe in the current folder; (exit status, stderr)."""
    capsys.readouterr()
    try:
        main(["fit", "--config", TINY, *QUICK, *extra])
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def test_runs_of_one_recipe_get_their_own_folders_and_resume_only_the_same_run(tmp_path, monkeypatch, capsys,
                                                                                 one_thread):
    monkeypatch.chdir(tmp_path)
    code, _ = fit(capsys, "--trainer.max_steps=2")
    first = tmp_path / "runs" / "ijepa_tiny" / "version_0"
    assert code == 0 and (first / "checkpoints" / "last.ckpt").is_file() and (first / "config.yaml").is_file()
    assert list(first.glob("events.out.tfevents.*"))  # logs, config and checkpoints in one run folder
    assert (tmp_path / "runs" / "ijepa_tiny" / "latest").resolve() == first.resolve()
    stamp = (first / "checkpoints" / "last.ckpt").stat().st_mtime_ns

    # other data (or model): the run is not continued, the error names the key and both values
    code, err = fit(capsys, "--trainer.max_steps=4", "--data.init_args.split_seed=1", "--model.init_args.lr=0.002")
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) <= 8
    assert "data.init_args.split_seed: 0 (checkpoint) vs 1 (now)" in err and "model.init_args.lr" in err
    assert "--resume=false" in err
    assert (first / "checkpoints" / "last.ckpt").stat().st_mtime_ns == stamp  # nothing trained, nothing written

    # ... a new run of it gets a new folder and its own checkpoint
    code, _ = fit(capsys, "--trainer.max_steps=2", "--data.init_args.split_seed=1", "--resume=false")
    second = tmp_path / "runs" / "ijepa_tiny" / "version_1"
    assert code == 0 and (second / "checkpoints" / "last.ckpt").is_file()
    assert (first / "checkpoints" / "last.ckpt").stat().st_mtime_ns == stamp
    assert (tmp_path / "runs" / "ijepa_tiny" / "latest").resolve() == second.resolve()

    # the same run with a longer schedule continues (max_steps may change on a resume)
    code, err = fit(capsys, "--trainer.max_steps=3", "--data.init_args.split_seed=1")
    assert code == 0, err
    assert torch.load(second / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3
    # ... and once there, there is nothing to train: a non-zero exit that says so
    code, err = fit(capsys, "--trainer.max_steps=3", "--data.init_args.split_seed=1")
    assert code == 2 and "nothing to train: checkpoint at step 3, max_steps 3" in err
    # --resume=force continues a run whose settings differ
    code, err = fit(capsys, "--trainer.max_steps=4", "--data.init_args.split_seed=1", "--model.init_args.lr=0.002",
                    "--resume=force")
    assert code == 0, err
    assert torch.load(second / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 4


def test_explicit_run_dir_holds_everything_and_refuses_to_start_over_in_place(tmp_path, monkeypatch, capsys,
                                                                               one_thread):
    monkeypatch.chdir(tmp_path)
    code, _ = fit(capsys, "--trainer.max_steps=1", f"--run_dir={tmp_path / 'mine'}")
    assert code == 0 and (tmp_path / "mine" / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "mine" / "config.yaml").is_file() and not (tmp_path / "runs").exists()
    code, err = fit(capsys, "--trainer.max_steps=2", f"--run_dir={tmp_path / 'mine'}", "--resume=false")
    assert code == 2 and "already holds a run" in err


@pytest.mark.parametrize("bad,named", [
    ("--data.init_args.root=/nonexistent", "'/nonexistent' does not exist"),
    ("--model.init_args.lrr=0.1", "lrr"),
    ("--model.init_args.lr=fast", "fast"),
    ("--trainer.max_stepz=3", "max_stepz"),
    ("--data.init_args.image_size=30", "data.init_args.image_size=30 is not divisible by"),
])
def test_user_errors_are_short_messages_with_exit_status_2(tmp_path, monkeypatch, capsys, bad, named):
    monkeypatch.chdir(tmp_path)
    extra = ["--data=datamodules.ImageFolderDataModule"] if "root" in bad else []
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", TINY, *extra, bad])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert named in err and "Traceback" not in err and len(err.strip().splitlines()) <= 6, err
    assert not (tmp_path / "runs").exists()  # nothing ran
    # in-process (scripts, tests) the same error is an exception; --debug lets it through with its traceback
    with pytest.raises(UserError, match="lrr"):
        JEPACLI(args=["fit", "--config", TINY, "--model.init_args.lrr=0.1"])
    with pytest.raises(UserError):
        main(["fit", "--config", TINY, "--model.init_args.lrr=0.1", "--debug"])


def test_the_data_sets_the_encoder_size_and_the_predictor_grid(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:  # --print_config shows the linked values
        main(["fit", "--config", TINY, "--data.init_args.image_size=16", "--print_config"])
    printed = yaml.safe_load(capsys.readouterr().out)
    assert exit_.value.code == 0 and printed["data"]["init_args"]["image_size"] == 16
    assert printed["model"]["init_args"]["encoder"]["init_args"]["img_size"] == 16
    assert printed["model"]["init_args"]["predictor"]["init_args"]["grid_size"] == [4, 4]
    for size in (16, 24):
        with torch.device("meta"):
            cli = JEPACLI(args=["--config", TINY, f"--data.init_args.image_size={size}"], run=False)
        assert cli.model.encoder.patch_embed.img_size == (size, size)
        assert tuple(cli.model.predictor.grid_size) == (size // 4, size // 4)
    with pytest.warns(UserWarning, match="img_size=12 replaced by data.init_args.image_size=16"):
        with torch.device("meta"):
            JEPACLI(args=["--config", TINY, "--data.init_args.image_size=16",
                          "--model.init_args.encoder.init_args.img_size=12"], run=False)


def test_config_diff_ignores_what_may_change_on_a_resume():
    base = {"model": {"init_args": {"lr": 1e-3}}, "trainer": {"max_steps": 10, "devices": 1, "precision": "32"},
            "data": {"init_args": {"num_workers": 0, "root": "a"}}, "checkpoint": {"every_n_epochs": 1}}
    moved = {"model": {"init_args": {"lr": 1e-3}}, "trainer": {"max_steps": 99, "devices": 8, "precision": "32"},
             "data": {"init_args": {"num_workers": 8, "root": "a"}}, "checkpoint": {"every_n_epochs": 5}}
    assert config_diff(run_config(base), run_config(moved)) == []
    moved["data"]["init_args"]["root"], moved["trainer"]["precision"] = "b", "bf16-mixed"
    assert config_diff(run_config(base), run_config(moved)) == [("data.init_args.root", "a", "b"),
                                                               ("trainer.precision", "32", "bf16-mixed")]


def test_condense_keeps_the_message_and_drops_jsonargparse_noise():
    message = ("Parser key \"model\":\n  Does not validate against any of the Union subtypes\n  Subtypes: [...]\n"
               "  Errors:\n    - Problem with given class_path 'X':\n        Option 'bogus' is not accepted\n"
               "    - Expected a <class 'NoneType'>\n  Given value type: <class 'NestedArg'>\n  Given value: 3")
    assert condense(message).splitlines() == ["Parser key \"model\":", "    - Problem with given class_path 'X':",
                                              "        Option 'bogus' is not accepted"]


def test_recipes_lists_every_recipe_with_its_data(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["recipes"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    for recipe in ("ijepa/tiny.yaml", "vjepa/k400_vitl16.yaml", "t_jepa/wine_tiny.yaml"):
        assert recipe in out
    line = next(x for x in out.splitlines() if x.startswith("ijepa/in1k_vith14.yaml"))
    assert "ImageFolderDataModule (yours" in line and "GPU cluster" in line
    tiny = next(x for x in out.splitlines() if x.startswith("ijepa/tiny.yaml"))
    assert "DigitsDataModule (embedded)" in tiny and " min" in tiny  # a measured time (benchmarks/recipe_times.json)


def test_recipe_times_benchmark_measures_a_recipe(tmp_path, monkeypatch):
    import sys

    from conftest import ROOT
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    monkeypatch.chdir(tmp_path)
    sys.modules.pop("recipe_times", None)
    import recipe_times

    row = recipe_times.measure(ROOT / "recipes" / "linear_theory" / "mae_tiny.yaml", steps=2, warmup=1)
    assert row["steps"] == 800 and row["step_seconds"] > 0 and row["setup_seconds"] >= 0
    assert row["minutes"] >= row["step_seconds"] * 800 / 60 - 0.01  # (rounded to 2 decimals)
    assert "mfu_percent" not in row  # only when a peak is given (the GPU path)
    row = recipe_times.measure(ROOT / "recipes" / "linear_theory" / "mae_tiny.yaml", steps=2, warmup=1,
                               peak_tflops=1e-3)
    assert row["gflop_per_step"] > 0 and row["tflops"] > 0 and row["mfu_percent"] > 0
