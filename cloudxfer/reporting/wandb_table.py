"""The table of ``cloudxfer run`` as a W&B table, when its runs log to W&B.

``cloudxfer run ... --wandb.enabled=true`` gives every fit and test a W&B logger (its run
named ``<method>-seed<k>``, grouped by the output folder, job type the method, tagged with
the seed and method: :mod:`cloudxfer.runner.plan`). Once ``table.csv`` is written, one more
W&B run of the same group, job type ``table``, logs it as a W&B table under the key
``table``, with the table's provenance (command, revision, profile, data, seeds) as its
config. W&B runs offline unless ``WANDB_MODE`` says otherwise, as the fits do.
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from cloudxfer.profile import WandbOptions

__all__ = ["TABLE_JOB_TYPE", "TABLE_KEY", "log_table", "log_table_if_enabled", "wandb_options"]

TABLE_KEY = "table"
"""History key of the W&B table."""
TABLE_JOB_TYPE = "table"
"""Job type of the W&B run that logs the table."""
_PREFIX = "--wandb."
_TRUE = frozenset({"true", "yes", "1", "on"})


def wandb_options(overrides: Sequence[str]) -> dict[str, str]:
    """Return the ``--wandb.<key>=<value>`` overrides every run gets, by key (the last wins).

    ``--wandb.<key> <value>`` (two words) is read too. Per-method overrides
    (``--stage.<method>.wandb.*``) are not: they do not reach the table's run.
    """
    options: dict[str, str] = {}
    for i, arg in enumerate(overrides):
        if not arg.startswith(_PREFIX):
            continue
        key, sep, value = arg.removeprefix(_PREFIX).partition("=")
        if not sep:
            following = overrides[i + 1] if i + 1 < len(overrides) else ""
            value = "" if following.startswith("--") else following
        options[key] = value
    return options


def _column(cells: Sequence[str]) -> list[float | int | str | None]:
    """One CSV column as W&B should chart it: numbers where every cell is one, None if empty.

    A column is numeric (int where every cell is an integer, else float) or text as a whole,
    so a W&B table's column never mixes types (``seeds`` stays text: ``0`` beside ``0 1 2``).
    """
    filled = [cell for cell in cells if cell != ""]
    for kind in (int, float):
        try:
            numbers = {cell: kind(cell) for cell in filled}
        except ValueError:
            continue
        return [numbers.get(cell) for cell in cells]
    return [cell if cell != "" else None for cell in cells]


def log_table(table_csv: Path, provenance: Mapping[str, str], project: str, group: str) -> Path:
    """Log ``table_csv`` as a W&B table in a new run of job type ``table``; return its folder.

    Provenance columns (the same on every line) are left out of the table and become the
    run's config. The run's files go under ``table_csv``'s folder (``wandb/``).

    Args:
        table_csv: A ``table.csv`` written by :func:`cloudxfer.reporting.tables.write_csv`.
        provenance: What made the table (its provenance columns, by title).
        project: W&B project, as the runs' ``--wandb.project``.
        group: W&B group, as the runs' (the output folder's name).

    Returns:
        The W&B run's folder (``.../wandb/offline-run-...`` when offline).

    """
    import wandb  # imported only where W&B is enabled

    os.environ.setdefault("WANDB_MODE", "offline")
    with table_csv.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader)
        lines = list(reader)
    keep = [i for i, title in enumerate(header) if title not in provenance]
    columns = [_column([line[i] for line in lines]) for i in keep]
    table = wandb.Table(
        columns=[header[i] for i in keep],
        data=[list(row) for row in zip(*columns, strict=True)],
    )
    run = wandb.init(
        project=project,
        group=group,
        job_type=TABLE_JOB_TYPE,
        name=f"{group}-table",
        tags=[TABLE_JOB_TYPE],
        dir=str(table_csv.parent),
        config=dict(provenance),
        settings=wandb.Settings(silent=True),
    )
    try:
        run.log({TABLE_KEY: table})
        folder = Path(run.dir).parent  # run.dir is the run's files/ folder
    finally:
        run.finish()
    return folder


def log_table_if_enabled(
    overrides: Sequence[str], table_csv: Path, provenance: Mapping[str, str], group: str
) -> Path | None:
    """Log the table to W&B when the runs' overrides enable W&B (``--wandb.enabled=true``).

    A W&B failure is one warning line: the table is on disk whatever happens here.

    Args:
        overrides: The overrides every run got.
        table_csv: The table just written.
        provenance: What made the table.
        group: The runs' W&B group.

    Returns:
        The W&B run's folder, or None when W&B is off or failed.

    """
    options = wandb_options(overrides)
    if options.get("enabled", "").lower() not in _TRUE:
        return None
    try:
        folder = log_table(
            table_csv, provenance, options.get("project") or WandbOptions.project, group
        )
    except Exception as err:  # noqa: BLE001 - the table is written; W&B is an extra
        print(f"cloudxfer run: warning: the table was not logged to W&B: {err}", file=sys.stderr)
        return None
    print(f"logged {table_csv.name} to W&B as the table {TABLE_KEY!r} of {folder}")
    return folder
