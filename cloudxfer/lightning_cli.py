"""``cloudxfer fit/validate/test/predict``: LightningCLI with profiles, run files and checks.

``cloudxfer fit --config experiments/profiles/quick.yaml --config experiments/methods/target.yaml
--data experiments/data/sen12ms_cloud.yaml --trainer.max_epochs 5`` trains one method. Imported
only by those commands (``cloudxfer.cli`` dispatches lazily), since Lightning takes seconds to
import.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, TextIO

import lightning.pytorch as pl
import torch
from jsonargparse import set_parsing_settings
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import Logger, WandbLogger

from cloudxfer.callbacks import (
    BEST_CHECKPOINT,
    LAST_CHECKPOINT,
    BestCheckpoint,
    PredictionCSVWriter,
    RunFiles,
)
from cloudxfer.checkpoints import CheckpointError, read_metadata, validate_metadata
from cloudxfer.loggers import ResumableCSVLogger, rows_before
from cloudxfer.models.initialise import InitialisationError
from cloudxfer.profile import MethodCard, Profile, WandbOptions, apply_profile
from cloudxfer.runtime import configure_matmul_precision, configure_threads
from datamodules.errors import DataError

__all__ = [
    "CloudxferCLI",
    "ProtocolError",
    "RunFolderError",
    "main",
    "progress_bar",
    "run_lightning",
]


class RunFolderError(RuntimeError):
    """A fit would mix with an earlier fit's files in its run folder."""


class ProtocolError(ValueError):
    """Settings that break the training protocol (early stopping cutting a cosine short)."""


