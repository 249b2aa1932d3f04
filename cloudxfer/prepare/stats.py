"""``cloudxfer stats DATA.yaml``: a data file's standardisation, from its training tiles.

The statistics are those of the training split's tiles exactly as the runs read them: scaled,
with the data file's clouds pasted, before standardisation (the datamodule is built with the
identity standardisation). ``prepare`` calls the same function.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cloudxfer.prepare.datafile import read_data_file, rounded
from datamodules.progress import Progress

__all__ = ["main", "standardisation_of", "train_standardisation"]


def _counted(dataset: Any, what: str) -> Iterator[Mapping[str, Any]]:
    progress = Progress(what, len(dataset))
    for index in range(len(dataset)):
        yield dataset[index]
        progress.update()
    progress.close()


def train_standardisation(datamodule: Any) -> dict[str, list[float]]:
    """Return the per-channel mean/std of a datamodule's training tiles (rounded).

    Args:
        datamodule: A paired datamodule built with ``Standardisation.identity()``.

    """
    from datamodules.normalisation import compute_standardisation

    datamodule.setup()
    dataset = datamodule.subset_dataset("train")
    result = compute_standardisation(_counted(dataset, "standardisation over training tiles"))
    return {key: rounded(values) for key, values in result.to_dict().items()}


def standardisation_of(config: Mapping[str, Any], **overrides: Any) -> dict[str, list[float]]:
    """Build a data file's datamodule with the identity standardisation and measure it."""
    from cloudxfer.prepare.datafile import build_datamodule
    from datamodules.normalisation import Standardisation

    datamodule = build_datamodule(config, standardisation=Standardisation.identity(), **overrides)
    return train_standardisation(datamodule)


def main(argv: list[str] | None = None) -> int:
    """Print (and with ``--write`` store) a data file's standardisation."""
    parser = argparse.ArgumentParser(
        prog="cloudxfer stats",
        description="Measure a data file's standardisation on its training tiles, as the "
        "runs read them (clouds pasted).",
    )
    parser.add_argument("data_file", type=Path, help="a data-set file (DATA.yaml)")
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="the data root, for a data file that names none (experiments/data/*.yaml)",
    )
    parser.add_argument("--store-dir", default=None, help="packed tile stores (default: cache)")
    parser.add_argument(
        "--write", action="store_true", help="replace the file's standardisation with the result"
    )
    args = parser.parse_args(argv)
    config = read_data_file(args.data_file)
    overrides: dict[str, Any] = {}
    if args.data_root is not None:
        overrides["root"] = str(args.data_root.resolve())
    elif not config["init_args"].get("root"):
        parser.error(f"{args.data_file} names no root: give --data-root DIR")
    if args.store_dir:
        overrides["store_dir"] = args.store_dir
    values = standardisation_of(config, **overrides)
    import yaml

    block = yaml.safe_dump({"standardisation": values}, sort_keys=False, default_flow_style=None)
    print(block, end="")
    if args.write:
        _replace_standardisation(args.data_file, values)
        print(f"wrote the standardisation into {args.data_file}")
    return 0


def _replace_standardisation(path: Path, values: Mapping[str, list[float]]) -> None:
    """Rewrite a data file with new standardisation, keeping its leading comment lines."""
    from cloudxfer.prepare.datafile import write_data_file

    text = path.read_text(encoding="utf-8")
    header = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        header.append(line[1:].removeprefix(" "))
    config = read_data_file(path)
    config["init_args"]["standardisation"] = dict(values)
    write_data_file(path, config["class_path"], config["init_args"], header)
