"""From files in the official formats to a smoke chain in three commands, no override.

``prepare sen12ms`` -> ``prepare source`` -> ``chain --profile smoke --dataset DATA.yaml``, each
through the real CLI (``cloudxfer.cli.main``; the chain's fits and tests are the subprocesses
the runner starts). About four minutes on two CPU cores: marked slow.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from cloudxfer.cli import main
from cloudxfer.prepare.datafile import read_data_file
from tests.official_files import write_image_folder, write_sen12ms_release


@pytest.mark.slow
def test_three_commands_from_the_official_files_to_a_smoke_chain(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")
    release = write_sen12ms_release(tmp_path)
    source = tmp_path / "torchgeo"  # torchgeo's parent of NWPU-RESISC45/
    write_image_folder(source / "NWPU-RESISC45", ["airplane", "beach", "forest"], macosx=True)
    data = tmp_path / "sen12ms.yaml"
    assert main(["prepare", "sen12ms", "--root", str(release.root), "--labels",
                 str(release.labels), "--splits", str(release.splits), "--out", str(data),
                 "--tile-size", "32", "--labelled-per-class", "2",
                 "--drop-small-classes"]) == 0  # fmt: skip
    assert main(["prepare", "source", "--root", str(source)]) == 0
    capsys.readouterr()
    out = tmp_path / "chain"
    code = main(["chain", "--profile", "smoke", "--dataset", str(data), "--source-root",
                 str(source), "--out", str(out), "--no-compare"])  # fmt: skip
    printed = capsys.readouterr().out
    assert code == 0, printed[-3000:]
    assert "| Source f_S (opt) |" in printed and "| F2 target, IRM (opt & SAR) |" in printed
    assert "Test tiles: 9 (" in printed
    init = read_data_file(data)["init_args"]
    runs = out / "runs"
    metrics = json.loads((runs / "target" / "test" / "metrics.json").read_text())
    assert metrics["class_names"] == init["classes"] and metrics["n"] == 9
    with (runs / "target" / "split.csv").open() as handle:
        test = sorted(r["patch"] for r in csv.DictReader(handle) if r["split"] == "test")
    assert test == release.test  # the official scene hold-out
    normalisation = json.loads((runs / "target" / "normalisation.json").read_text())
    assert normalisation["standardisation"] == init["standardisation"]
    for run in runs.iterdir():  # no run needed a data override
        record = json.loads((run / "run.json").read_text())
        assert (
            "--data.init_args" not in record["fit"] and "--profile.data_root" not in record["fit"]
        )