class CloudxferCLI(LightningCLI):
    """LightningCLI with profiles, datamodule->model links, run files and stage checks."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Profile variables, W&B switch, forced callbacks and links from data to model."""
        parser.add_class_arguments(Profile, "profile")
        parser.add_class_arguments(WandbOptions, "wandb")
        # a method YAML's card: its data settings and profile fields (apply_profile), its
        # upstream runs and table row (the runner: cloudxfer.runner.methods)
        parser.add_class_arguments(MethodCard, "method")
        parser.add_argument(
            "--overwrite",
            type=bool,
            default=False,
            help="fit into a run folder that already holds checkpoints, deleting them first",
        )
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        # This checkpoint callback refreshes last.ckpt at every validation (every epoch; add
        # --checkpoint.every_n_train_steps N for long epochs), so an interrupted fit resumes
        # there: the newest checkpoint under the name "last", overwritten in place. (Its
        # save_last option would write last.ckpt only when another checkpoint is written.)
        # The trainer also gets best.ckpt's callback (see instantiate_trainer).
        parser.set_defaults(
            {
                "checkpoint.filename": LAST_CHECKPOINT,
                "checkpoint.save_top_k": 1,
                "checkpoint.save_last": False,
                "checkpoint.enable_version_counter": False,
            }
        )
        parser.link_arguments(
            "data.class_names", "model.init_args.class_names", apply_on="instantiate"
        )
        parser.link_arguments(
            "data.normalisation", "model.init_args.normalisation", apply_on="instantiate"
        )

    @staticmethod
    def _uses_cuda(config: Any) -> bool:
        """Whether the trainer this config describes runs on CUDA (``auto``: when one is seen)."""
        trainer = config.get("trainer") if config is not None else None
        accelerator = str(trainer.get("accelerator") if trainer is not None else "auto")
        if accelerator in ("gpu", "cuda"):
            return True
        return accelerator == "auto" and torch.cuda.is_available()

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, then give the method its profile's settings and its card's data settings.

        ``--print_config`` prints the configuration with them (jsonargparse would print it
        before they are applied, so it is taken out of the arguments and done here).
        """
        argv = list(sys.argv[1:] if args is None else args)
        printing = [a for a in argv if a.split("=")[0] == "--print_config"]
        # LightningCLI's own parse_arguments, less its warning when both args and sys.argv are
        # set (here args are sys.argv less the flag)
        self.config = parser.parse_args([a for a in argv if a not in printing])
        subcommand = self.config.get("subcommand")
        config = self.config.get(subcommand) if subcommand else self.config
        try:
            apply_profile(config, self._method_name(config))
        except ValueError as err:
            parser.error(str(err))
        if printing:
            print(parser.dump(self.config, skip_check=True), end="")
            raise SystemExit(0)

    def before_instantiate_classes(self) -> None:
        """Fix the compute threads (profile ``threads``) before any model or loader exists."""
        config = self.config.get(str(self.subcommand)) if self.subcommand else self.config
        profile = config.get("profile") if config is not None else None
        if profile is not None:
            configure_threads(profile.get("threads"), int(profile.get("num_workers") or 0))
            configure_matmul_precision(profile.get("matmul_precision"), self._uses_cuda(config))
        if self.subcommand in ("fit", "validate", "test", "predict") and config is not None:
            self._check_writable(self._log_dir())
        if self.subcommand == "fit" and config is not None:
            self._earlier_checkpoints(config)

    @staticmethod
    def _method_name(config: Any) -> str | None:
        """Return the method a command runs: the last config file read from a ``methods`` folder."""
        paths = [Path(str(p)) for p in (config.get("config") or [])]
        names = [p.stem for p in paths if p.parent.name == "methods"]
        return names[-1] if names else None

    @staticmethod
    def _check_writable(folder: Path) -> None:
        """Refuse an output folder that cannot be created or written, naming it."""
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=folder):
                pass
        except OSError as err:
            raise RunFolderError(
                f"{folder}: cannot write the run folder here ({err.strerror or err}); choose "
                "another --trainer.default_root_dir"
            ) from None

    def _earlier_checkpoints(self, config: Any) -> list[Path]:
        """Return an earlier fit's checkpoints here; refuse them unless resuming or overwriting.

        Otherwise the new fit's checkpoints would mix with the old ones (a stale ``best.ckpt``
        could outlive it); ``--overwrite`` deletes them, but only in :meth:`before_fit`, once
        everything the fit reads has been validated.
        """
        if os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) != "0":
            return []  # DDP relaunches this command per process: the first one decides
        folder = self._log_dir() / "checkpoints"
        old = sorted(folder.glob("*.ckpt")) if folder.is_dir() else []
        if not old or config.get("ckpt_path"):
            return []
        if not config.get("overwrite"):
            raise RunFolderError(
                f"{folder.parent}: holds the checkpoints of an earlier fit "
                f"({', '.join(p.name for p in old)}); resume it with --ckpt_path "
                f"{folder / (LAST_CHECKPOINT + '.ckpt')}, start again with --overwrite true, "
                "or choose another --trainer.default_root_dir"
            )
        return old

    def before_fit(self) -> None:
        """Validate what the fit reads before its run folder is touched, then claim the folder.

        The stage's own ``setup("fit")`` loads and checks its teachers or initial weights; run
        here, a refused checkpoint stops the fit before Lightning's setup writes ``config.yaml``,
        ``metrics.csv`` or the split files (it is idempotent, so Lightning's call is a no-op).
        """
        self.model.setup("fit")
        config = self.config.get("fit")
        resume_from = config.get("ckpt_path")
        if resume_from and Path(resume_from).is_file():
            # the interrupted fit's loss curves stay in metrics.csv (Lightning's writer
            # would start the file afresh)
            rows = rows_before(self._log_dir() / "metrics.csv", Path(resume_from))
            for logger in self.trainer.loggers:
                if isinstance(logger, ResumableCSVLogger):
                    logger.carry(rows)
        if self._earlier_checkpoints(config):
            shutil.rmtree(self._log_dir() / "checkpoints")

    def _log_dir(self) -> Path:
        root = Path(self._get(self.config, "trainer.default_root_dir") or "runs/default")
        return root if self.subcommand in (None, "fit") else root / str(self.subcommand)

    def instantiate_trainer(self, **kwargs: Any) -> pl.Trainer:
        """Add the CSV logger (always), W&B (when enabled) and the run-file callbacks."""
        log_dir = self._log_dir()
        configured = self._get(self.config_init, "trainer.logger")
        if configured in (None, True):
            loggers: list[Logger] = [ResumableCSVLogger(save_dir=str(log_dir), name="", version="")]
            wandb = self._get(self.config_init, "wandb")
            if wandb is not None and wandb.enabled:
                os.environ.setdefault("WANDB_MODE", "offline")
                loggers.append(
                    WandbLogger(
                        project=wandb.project,
                        name=wandb.name,
                        group=wandb.group,
                        job_type=wandb.job_type,
                        tags=wandb.tags,
                        save_dir=str(log_dir),
                        # the resolved config, so runs compare by their settings
                        config=self.config.get(str(self.subcommand)).as_dict()
                        if self.subcommand
                        else None,
                    )
                )
            kwargs["logger"] = loggers
        configured_callbacks = self._get(self.config_init, "trainer.callbacks") or []
        # best.ckpt, the epoch of the lowest held-out loss, is the stage's result: later stages
        # and test read it. A callback of its own beside the configurable one that keeps
        # last.ckpt, so overriding --checkpoint.* never drops the result.
        selection = getattr(self.model, "selection", "last")
        callbacks = [*configured_callbacks, RunFiles(), PredictionCSVWriter()]
        if selection == "lowest_val":
            callbacks.append(
                ModelCheckpoint(
                    filename=BEST_CHECKPOINT,
                    monitor="val/loss",
                    mode="min",
                    save_top_k=1,
                    enable_version_counter=False,
                    # what later stages, test and maps read: the weights, not the optimiser's
                    # state (half a ResNet's checkpoint); an interrupted fit resumes from last
                    save_weights_only=True,
                )
            )
        # best.ckpt, the stage's result that later stages and test read: the last epoch's
        # weights when the fit ends (selection: last), or where no held-out loss chose one
        callbacks.append(BestCheckpoint(last_epoch=selection != "lowest_val"))
        profile = self._get(self.config_init, "profile")
        patience = getattr(profile, "patience", None)
        if patience is not None and self.subcommand in (None, "fit"):
            schedule = getattr(self.model, "optim", {}).get("scheduler", "plateau")
            if schedule not in ("plateau", "none"):
                raise ProtocolError(
                    f"profile patience {patience}: early stopping would end the {schedule!r} "
                    "schedule before it finishes; use --model.init_args.scheduler=plateau "
                    "(a schedule that follows the held-out loss) or no patience"
                )
            callbacks.append(EarlyStopping(monitor="val/loss", mode="min", patience=patience))
        if self.subcommand in ("validate", "test", "predict"):
            # These read the checkpoint's weights only; the fit's early stopping has nothing to
            # restore here, so Lightning's reminder to pass that callback again is noise.
            warnings.filterwarnings(
                "ignore", message="Be aware that when using `ckpt_path`, callbacks used to create"
            )
        kwargs["callbacks"] = callbacks
        kwargs.setdefault("default_root_dir", str(log_dir))
        kwargs["enable_progress_bar"] = progress_bar(
            self._get(self.config_init, "trainer.enable_progress_bar"), sys.stdout
        )
        return super().instantiate_trainer(**kwargs)

    def _parse_ckpt_path(self) -> None:
        """Refuse a ``--ckpt_path`` from another stage, modality or class scheme, naming it.

        Lightning then rebuilds the model from the checkpoint's hyper-parameters, so a wrong
        checkpoint would otherwise silently replace the configured stage.
        """
        subcommand = self.config.get("subcommand")
        config: Any = self.config.get(subcommand) if subcommand else None
        ckpt = config.get("ckpt_path") if config is not None else None
        if ckpt and ckpt not in ("last", "best", "hpc", "registry") and config.get("model"):
            module, _, name = str(config.model.class_path).rpartition(".")
            stage_cls = getattr(importlib.import_module(module), name, None)
            expected = getattr(stage_cls, "expected_metadata", None)
            if expected is not None:
                stage, modality = expected(dict(config.model.get("init_args") or {}))
                data_args = (config.get("data") or {}).get("init_args") or {}
                validate_metadata(
                    read_metadata(ckpt),
                    ckpt,
                    stages={stage},
                    class_names=data_args.get("classes"),
                    modality=modality,
                )
        super()._parse_ckpt_path()


class _DropTips(logging.Filter):
    """Drop Lightning's "Tip:" messages (product suggestions), keep every other record."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tip:" not in str(record.getMessage())


def progress_bar(configured: bool | None, stream: TextIO) -> bool:
    """Whether a run shows Lightning's progress bar: as configured, else where a terminal is.

    Unset (``trainer.enable_progress_bar: null``), the bar shows where a person watches the
    run; written to a log file (a scheduler, the runner's ``--jobs``, CI) its redrawn lines
    would bury the output, and the runner prints one line per run there anyway.
    """
    if configured is not None:
        return bool(configured)
    return stream.isatty()


def run_lightning(args: list[str] | None = None) -> int:
    """Run the LightningCLI subcommands (fit, validate, test, predict)."""
    # Stages convert image batches to channels-last in on_after_batch_transfer, beside a
    # datamodule that defines no such hook: nothing to warn about.
    warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer`.*")
    # A run folder already holds the runner's run.json (and, when resuming, the checkpoints);
    # the CSV logger removes only its own metrics.csv there, so its warning is harmless.
    warnings.filterwarnings("ignore", message="Experiment logs directory .* is not empty")
    # Lightning's own pytree helper calls a torch API that torch now marks deprecated; it is
    # Lightning's call, not ours, and behaves the same.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)` is deprecated")
    # test/predict log under <run>/<subcommand>/, so the checkpoint callback's folder differs
    # from the fit's; only a resumed *fit* would need its top-k state, and a fit never moves.
    warnings.filterwarnings("ignore", message="The dirpath has changed from")
    # The model summary counts parameters, not bytes of bf16 activations: its size estimate is
    # the only thing the warning is about, and the summary says "Estimated" already.
    warnings.filterwarnings("ignore", message="Precision bf16-mixed is not supported by the model")
    # An advertisement for a hosted logger printed at every Trainer start: not a diagnostic.
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropTips())
    # Configs interpolate ``${profile.x}`` from their own root; under a subcommand the merged
    # config is nested (``fit.profile.x``), so absolute paths must resolve relative to it.
    set_parsing_settings(omegaconf_absolute_to_relative_paths=True)
    cli = CloudxferCLI(
        pl.LightningModule,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        parser_kwargs={"parser_mode": "omegaconf+"},
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )
    # A W&B run is finished here, not by the interpreter's exit: the runner runs commands in
    # forked children, which leave without exit handlers (W&B's would flush the run).
    for logger in cli.trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()
    return 0


def main(args: list[str] | None = None) -> int:
    """Run a Lightning command; bad input (data, checkpoint, run folder) is one error line."""
    try:
        return run_lightning(args)
    except (CheckpointError, DataError, InitialisationError, ProtocolError, RunFolderError) as err:
        print(f"cloudxfer: error: {err}", file=sys.stderr)
        return 2
