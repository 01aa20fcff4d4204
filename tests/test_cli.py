"""The CLI end to end: recipes parse and build, bad configs fail early, fit/validate through the console
script, exact resume from last.ckpt, and a 2-process CPU DDP fit."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import yaml
from conftest import BIN, ROOT, tiny_args
from lightning.pytorch import Callback

from jepa_lightning.cli import JEPACLI
from jepa_lightning.rl.episodes import write_episode

RECIPES = sorted(p for p in (ROOT / "recipes").rglob("*.yaml") if "slurm" not in p.parts)


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(ROOT / "recipes")))
def test_every_recipe_parses_and_builds_on_meta(recipe, tmp_path, monkeypatch):
    """No recipe can rot: its config validates and its model builds (on the meta device: no memory)."""
    monkeypatch.chdir(tmp_path)
    for split in ("train", "val"):  # a stand-in ImageFolder root for recipes that need a dataset path
        (tmp_path / "data" / split / "class0").mkdir(parents=True)
    args = ["--config", str(recipe), "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.num_nodes=1",
            "--trainer.strategy=auto", "--trainer.precision=32-true"]
    text = recipe.read_text()
    if "ImageFolderDataModule" in text or "source: folder" in text:
        args.append(f"--data.init_args.root={tmp_path / 'data'}")
    if any(m in text for m in ("AttentiveProbe", "IntentDecoder", "BEVDetector")):  # encoder from another run
        args.append("--model.init_args.checkpoint=null")
    if "methods.SALT\n" in text:  # so does a SALT student's teacher
        args.append("--model.init_args.teacher_checkpoint=null")
    if "VideoDataModule" in text and "MovingDigits" not in text:  # stand-in list files (V-JEPA format)
        data = yaml.safe_load(text)["data"]["init_args"]
        for split in ("train", "val", "test"):
            if data.get(split):
                (tmp_path / data[split]).parent.mkdir(parents=True, exist_ok=True)
                (tmp_path / data[split]).write_text("clip.mp4 0\n")
    if "TabularDataModule" in text and "path: null" in text:  # a stand-in table for a user-CSV recipe
        rows = ["f0,f1,f2,colour,class"] + [f"{i % 5},{i % 3},{i * 7 % 11},{'rgb'[i % 3]},{i % 2}" for i in range(40)]
        (tmp_path / "table.csv").write_text("\n".join(rows) + "\n")
        args += [f"--data.init_args.path={tmp_path / 'table.csv'}", "--data.init_args.target=class"]
    if "OfflineRLDataModule" in text and "embedded: null" in text:  # stand-in episodes for a user-data recipe
        config = yaml.safe_load(text)
        encoder = config["model"]["init_args"]["phi_encoder"]["init_args"]
        for i in range(2):
            write_episode(str(tmp_path / config["data"]["init_args"]["path"] / f"episode_{i}.npz"),
                          observation=np.zeros((5, encoder["in_dim"])),
                          action=np.zeros((4, config["model"]["init_args"]["action_dim"])))
        args.append("--data.init_args.batch_size=2")
    if ("UIRecordingsDataModule" in text or "LidarDataModule" in text) and "root: " in text \
            and "root: null" not in text:  # a stand-in dataset folder
        (tmp_path / yaml.safe_load(text)["data"]["init_args"]["root"]).mkdir(parents=True, exist_ok=True)
    if "IntentDecoder" in text and "lm: null" not in text:  # a downloaded LM (tests/test_ui_decoder.py stands one in)
        args.append("--model.init_args.lm=null")
    if "init_encoder: " in text:  # JEPA-tuning starts from another run's encoder
        args.append("--model.init_args.init_encoder=null")
    with torch.device("meta"):
        cli = JEPACLI(args=args, run=False)
    n_params = sum(p.numel() for p in cli.model.parameters())
    assert n_params > 0
    if "vith14" in recipe.name:  # ViT-H/14 encoder ~630M parameters (+ same-size EMA teacher + predictor)
        assert 600e6 < sum(p.numel() for p in cli.model.encoder.parameters()) < 660e6
    if "vith16" in recipe.name:  # ViT-H/16 over 16-frame tubelets at 384 px: ~632M parameters
        assert 620e6 < sum(p.numel() for p in cli.model.encoder.parameters()) < 645e6
    if "vitl16" in recipe.name:  # ViT-L/16 over 16-frame tubelets: ~304M parameters
        assert 300e6 < sum(p.numel() for p in cli.model.encoder.parameters()) < 310e6


def test_console_script_fit_then_validate_reports_probe(tmp_path):
    exe = str(BIN / "jepa-lightning")
    fit = subprocess.run([exe, *tiny_args(tmp_path, "--trainer.max_epochs=2", "--trainer.limit_train_batches=6",
                                          "--trainer.limit_val_batches=2")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    # quiet output: no third-party advertisement, no misleading zero-FLOPs row in the model summary
    assert "litlogger" not in fit.stdout + fit.stderr and "Total FLOPs" not in fit.stdout + fit.stderr
    ckpt = tmp_path / "ckpt" / "last.ckpt"
    assert ckpt.exists()
    logs = list((tmp_path / "runs").rglob("events.out.tfevents.*"))
    configs = list((tmp_path / "runs").rglob("config.yaml"))
    assert logs and configs  # TensorBoard curves and the resolved config are saved with the run
    # checkpoints load with weights_only=True
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert any(k.startswith("teacher.") for k in state["state_dict"])
    val = subprocess.run([sys.executable, "-m", "jepa_lightning",
                          *tiny_args(tmp_path, f"--ckpt_path={ckpt}", "--trainer.limit_val_batches=2",
                                     subcommand="validate")],
                         capture_output=True, text=True, cwd=tmp_path)
    assert val.returncode == 0, val.stderr[-3000:]
    assert "val/probe_acc" in val.stdout


def _weights(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class StopAfterEpochs(Callback):
    """Interrupts a run (as a crash or a kill would) after some epochs, once their checkpoint is written."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch + 1 >= self.epochs:
            trainer.should_stop = True


