"""``cloudxfer stats``: a data file's standardisation, recomputed from its training tiles."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cloudxfer.cli import main
from cloudxfer.prepare.datafile import read_data_file
from tests.official_files import write_sen12ms_release


def test_stats_recompute_what_prepare_wrote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    release = write_sen12ms_release(tmp_path)
    data = tmp_path / "sen12ms.yaml"
    args = ["prepare", "sen12ms", "--root", str(release.root), "--labels", str(release.labels),
            "--splits", str(release.splits), "--out", str(data), "--tile-size", "32",
            "--labelled-per-class", "2", "--drop-small-classes"]  # fmt: skip
    assert main(args) == 0
    written = read_data_file(data)["init_args"]["standardisation"]
    capsys.readouterr()
    assert main(["stats", str(data)]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == {"standardisation": written}
    # --write puts a new measurement in place and keeps the header
    text = data.read_text()
    data.write_text(text.replace(str(written["opt_mean"][0]), "0.0", 1))
    assert main(["stats", str(data), "--write"]) == 0
    assert read_data_file(data)["init_args"]["standardisation"] == written
    assert data.read_text().startswith("# Prepared by `cloudxfer prepare sen12ms`")


def test_a_data_file_without_a_root_needs_one(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["stats", "experiments/data/sen12ms_cloud.yaml"])
    assert "names no root: give --data-root DIR" in capsys.readouterr().err
