"""Lightning callbacks the CLI always adds: run files next to the logs, and prediction CSVs."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import BasePredictionWriter, ModelCheckpoint

from cloudxfer.metrics import write_predictions_csv
from cloudxfer.stages.base import gather_rows

__all__ = [
    "BEST_CHECKPOINT",
    "LAST_CHECKPOINT",
    "BestCheckpoint",
    "PredictionCSVWriter",
    "RunFiles",
]

BEST_CHECKPOINT = "best"
"""File stem of a fit's result: the weights of its lowest held-out loss (``best.ckpt``)."""
LAST_CHECKPOINT = "last"
"""File stem of a fit's newest checkpoint, refreshed every epoch (``last.ckpt``: resume)."""


def _log_dir(trainer: pl.Trainer) -> Path:
    """Return the run's log dir. ``Trainer.log_dir`` broadcasts: every rank must call this."""
    return Path(trainer.log_dir or trainer.default_root_dir)


class RunFiles(pl.Callback):
    """Write the datamodule's split (``split.csv``) and ``normalisation.json`` into the log dir.

    So every run can be reproduced and inspected: which tiles were labelled, unlabelled and
    test, and which scaling constants the model saw.
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        """Write the files; Lightning sets the datamodule up before callbacks (rank 0 only)."""
        log_dir = _log_dir(trainer)
        datamodule = getattr(trainer, "datamodule", None)
        writer = getattr(datamodule, "write_run_files", None)
        if writer is not None and trainer.is_global_zero:
            writer(log_dir)


class BestCheckpoint(pl.Callback):
    """Make sure every fit leaves ``best.ckpt``, the checkpoint later stages and test read.

    ModelCheckpoint writes it from the held-out loss; a fit that scored no held-out tiles
    (``val_fraction: 0``) has no such loss, so its last epoch becomes its result.
    """

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """Copy ``last.ckpt`` to ``best.ckpt`` where no held-out loss chose one (rank 0)."""
        folders = {
            c.dirpath for c in trainer.checkpoint_callbacks if isinstance(c, ModelCheckpoint)
        }
        for folder in sorted(f for f in folders if f):
            last = Path(folder) / f"{LAST_CHECKPOINT}{ModelCheckpoint.FILE_EXTENSION}"
            best = last.with_name(f"{BEST_CHECKPOINT}{ModelCheckpoint.FILE_EXTENSION}")
            if trainer.is_global_zero and not best.is_file() and last.is_file():
                shutil.copyfile(last, best)
        trainer.strategy.barrier()


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
