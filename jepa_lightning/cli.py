"""`jepa-lightning fit|validate|test|predict --config recipes/<variant>/<name>.yaml`
`jepa-lightning slurm --config recipes/<variant>/<name>.yaml --nodes N --gpus-per-node G [--submit]`
`jepa-lightning collect --domain walker --episodes 100 --policy noisy --out data/walker [--pixels]`

`jepa-lightning recipes`: the recipes, what each needs and how long it takes.

A LightningCLI whose model and data are any LightningModule / LightningDataModule given by `class_path`,
with the defaults a JEPA run wants: one folder per run (`runs/<name>/version_N` or `--run_dir`: TensorBoard
logs, the resolved config, `checkpoints/last.ckpt`; `jepa_lightning/runs.py`), automatic resume of an interrupted
`fit` of the same run only, sizes linked from the data to the model (`links.py`), a learning-rate monitor,
cumulative training FLOPs, save-and-requeue on SIGUSR1, seeding, and errors a user caused printed as a short
message with exit status 2 (`errors.py`; `--debug` for the traceback). `slurm` renders/submits an sbatch script (`launch/slurm.py`);
`collect` gathers reward-free dm_control episodes for offline RL (`rl/collect.py`).
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Literal

from jsonargparse import ArgumentError, Namespace
from lightning.pytorch import LightningDataModule, LightningModule
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.rank_zero import rank_zero_info, rank_zero_warn

from jepa_lightning import runs
from jepa_lightning.checkpointing import AtomicCheckpointIO, last_checkpoint_path
from jepa_lightning.distributed import close_process_group
from jepa_lightning.errors import DEBUG_ENV, EXIT_USAGE, UserError, condense, config_errors
from jepa_lightning.eval.flops import ParameterSummary, TrainingFLOPs
from jepa_lightning.launch.requeue import RequeueOnSignal
from jepa_lightning.links import link_sizes
from jepa_lightning.skipped import SkippedReport

# Expected by design, not problems: the method draws masks in `on_after_batch_transfer` while DataModules use
# `on_before_batch_transfer`; teachers are deliberately kept in eval mode; a run resumed mid-epoch continues
# its epoch exactly because the training sampler skips what the loop's counters say was consumed
# (datamodules.common.EpochSampler), which Lightning cannot see.
EXPECTED_WARNINGS = (r".*overridden `on_after_batch_transfer` in `LightningModule`.*",
                     r"Found \d+ module\(s\) in eval mode at the start of training.*",
                     r"You're resuming from a checkpoint that ended before the epoch ended.*")

atexit.register(close_process_group)  # every process that runs a JEPACLI, scripts included


# Lightning's rank-zero messages that are not information for a user of this CLI: the "try installing litlogger"
# advertisement, and the note that our ParameterSummary replaces Lightning's ModelSummary (by design).
QUIET_MESSAGES = ("litlogger", "Skipping setting a default `ModelSummary` callback")
# Deprecation noise from inside Lightning (its own code calling torch's deprecated API), filtered by message and
# module only: our warnings and everyone else's stay.
DEPENDENCY_WARNINGS = ((r"`isinstance\(treespec, LeafSpec\)` is deprecated", r"lightning\.pytorch\.utilities\._pytree"),)


class _Quiet(logging.Filter):
    """Drops the :data:`QUIET_MESSAGES` records; every other record of Lightning's rank-zero loggers passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in QUIET_MESSAGES)


for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
    logging.getLogger(_name).addFilter(_Quiet())


def trainer_defaults() -> dict:
    # `callbacks` given here are always present (not replaced by a recipe's list). Logs go to the run directory
    # (a TensorBoardLogger unless `--trainer.logger` names another or `false`).
    return {
        "callbacks": [LearningRateMonitor(logging_interval="step"), RequeueOnSignal(), SkippedReport(),
                      ParameterSummary()],
        "log_every_n_steps": 10,
        "default_root_dir": "runs",
    }

