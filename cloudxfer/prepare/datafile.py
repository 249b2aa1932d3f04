"""Data-set files (``experiments/data/<name>.yaml``, a prepared ``DATA.yaml``): read, write.

A data-set file is the data section of a run: the datamodule's ``class_path`` and
``init_args``. ``cloudxfer prepare`` writes one with a header saying how it was made and a
``content`` line: a digest of the patch table, the patches' files (names and sizes) and the
settings, so the file's text (which enters every run id) changes whenever the data it
describes does.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from datamodules.errors import data_error
from datamodules.runfiles import atomic_write_text

__all__ = [
    "build_datamodule",
    "content_digest",
    "read_data_file",
    "rounded",
    "write_data_file",
]

DIGITS = 6
"""Decimals kept of the standardisation constants written into a data file."""


def read_data_file(path: str | Path) -> dict[str, Any]:
    """Read a data-set file: ``{"class_path": ..., "init_args": {...}}``.

    Raises:
        DataError: Missing, not YAML, or without a ``class_path``; the message names the file.

    """
    path = Path(path)
    if not path.is_file():
        raise data_error(path, "data-set file not found")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise data_error(path, f"cannot read the data-set file: {exc}") from None
    if not isinstance(config, dict) or not isinstance(config.get("class_path"), str):
        raise data_error(path, "a data-set file holds a datamodule's class_path and init_args")
    config["init_args"] = dict(config.get("init_args") or {})
    return config


def rounded(values: Sequence[float]) -> list[float]:
    """Round constants for a data file (six decimals: far below any effect on training)."""
    return [round(float(v), DIGITS) for v in values]


def write_data_file(
    path: str | Path, class_path: str, init_args: Mapping[str, Any], header: Iterable[str]
) -> None:
    """Write a data-set file atomically, ``header`` lines as comments above it.

    Args:
        path: The file (``.yaml``).
        class_path: The datamodule class.
        init_args: Its arguments, written in this order.
        header: Comment lines (without ``#``).

    """
    body = yaml.safe_dump(
        {"class_path": class_path, "init_args": dict(init_args)},
        sort_keys=False,
        default_flow_style=None,
        width=100,
        allow_unicode=True,
    )
    comments = "".join(f"# {line}\n" if line else "#\n" for line in header)
    atomic_write_text(path, comments + body)


def content_digest(table: Path, files: Iterable[Path], settings: Mapping[str, Any]) -> str:
    """Digest of a prepared data set: the patch table's bytes, its files' names and sizes.

    Args:
        table: The patch table.
        files: The files it reads (names and sizes enter, not their paths' folders).
        settings: The data file's settings.

    """
    hasher = hashlib.sha256(table.read_bytes())
    for path in sorted(files):
        hasher.update(f"{path.name}\0{path.stat().st_size}\n".encode())
    hasher.update(yaml.safe_dump(dict(settings), sort_keys=True).encode())
    return hasher.hexdigest()[:16]


def build_datamodule(config: Mapping[str, Any], **overrides: Any) -> Any:
    """Build the datamodule a data-set file describes, ``overrides`` over its arguments.

    ``standardisation`` and ``clouds`` given as mappings become the dataclasses the
    datamodules take (as LightningCLI would build them).
    """
    from datamodules.clouds import CloudConfig
    from datamodules.normalisation import Standardisation

    module, _, name = str(config["class_path"]).rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    args = {**dict(config.get("init_args") or {}), **overrides}
    if isinstance(args.get("standardisation"), Mapping):
        args["standardisation"] = Standardisation(**args["standardisation"])
    if isinstance(args.get("clouds"), Mapping):
        args["clouds"] = CloudConfig(**args["clouds"])
    return cls(**args)