def test_resume_from_last_ckpt_equals_uninterrupted_run(tmp_path):
    common = ["--trainer.max_epochs=3", "--trainer.limit_train_batches=4", "--trainer.limit_val_batches=2"]
    full = JEPACLI(args=tiny_args(tmp_path / "a", *common))
    stopped = JEPACLI(args=tiny_args(tmp_path / "b", *common)[1:], run=False)
    stopped.trainer.callbacks.append(StopAfterEpochs(2))
    stopped.trainer.fit(stopped.model, datamodule=stopped.datamodule)
    assert stopped.trainer.global_step == 8
    # rerunning the same command resumes from <checkpoint.dirpath>/last.ckpt by itself
    resumed = JEPACLI(args=tiny_args(tmp_path / "b", *common))
    assert full.trainer.global_step == resumed.trainer.global_step == 12
    a, b = _weights(full.model), _weights(resumed.model)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"
    # and training did move the weights
    fresh = JEPACLI(args=tiny_args(tmp_path / "c", *common, "--trainer.max_steps=0"))
    assert not torch.equal(_weights(fresh.model)["encoder.transformer.blocks.0.attn.qkv.weight"],
                           a["encoder.transformer.blocks.0.attn.qkv.weight"])


DDP_SCRIPT = textwrap.dedent('''
    import sys, torch
    from lightning.pytorch import Callback
    from jepa_lightning.cli import JEPACLI

    class Record(Callback):
        def __init__(self):
            self.masks = []
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            self.masks.append(batch["masks"].context.clone())
        def on_train_end(self, trainer, module):
            torch.save({"teacher": module.teacher.state_dict(), "masks": self.masks,
                        "world": trainer.world_size},
                       f"{sys.argv[1]}/rank{trainer.global_rank}.pt")

    out = sys.argv[1]
    cli = JEPACLI(args=sys.argv[2:], run=False)
    cli.trainer.callbacks.append(Record())
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
''')


def test_two_process_cpu_ddp_keeps_teachers_identical_and_masks_distinct(tmp_path):
    script = tmp_path / "ddp_fit.py"
    script.write_text(DDP_SCRIPT)
    args = tiny_args(tmp_path, "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.max_epochs=1",
                     "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=0")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # 2 processes on 2 cores: one thread each
    proc = subprocess.run([sys.executable, str(script), str(tmp_path), *args[1:]], capture_output=True,
                          text=True, cwd=ROOT, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    for k in r0["teacher"]:
        assert torch.equal(r0["teacher"][k], r1["teacher"][k]), f"teacher {k} differs across ranks"
    assert len(r0["masks"]) == len(r1["masks"]) == 3
    assert any(not torch.equal(a, b) for a, b in zip(r0["masks"], r1["masks"]))


def test_attentive_probe_recipe_trains_on_a_saved_encoder(tmp_path):
    pre = JEPACLI(args=tiny_args(tmp_path / "pre", "--trainer.max_epochs=1", "--trainer.limit_train_batches=4",
                                 "--trainer.limit_val_batches=0"))
    ckpt = tmp_path / "pre" / "ckpt" / "last.ckpt"
    teacher = {k: v.clone() for k, v in pre.model.teacher.module.state_dict().items()}
    enc = "--model.init_args.encoder.init_args."
    probe = JEPACLI(args=[
        "fit", "--config", str(ROOT / "recipes" / "eval" / "attentive_probe_ijepa_tiny.yaml"),
        f"{enc}img_size=16", f"{enc}embed_dim=32", f"{enc}depth=2", "--data.init_args.image_size=16",
        f"--model.init_args.checkpoint={ckpt}", "--trainer.max_epochs=1", "--trainer.limit_train_batches=5",
        "--trainer.limit_val_batches=3", "--trainer.enable_progress_bar=false",
        f"--run_dir={tmp_path / 'runs'}", f"--checkpoint.dirpath={tmp_path / 'probe'}"])
    for k, v in probe.model.encoder.state_dict().items():  # the frozen encoder is the checkpoint's teacher
        assert torch.equal(v, teacher[k]), k
    assert "val/acc" in probe.trainer.callback_metrics
    saved = torch.load(tmp_path / "probe" / "last.ckpt", weights_only=True)
    assert not any(k.startswith("encoder.") for k in saved["state_dict"])
