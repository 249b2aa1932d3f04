"""What the runner checks about the data before anything trains.

A data-set file's kind (its datamodule class) and root, a source folder's role, whether a
paper table may run on them, and the files every run will open: each problem is one line
naming the file, raised before the first fit (a chain that trains the source model for
minutes and then misses its labels file wastes those minutes). Light: YAML and directory
listings only, no torch.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cloudxfer.prepare.datafile import read_data_file as read_dataset
from cloudxfer.runner.methods import EXPERIMENTS, TABLE_SETTINGS
from datamodules.errors import data_error

__all__ = [
    "check_source",
    "check_table",
    "check_target",
    "content_line",
    "dataset_root",
    "read_dataset",
    "shipped_standardisation_warning",
]

SHIPPED_DATA = EXPERIMENTS / "data"
"""The data-set files the project ships (their standardisation is the simulator's)."""
KIND_NAMES = {
    "datamodules.Sen12msCloudDataModule": "SEN12MS (clouds pasted)",
    "datamodules.CloudyPairsDataModule": "real cloudy pairs (Hunan-style)",
}


def dataset_root(path: Path) -> Path | None:
    """Return the root a data-set file names (a prepared one does), or None."""
    if not path.is_file():
        return None
    root = read_dataset(path)["init_args"].get("root")
    return Path(str(root)) if root else None


def check_table(table: str, dataset: Path, source_role: str | None, source: Path) -> None:
    """Refuse a table on a target data set of another kind or a source folder of another role.

    Args:
        table: The table (``table1``...).
        dataset: The target data-set file given (``--dataset``).
        source_role: The role of the source folder (None: unknown).
        source: The source folder (named in the error).

    Raises:
        DataError: One line naming the data file or folder and what the table needs.

    """
    wanted_data, wanted_role = TABLE_SETTINGS[table]
    wanted_kind = read_dataset(SHIPPED_DATA / f"{wanted_data}.yaml")["class_path"]
    kind = read_dataset(dataset)["class_path"]
    if kind != wanted_kind:
        raise data_error(
            dataset,
            f"{table} runs on {KIND_NAMES.get(wanted_kind, wanted_kind)} data "
            f"({wanted_kind}); this data file is {KIND_NAMES.get(kind, kind)} ({kind})",
        )
    if source_role != wanted_role:
        from datamodules.source_layout import ROLE_NAMES

        raise data_error(
            source,
            f"{table} takes a source set of the {wanted_role} role "
            f"({ROLE_NAMES[wanted_role]}); this folder plays "
            + (f"the {source_role} role" if source_role else "no known role (its class names "
               "match neither NWPU-RESISC45 nor AID)"),
        )  # fmt: skip


def check_target(dataset: Path, data_root: Path) -> None:
    """Check what every target run opens first: the root and the labels or patch table.

    Raises:
        DataError: A missing root, labels file or patch table (one line naming it).

    """
    init = read_dataset(dataset)["init_args"]
    root = Path(str(init.get("root") or data_root))
    if not root.is_dir():
        raise data_error(root, "target data root not found")
    table = init.get("patches_file")
    if table:
        if not Path(str(table)).is_file():
            raise data_error(table, f"patch table of {dataset} not found: run `cloudxfer "
                             "prepare` again")  # fmt: skip
        return
    labels = root / str(init.get("labels_file") or "labels.csv")
    if not labels.is_file():
        raise data_error(
            labels,
            "labels file not found: give a data file made by `cloudxfer prepare` "
            "(--dataset DATA.yaml), or put the labels there",
        )


def check_source(source: Path) -> Path:
    """Check a source folder (``__MACOSX`` skipped, torchgeo's parent, at least two classes).

    Returns:
        The folder holding the class folders.

    Raises:
        DataError: A missing folder, or one of fewer than two classes.

    """
    from datamodules.source_layout import resolve_source_root

    return resolve_source_root(source)


def shipped_standardisation_warning(dataset: Path, data_root: Path) -> None:
    """Warn when a shipped data file's (simulated) standardisation meets data on disk."""
    from cloudxfer.sim.record import simulation_record

    if dataset.resolve().parent != SHIPPED_DATA.resolve() or not data_root.is_dir():
        return
    if simulation_record(data_root) is not None:
        return
    print(
        f"warning: {dataset.name} standardises with constants measured on the simulator's "
        f"data, and {data_root} holds no simulation record: prepare your data (`cloudxfer "
        "prepare sen12ms|pairs ... --out DATA.yaml`, then --dataset DATA.yaml) or measure them "
        f"(`cloudxfer stats {dataset} --data-root {data_root}`)",
        file=sys.stderr,
    )


def content_line(dataset: Path) -> str | None:
    """Return the ``content`` digest a prepared data file's header states, or None."""
    for line in dataset.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            return None
        if line.startswith("# content: "):
            return line.removeprefix("# content: ").strip()
    return None
