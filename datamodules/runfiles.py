"""Writing run files atomically, so a crash never leaves a half-written file behind.

Each write passes the kill points ``write:<file name>`` (temporary file complete, not renamed)
and ``saved:<file name>`` (renamed) of :mod:`datamodules.faults`, inert unless a test sets them.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from datamodules.faults import kill_point


@contextmanager
def atomic_open(path: str | Path, binary: bool = False) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` for writing; it replaces ``path`` on success.

    Args:
        path: Destination (parent folders are created).
        binary: Open in binary mode (text mode: UTF-8, no newline translation).

    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # a plain file's mode, not mkstemp's private 0600
        if binary:
            handle: IO[Any] = os.fdopen(fd, "wb")
        else:
            handle = os.fdopen(fd, "w", encoding="utf-8", newline="")
        with handle:
            yield handle
        kill_point(f"write:{path.name}")
        os.replace(tmp, path)
        kill_point(f"saved:{path.name}")
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """Return the process's file-creation mask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write text to ``path`` via a temporary file in the same folder and ``os.replace``.

    Args:
        path: Destination (parent folders are created).
        text: Content.

    """
    with atomic_open(path) as handle:
        handle.write(text)


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON (indented, sorted keys) atomically."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
