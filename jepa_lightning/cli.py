"""`jepa-lightning fit|validate|test|predict --config recipes/<variant>/<name>.yaml`
`jepa-lightning slurm --config recipes/<variant>/<name>.yaml --nodes N --gpus-per-node G [--submit]`
`jepa-lightning collect --domain walker --episodes 100 --policy noisy --out data/walker [--pixels]`

A LightningCLI whose model and data are any LightningModule / LightningDataModule given by `class_path`,
with the defaults a JEPA run wants: TensorBoard logs and checkpoints (keeping `last.ckpt`) under `runs/`,
a learning-rate monitor, cumulative training FLOPs, save-and-requeue on SIGUSR1, seeding, the resolved config saved next to the logs,
and automatic resume of an interrupted `fit`. `slurm` renders/submits an sbatch script (`launch/slurm.py`);
`collect` gathers reward-free dm_control episodes for offline RL (`rl/collect.py`).
"""

from __future__ import annotations

import atexit
import logging
import sys
import warnings

from jsonargparse import lazy_instance
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.rank_zero import rank_zero_info

from datamodules.common import SkippedReport
from jepa_lightning.checkpointing import AtomicCheckpointIO, last_checkpoint_path
from jepa_lightning.distributed import close_process_group
from jepa_lightning.eval.flops import ParameterSummary, TrainingFLOPs
from jepa_lightning.launch.requeue import RequeueOnSignal

# Expected by design, not problems: the method draws masks in `on_after_batch_transfer` while DataModules use
# `on_before_batch_transfer`; teachers are deliberately kept in eval mode; a run resumed mid-epoch continues
# its epoch exactly because the training sampler skips what the loop's counters say was consumed
# (datamodules.common.EpochSampler), which Lightning cannot see.
EXPECTED_WARNINGS = (r".*overridden `on_after_batch_transfer` in `LightningModule`.*",
                     r"Found \d+ module\(s\) in eval mode at the start of training.*",
                     r"You're resuming from a checkpoint that ended before the epoch ended.*")

atexit.register(close_process_group)  # every process that runs a JEPACLI, scripts included


class _NoAdvertisement(logging.Filter):
    """Drops Lightning's "try installing litlogger" tip, printed by every run that logs elsewhere (an advertisement,
    not information); every other record of Lightning's rank-zero loggers passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage()


for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(_NoAdvertisement())


def trainer_defaults() -> dict:
    # `callbacks` given here are always present (not replaced by a recipe's list); the logger is a default.
    return {
        "logger": lazy_instance(TensorBoardLogger, save_dir="runs", name="default"),
        "callbacks": [LearningRateMonitor(logging_interval="step"), RequeueOnSignal(), SkippedReport(),
                      ParameterSummary()],
        "log_every_n_steps": 10,
    }


class JEPACLI(LightningCLI):
    def __init__(self, args=None, run: bool = True, **kwargs) -> None:
        for pattern in EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        kwargs.setdefault("trainer_defaults", trainer_defaults())
        super().__init__(
            model_class=LightningModule, datamodule_class=LightningDataModule,
            subclass_mode_model=True, subclass_mode_data=True,
            seed_everything_default=0,
            save_config_kwargs={"overwrite": True},  # a resumed run rewrites the same config
            auto_configure_optimizers=False,
            args=args, run=run, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # Always present, configurable as `--checkpoint.every_n_epochs ...` etc.
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.add_lightning_class_args(TrainingFLOPs, "flops")  # `--flops.measure_steps=null`: count every step
        parser.add_argument("--resume", type=bool, default=True,
                            help="fit: continue from <checkpoint.dirpath>/last.ckpt when it exists and no "
                                 "--ckpt_path is given (rerunning an interrupted command resumes it)")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.save_top_k": 0,
                             "checkpoint.enable_version_counter": False})

    def instantiate_trainer(self, **kwargs):
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # not a user's own CheckpointIO
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    def before_fit(self) -> None:
        config = self.config_init["fit"]
        cb = self.trainer.checkpoint_callback
        if config.get("resume") and config.get("ckpt_path") is None and cb is not None and cb.dirpath:
            last = last_checkpoint_path(self.trainer)
            if last.is_file() or last.is_dir():  # a directory: sharded (ModelParallelStrategy, FSDP2)
                rank_zero_info(f"Resuming from {last} (pass --resume=false to start over)")
                config["ckpt_path"] = str(last)


def main(args: list[str] | None = None) -> None:
    argv = sys.argv[1:] if args is None else list(args)
    if argv[:1] == ["slurm"]:
        from jepa_lightning.launch.slurm import main as slurm_main

        raise SystemExit(slurm_main(argv[1:]))
    if argv[:1] == ["collect"]:
        from jepa_lightning.rl.collect import main as collect_main

        raise SystemExit(collect_main(argv[1:]))
    JEPACLI(args=args)
    close_process_group(barrier=True)


if __name__ == "__main__":
    main()
