"""``cloudxfer prepare source`` on NWPU-RESISC45 and AID folders as distributed."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloudxfer.cli import main
from cloudxfer.prepare.source import source_role
from tests.official_files import write_image_folder


def test_nwpu_through_torchgeos_parent_with_macos_debris(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_image_folder(tmp_path / "NWPU-RESISC45", ["airplane", "beach", "sea_ice"],
                              per_class=3, macosx=True)  # fmt: skip
    assert main(["prepare", "source", "--root", str(tmp_path), "--role", "nwpu"]) == 0
    out = capsys.readouterr().out
    assert f"source folder: {data} (torchgeo's layout under {tmp_path})" in out
    assert "role: nwpu (NWPU-RESISC45" in out
    assert "classes: 3; images: 9 (3-3 a class)" in out
    assert "skipped 27 hidden or __MACOSX entries" in out
    assert "converted to RGB as training reads them: 1 CMYK, 1 L" in out


def test_aid_of_600_px_jpegs_plays_the_aid_role(tmp_path: Path) -> None:
    data = write_image_folder(tmp_path / "AID", ["BareLand", "Beach", "RailwayStation"],
                              per_class=2, size=600)  # fmt: skip
    assert source_role(data) == "aid"
    assert main(["prepare", "source", "--root", str(data), "--role", "aid"]) == 0


def test_the_simulators_sets_play_the_role_their_record_names(tmp_path: Path) -> None:
    out = tmp_path / "aid"
    assert main(["synth", "source", "--out", str(out), "--per-class", "1", "--size", "16",
                 "--role", "aid"]) == 0  # fmt: skip
    assert (out / "simulation.json").is_file() and source_role(out) == "aid"


@pytest.mark.parametrize(
    ("classes", "args", "message"),
    [
        (["airplane"], [], "source root holds one class folder ('airplane')"),
        (["Beach", "Forest"], ["--role", "nwpu"], "source folder plays the aid role, not nwpu"),
    ],
)
def test_a_wrong_source_folder_is_one_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], classes: list[str], args: list[str],
    message: str,
) -> None:  # fmt: skip
    write_image_folder(tmp_path / "data", classes, per_class=2)
    assert main(["prepare", "source", "--root", str(tmp_path / "data"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"cloudxfer: error: {tmp_path / 'data'}: {message}"), err
    assert len(err.strip().splitlines()) == 1