SUBCOMMANDS = ("fit", "validate", "test", "predict")


class JEPACLI(LightningCLI):
    """The project's LightningCLI (see the module docstring). Used in-process (scripts, tests) it raises a
    :class:`UserError` for a bad configuration; :func:`main` prints it as a message."""

    def __init__(self, args=None, run: bool = True, **kwargs) -> None:
        for pattern in EXPECTED_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        for pattern, module in DEPENDENCY_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern, module=module)
        kwargs.setdefault("trainer_defaults", trainer_defaults())
        no_exit = {"exit_on_error": False}  # parse errors raise, and become a short UserError (parse_arguments)
        kwargs.setdefault("parser_kwargs", {**no_exit, **{c: dict(no_exit) for c in SUBCOMMANDS}})
        self.run_dir: Path | None = None
        self._versioned = False  # the run directory is <root>/<name>/version_N (not an explicit --run_dir)
        self._resumed_step: int | None = None
        self._run_config: dict | None = None  # the settings that define this run (runs.run_config)
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
        parser.add_argument("--name", type=str | None, default=None,
                            help="the run's name: its folder is <trainer.default_root_dir>/<name>/version_N "
                                 "(default: the model class's name, lower-cased)")
        parser.add_argument("--run_dir", type=str | None, default=None,
                            help="the run's folder (logs, config.yaml, checkpoints/), instead of "
                                 "<trainer.default_root_dir>/<name>/version_N")
        parser.add_argument("--resume", type=bool | Literal["force"], default=True,
                            help="fit: continue the newest run of this name (or --run_dir) from its "
                                 "checkpoints/last.ckpt when its config is this one; false: start a new run; "
                                 "force: continue even if settings differ")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.save_top_k": 0,
                             "checkpoint.enable_version_counter": False})

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        argv = None if isinstance(args, (dict, Namespace)) else list(sys.argv[1:] if args is None else args)
        show = argv is not None and "--print_config" in argv  # printed after the links below are applied
        saved = sys.argv[:]
        if show:
            argv.remove("--print_config")
            if args is None:
                sys.argv = [sys.argv[0], *argv]
            else:
                args = argv
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            raise UserError(condense(str(err))) from err
        finally:
            sys.argv = saved
        if show:
            subcommand = self.config.get("subcommand")
            config = self.config[subcommand] if subcommand else self.config
            link_sizes(config)
            target = self._subcommand_parsers[subcommand] if subcommand else parser
            print(target.dump(config, skip_none=False), end="")
            raise SystemExit(0)

    @property
    def _config(self) -> Namespace:
        """This subcommand's config (the whole config when run=False)."""
        return self.config[self.subcommand] if self.subcommand else self.config

    def before_instantiate_classes(self) -> None:
        config = self._config
        with config_errors():  # (a data class may be built to read its sizes)
            notes = link_sizes(config)
        for note in notes:
            rank_zero_warn(note)
        self.run_dir = self._place_run(config)
        self._run_config = runs.run_config(config)

    def _place_run(self, config: Namespace) -> Path:
        """Points logs, config and checkpoints at the run directory (:mod:`jepa_lightning.runs`)."""
        trainer = config.trainer
        name = config.get("name") or config.model.class_path.rpartition(".")[2].lower()
        fit = self.subcommand == "fit"
        run_dir = runs.resolve_run_dir(config.get("run_dir"), trainer.get("default_root_dir") or "runs", name,
                                       resume=fit and config.get("resume") is not False
                                       and config.get("ckpt_path") is None)
        self._versioned = not config.get("run_dir")
        if os.environ.get("LOCAL_RANK", "0") == "0":
            os.environ[runs.RUN_DIR_ENV] = str(run_dir)  # the ranks this process launches (DDP) join it
        trainer.default_root_dir = str(run_dir)
        logger = trainer.get("logger")
        if logger is None or logger is True or isinstance(logger, TensorBoardLogger) or (
                isinstance(logger, Namespace) and logger.get("class_path", "").endswith(".TensorBoardLogger")):
            trainer.logger = Namespace(class_path="lightning.pytorch.loggers.TensorBoardLogger",
                                       init_args=Namespace(save_dir=str(run_dir), name="", version=""))
        if config.checkpoint.get("dirpath") is None:
            config.checkpoint.dirpath = str(run_dir / "checkpoints")
        return run_dir

    def instantiate_classes(self) -> None:
        with config_errors():
            super().instantiate_classes()

    def instantiate_trainer(self, **kwargs):
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # not a user's own CheckpointIO
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        trainer.callbacks.append(runs.RunConfig(self._run_config))
        return trainer

    def before_fit(self) -> None:
        self._resume(self.config["fit"].get("resume"), self.config_init["fit"])
        if self.run_dir is not None and self.trainer.is_global_zero:
            if self._versioned:
                runs.link_latest(self.run_dir)
            rank_zero_info(f"Run folder: {self.run_dir}")

    def _resume(self, resume: bool | str, init: Namespace) -> None:
        """Continues `<checkpoint.dirpath>/last.ckpt` if it exists and belongs to this run (same settings)."""
        last = last_checkpoint_path(self.trainer)
        if init.get("ckpt_path") is not None or not runs.has_checkpoint(last):
            return
        if resume is False:
            raise UserError(f"{last} exists: this run folder already holds a run; pass another --run_dir "
                            "(or leave it out for a new version_N), or remove it, to start over")
        meta = runs.check_same_run(last, self._run_config, force=resume == "force")
        if meta["run_config"] is None:
            rank_zero_warn(f"{last} stores no run config (an older checkpoint): resuming it unchecked")
        rank_zero_info(f"Resuming from {last} (step {meta['global_step']}; --resume=false starts a new run)")
        init.ckpt_path = str(last)
        self._resumed_step = int(meta["global_step"])

    def after_fit(self) -> None:
        trainer = self.trainer
        if self._resumed_step is not None and trainer.global_step == self._resumed_step and not trainer.interrupted:
            raise UserError(f"nothing to train: checkpoint at step {self._resumed_step}, max_steps "
                            f"{trainer.max_steps}, max_epochs {trainer.max_epochs} (raise them to continue, or "
                            "pass --resume=false to start a new run)")


