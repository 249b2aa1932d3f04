"""``cloudxfer prepare pairs`` on a user's real cloudy pairs in the Hunan-style layout."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from affine import Affine

from cloudxfer.cli import main
from cloudxfer.prepare.datafile import build_datamodule, read_data_file
from tests.conftest import write_geotiff_file

CLASSES = ["Agricultural", "Forest", "Water"]


def _pairs(root: Path, per_class: int = 8) -> dict[str, str]:
    """Pairs at distinct places but the last of each class, which repeats its neighbour's."""
    rng = np.random.default_rng(0)
    labels = {}
    for c, name in enumerate(CLASSES):
        for j in range(per_class):
            place = j if j < per_class - 1 else j - 1  # the last overlaps the one before
            transform = Affine(10.0, 0, 400000.0 + 2000 * place, 0, -10.0, 5000000.0 + 9000 * c)
            pid = f"hunan_{c}_{j:02d}"
            opt = (600 + 900 * c + rng.integers(0, 300, (3, 48, 48))).astype(np.uint16)
            vv = -6.0 - 4.0 * c + rng.normal(0, 1, (48, 48))
            write_geotiff_file(root / "opt" / f"{pid}.tif", opt, transform=transform)
            sar = np.stack([vv, vv - 6]).astype(np.float32)
            write_geotiff_file(root / "sar" / f"{pid}.tif", sar, transform=transform)
            mask = (rng.random((48, 48)) < 0.3).astype(np.uint8)
            write_geotiff_file(root / "masks" / f"{pid}.tif", mask, transform=transform)
            labels[pid] = name
    with (root / "labels.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([("id", "label"), *labels.items()])
    return labels


def test_pairs_become_a_data_file_split_by_overlapping_groups(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    labels = _pairs(tmp_path / "hunan")
    out = tmp_path / "hunan.yaml"
    args = ["prepare", "pairs", "--root", str(tmp_path / "hunan"), "--out", str(out),
            "--opt-bands", "1", "2", "3", "--tile-size", "32", "--labelled-per-class", "2",
            "--test-fraction", "0.25"]  # fmt: skip
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "found 24 optical/SAR pairs" in printed and "groups: 21 sets of overlapping" in printed
    config = read_data_file(out)
    init = config["init_args"]
    assert config["class_path"] == "datamodules.CloudyPairsDataModule"
    assert init["classes"] == CLASSES and init["opt_bands"] == [1, 2, 3]
    with Path(init["patches_file"]).open(newline="") as handle:
        rows = {r["patch"]: r for r in csv.DictReader(handle)}
    assert {k: r["label"] for k, r in rows.items()} == labels
    for c in range(3):  # a pair and its overlapping twin share a group, and so a split
        last, twin = rows[f"hunan_{c}_07"], rows[f"hunan_{c}_06"]
        assert last["group"] == twin["group"] == f"hunan_{c}_06" and last["split"] == twin["split"]
    dm = build_datamodule(config)
    dm.setup()
    sample = dm.subset_dataset("test")[0]
    assert sample["image_opt"].shape == (3, 32, 32) and 0 <= float(sample["cloud_fraction"]) <= 1


def test_class_numbers_without_names_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _pairs(tmp_path / "hunan", per_class=3)
    (tmp_path / "hunan" / "labels.csv").write_text("id,label\nhunan_0_00,1\n")
    out = tmp_path / "hunan.yaml"
    assert main(["prepare", "pairs", "--root", str(tmp_path / "hunan"), "--out", str(out)]) == 2
    assert "holds class numbers: give the class names (--classes)" in capsys.readouterr().err
