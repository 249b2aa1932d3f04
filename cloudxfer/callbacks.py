"""Lightning callbacks the CLI always adds: run files next to the logs, and prediction CSVs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn

from cloudxfer.loggers import ROWS_KEY, ResumableCSVLogger
from cloudxfer.metrics import write_predictions_csv
from cloudxfer.stages.base import gather_rows
from datamodules.faults import kill_point
from datamodules.runfiles import atomic_open

__all__ = [
    "BEST_CHECKPOINT",
    "LAST_CHECKPOINT",
    "AtomicCheckpointIO",
    "BestCheckpoint",
    "KillPoints",
    "PredictionCSVWriter",
    "RunFiles",
]

BEST_CHECKPOINT = "best"
"""File stem of a fit's result (``best.ckpt``): the weights of the epoch its selection rule
hands on (the last one, or that of the lowest held-out loss)."""
LAST_CHECKPOINT = "last"
"""File stem of a fit's newest checkpoint, refreshed every epoch (``last.ckpt``: resume)."""


def _log_dir(trainer: pl.Trainer) -> Path:
    """Return the run's log dir. ``Trainer.log_dir`` broadcasts: every rank must call this."""
    return Path(trainer.log_dir or trainer.default_root_dir)


class KillPoints(pl.Callback):
    """Trainer-event kill points of :mod:`datamodules.faults` (no-ops unless a test sets one)."""

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Kill point ``train_epoch_start``."""
        kill_point("train_epoch_start")

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        """Kill point ``train_batch`` (the batch's step is done and its row logged)."""
        kill_point("train_batch")

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Kill point ``validation_start``."""
        kill_point("validation_start")

    def on_validation_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Kill point ``validation_batch`` (mid-validation)."""
        kill_point("validation_batch")

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Kill point ``fit_end`` (callbacks run before the stage writes ``training.json``)."""
        kill_point("fit_end")

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Kill point ``test_batch``."""
        kill_point("test_batch")


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, through a temporary file beside the checkpoint and a rename.

    Lightning's own writes its temporary file in the system temp folder and moves it: a copy,
    not a rename, where that folder is another file system (a tmpfs ``/tmp``), so a kill there
    could leave a truncated ``last.ckpt``.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        """Write ``checkpoint`` to ``path`` atomically (remote paths: Lightning's writer)."""
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        with atomic_open(path, binary=True) as file:
            torch.save(checkpoint, file)


class RunFiles(KillPoints):
    """Write the datamodule's split (``split.csv``) and ``normalisation.json`` into the log dir.

    So every run can be reproduced and inspected: which tiles were labelled, unlabelled and
    test, and which scaling constants the model saw. A fit's checkpoints are written atomically
    (:class:`AtomicCheckpointIO`) and carry the ``metrics.csv`` rows logged before them, which a
    resumed fit writes back (:mod:`cloudxfer.loggers`): killed anywhere, a fit resumes into the
    files of an uninterrupted one. The kill points of the tests are inherited (:class:`KillPoints`).
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Write the files; Lightning sets the datamodule up before callbacks (rank 0 only)."""
        log_dir = _log_dir(trainer)
        datamodule = getattr(trainer, "datamodule", None)
        writer = getattr(datamodule, "write_run_files", None)
        if writer is not None and trainer.is_global_zero:
            writer(log_dir)
        if stage == TrainerFn.FITTING and type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Delete the temporary checkpoint files a killed fit left (as large as a checkpoint)."""
        if not trainer.is_global_zero:
            return
        for callback in trainer.checkpoint_callbacks:
            folder = getattr(callback, "dirpath", None)
            if folder and Path(folder).is_dir():
                for tmp in Path(folder).glob(f".*{ModelCheckpoint.FILE_EXTENSION}.*.tmp"):
                    tmp.unlink(missing_ok=True)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Put the ``metrics.csv`` rows logged so far into the checkpoint."""
        for logger in trainer.loggers:
            if isinstance(logger, ResumableCSVLogger):
                checkpoint[ROWS_KEY] = logger.rows

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        """Hand the checkpoint's rows to a resumed fit's logger, to write before its own."""
        rows = checkpoint.get(ROWS_KEY)
        if trainer.state.fn != TrainerFn.FITTING or not isinstance(rows, list):
            return
        for logger in trainer.loggers:
            if isinstance(logger, ResumableCSVLogger):
                logger.carry(rows)


class BestCheckpoint(pl.Callback):
    """Make sure every fit leaves ``best.ckpt``, the checkpoint later stages and test read.

    Under ``selection: last`` it is the weights the fit ends with, written when the fit ends
    (a fit killed after its last epoch resumes from ``last.ckpt`` straight to this point).
    Under ``lowest_val`` a ModelCheckpoint writes it from the held-out loss; a fit that scored
    no held-out tiles (``val_fraction: 0``) has none, so its last epoch becomes its result.

    Args:
        last_epoch: write the final weights whatever exists (``selection: last``).

    """

    def __init__(self, last_epoch: bool = True) -> None:
        self.last_epoch = last_epoch

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Write ``best.ckpt`` (weights only) where the rule or a missing one asks (all ranks)."""
        folders = {
            c.dirpath for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)
        }
        for folder in sorted(f for f in folders if f):
            best = Path(folder) / f"{BEST_CHECKPOINT}{ModelCheckpoint.FILE_EXTENSION}"
            if self.last_epoch or not best.is_file():
                trainer.save_checkpoint(best, weights_only=True)  # rank 0 writes, atomically


class PredictionCSVWriter(BasePredictionWriter):
    """Write ``predictions.csv`` (one row per tile, all ranks gathered) after ``predict``."""

    def __init__(self, filename: str = "predictions.csv") -> None:
        super().__init__(write_interval="epoch")
        self.filename = filename

    def write_on_epoch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        predictions: Sequence[Any],
        batch_indices: Sequence[Any],
    ) -> None:
        """Flatten the per-batch rows, gather them across ranks, and write them on rank 0."""
        rows: list[dict[str, Any]] = []
        for batch_rows in predictions:
            if isinstance(batch_rows, list) and batch_rows and isinstance(batch_rows[0], list):
                for inner in batch_rows:  # several predict dataloaders
                    rows.extend(inner)
            else:
                rows.extend(batch_rows)
        rows = gather_rows(rows)
        log_dir = _log_dir(trainer)
        if trainer.is_global_zero:
            write_predictions_csv(log_dir / self.filename, rows)