def main(args: list[str] | None = None) -> None:
    argv = sys.argv[1:] if args is None else list(args)
    if argv[:1] == ["slurm"]:
        from jepa_lightning.launch.slurm import main as slurm_main

        raise SystemExit(slurm_main(argv[1:]))
    if argv[:1] == ["collect"]:
        from jepa_lightning.rl.collect import main as collect_main

        raise SystemExit(collect_main(argv[1:]))
    if argv[:1] == ["recipes"]:
        from jepa_lightning.recipes import main as recipes_main

        raise SystemExit(recipes_main(argv[1:]))
    saved = sys.argv[:], os.environ.get(DEBUG_ENV)
    if "--debug" in argv:  # the environment carries it to the ranks DDP launches (they re-run sys.argv)
        os.environ[DEBUG_ENV] = "1"
        argv = [a for a in argv if a != "--debug"]
        if args is None:
            sys.argv = [sys.argv[0], *argv]
    debug = os.environ.get(DEBUG_ENV, "0") not in ("", "0")
    try:
        JEPACLI(args=args if args is None else argv)
    except UserError as err:
        if debug:
            raise
        print(f"jepa-lightning: error: {err}\n(--debug shows the traceback)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    finally:  # as it was (main is also called in-process)
        sys.argv = saved[0]
        if saved[1] is None:
            os.environ.pop(DEBUG_ENV, None)
        else:
            os.environ[DEBUG_ENV] = saved[1]
    close_process_group(barrier=True)


if __name__ == "__main__":
    main()
