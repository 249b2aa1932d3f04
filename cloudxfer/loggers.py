"""A CSV logger whose ``metrics.csv`` is a function of the run, however often the fit was killed.

Lightning's CSV writer deletes an existing ``metrics.csv`` when it starts and builds its header
from the rows it has seen, so a fit resumed from ``last.ckpt`` would lose the curves of the
epochs before the interruption, or fail on a header the interrupted process wrote. Here every
checkpoint carries the rows logged up to it (:data:`ROWS_KEY`, put there by the CLI's
``RunFiles`` callback); a resumed fit writes them back in front of its own rows, and the file's
header is the union of all rows' columns, sorted. Whatever the disk held when the process died,
the resumed fit's file is the uninterrupted fit's.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.core.saving import save_hparams_to_yaml
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_only

from cloudxfer.stages.base import TRAINING_KEY
from datamodules.faults import kill_point
from datamodules.runfiles import atomic_open

__all__ = ["ROWS_KEY", "ResumableCSVLogger", "RunMetricsWriter", "rows_before"]

Row = dict[str, Any]

ROWS_KEY = "cloudxfer_metrics_rows"
"""Checkpoint key of the ``metrics.csv`` rows logged before the checkpoint was written."""


def _number(value: str) -> float | int:
    number = float(value)
    return int(number) if number.is_integer() and "." not in value and "e" not in value else number


def rows_before(metrics_csv: Path, checkpoint: Path) -> list[Row]:
    """Rows of the fit logged before ``checkpoint`` was written.

    The checkpoint's own rows (:data:`ROWS_KEY`) where it carries them: what the killed process
    left in ``metrics_csv`` may lag behind the checkpoint, hold a torn last row or a header of
    fewer columns. For older checkpoints, the rows of ``metrics_csv`` (empty cells dropped) of
    the epochs the checkpoint's training record holds, and of the epoch it stopped in (a
    step-wise checkpoint) the rows before its global step.
    """
    state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    if isinstance(state.get(ROWS_KEY), list):
        return [dict(row) for row in state[ROWS_KEY]]
    if not metrics_csv.is_file():
        return []
    finished = len((state.get(TRAINING_KEY) or {}).get("epochs", []))
    step = int(state.get("global_step", 0))
    with metrics_csv.open(newline="") as file:
        rows = [{k: _number(v) for k, v in row.items() if v != ""} for row in csv.DictReader(file)]
    return [
        row
        for row in rows
        if int(row.get("epoch", 0)) < finished
        or (int(row.get("epoch", 0)) == finished and int(row.get("step", 0)) < step)
    ]


def _csv_text(rows: list[Row], columns: list[str], header: bool) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


class RunMetricsWriter(ExperimentWriter):
    """Lightning's CSV experiment writer, writing the carried rows first and a union header.

    A save appends the new rows while the columns stay the same; a new column, carried rows
    or the process's first save rewrite the whole file through a temporary file and a rename,
    so a kill then leaves the previous complete file. (A kill during an append can leave a
    torn last row: the next resume rewrites the file from its checkpoint.)
    """

    def __init__(self, log_dir: str, carried: list[Row] | None = None) -> None:
        super().__init__(log_dir=log_dir)
        self.carried: list[Row] = list(carried or [])
        self._keys: set[str] = set().union(*self.carried)  # every row's columns
        self._columns: list[str] | None = None  # the header on disk; None: rewrite
        self._on_disk = 0  # rows of ``self.rows`` in the file

    @property
    def rows(self) -> list[Row]:
        """Every row of the fit: the carried ones, then those logged by this process."""
        return [*self.carried, *self.metrics]

    def carry(self, rows: list[Row]) -> None:
        """Put ``rows`` (an interrupted fit's) in front of this process's; rewrite at next save."""
        self.carried = list(rows)
        self._keys = set().union(*self.carried, *self.metrics)
        self._columns = None

    def log_metrics(self, metrics_dict: dict[str, Any], step: int | None = None) -> None:
        """Record a row (kept for the whole fit: checkpoints carry it)."""
        row = {k: v.item() if isinstance(v, torch.Tensor) else v for k, v in metrics_dict.items()}
        row["step"] = len(self.carried) + len(self.metrics) if step is None else step
        self.metrics.append(row)
        self._keys.update(row)

    def log_hparams(self, params: dict[str, Any]) -> None:
        """Record hyper-parameters and write ``hparams.yaml`` atomically."""
        self.hparams.update(params)
        path = Path(self.log_dir) / self.NAME_HPARAMS_FILE
        tmp = path.with_name(f".{path.name}.tmp")
        save_hparams_to_yaml(tmp, self.hparams)
        os.replace(tmp, path)

    def save(self) -> None:
        """Write the rows not yet in ``metrics.csv`` (the whole file when its header changes)."""
        total = len(self.carried) + len(self.metrics)
        if not total:
            return
        columns = sorted(self._keys)
        path = Path(self.metrics_file_path)
        if columns != self._columns or not path.is_file():
            with atomic_open(path) as file:
                file.write(_csv_text(self.rows, columns, header=True))
            self._columns = columns
        elif self._on_disk < total:
            # a full write came first in this process: the carried rows are on disk
            new = self.metrics[self._on_disk - len(self.carried) :]
            data = _csv_text(new, columns, header=False).encode("utf-8")
            kill_point(f"append:{path.name}")
            fd = os.open(path, os.O_WRONLY | os.O_APPEND)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        self._on_disk = total


class ResumableCSVLogger(CSVLogger):
    """:class:`CSVLogger` whose file holds an interrupted fit's rows (:meth:`carry`) first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._carried: list[Row] = []
        self._run_writer: RunMetricsWriter | None = None

    def carry(self, rows: list[Row]) -> None:
        """Rows to write before the first new one (an interrupted fit's; replaces earlier ones).

        Called by the CLI with :func:`rows_before` and, on resume, by ``RunFiles`` with the
        checkpoint's rows: the same rows, so the second call changes nothing.
        """
        self._carried = [dict(row) for row in rows]
        if self._run_writer is not None:
            self._run_writer.carry(self._carried)

    @property
    def rows(self) -> list[Row]:
        """Every row of the fit so far (what a checkpoint written now carries)."""
        if self._run_writer is None:
            return list(self._carried)
        return self._run_writer.rows

    @property
    @rank_zero_experiment
    def experiment(self) -> RunMetricsWriter:
        """The CSV writer (created on first use; Lightning's deletes an old ``metrics.csv``)."""
        if self._run_writer is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._run_writer = RunMetricsWriter(log_dir=self.log_dir, carried=self._carried)
        return self._run_writer

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Write what is left (no-op where this process never wrote)."""
        if self._run_writer is not None:
            self.save()
