"""Atomic run files: a failed write leaves the old file, a finished one a plain file mode."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from datamodules.runfiles import atomic_open, atomic_write_text, write_json


def test_files_get_the_usual_mode_not_a_private_one(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        write_json(tmp_path / "a" / "normalisation.json", {"x": 1})
        atomic_write_text(tmp_path / "split.csv", "id\n")
    finally:
        os.umask(old)
    for path in (tmp_path / "a" / "normalisation.json", tmp_path / "split.csv"):
        assert path.stat().st_mode & 0o777 == 0o644


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    write_json(path, {"oa": 0.5})
    with pytest.raises(RuntimeError), atomic_open(path) as handle:
        handle.write('{"oa": ')
        raise RuntimeError("killed mid-write")
    assert path.read_text() == '{\n  "oa": 0.5\n}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
