"""Bad target data through the real `cloudxfer fit`: one error naming the file, nothing damaged.

Each case writes a small valid SEN12MS-layout set, damages one thing, and runs the CLI in this
process (as `cloudxfer fit` would run) on a stage that needs no teacher (SL), so the only thing
wrong is the data. The error must come at setup, before any training.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import file_digests

from cloudxfer.cli import main
from datamodules.splits import SplitRow, write_split_csv

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
CLASSES = ("Barren", "Dense Forests", "Water")  # the fixtures' classes
PATCHES_PER_CLASS = 5
LABELLED_PER_CLASS = 2
Writer = Callable[..., Path]


class DataSet(Protocol):
    """What the cases use of the ``make_sen12ms`` fixture's data set."""

    root: Path
    labels_path: Path
    s1_paths: dict[str, Path]
    s2_paths: dict[str, Path]

    @property
    def patches(self) -> list[str]:
        """Patch keys, sorted."""
        ...


@dataclass
class Damage:
    """What a case did to the data set: the file the error must name, extra CLI arguments."""

    named: Path
    args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Case:
    """One hostile input: how to damage a valid set, and what the error must say."""

    damage: Callable[[DataSet, Path, Writer], Damage]
    pattern: str


def _first(fixture: DataSet) -> str:
    return fixture.patches[0]


def _rewrite_s1(fixture: DataSet, write: Writer, **georef: object) -> Path:
    path: Path = fixture.s1_paths[_first(fixture)]
    with rasterio.open(path) as src:
        pixels = src.read()
    return write(path, pixels, **georef)


def _truncate_s1(fixture: DataSet, tmp: Path, write: Writer) -> Damage:
    path: Path = fixture.s1_paths[_first(fixture)]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return Damage(path)


def _corrupt_s2(fixture: DataSet, tmp: Path, write: Writer) -> Damage:
    path: Path = fixture.s2_paths[_first(fixture)]
    path.write_bytes(b"not a GeoTIFF, only its name" * 20)
    return Damage(path)


def _drop_s1(fixture: DataSet, tmp: Path, write: Writer) -> Damage:
    fixture.s1_paths[_first(fixture)].unlink()
    return Damage(fixture.s2_paths[_first(fixture)])


def _drop_s2(fixture: DataSet, tmp: Path, write: Writer) -> Damage:
    fixture.s2_paths[_first(fixture)].unlink()
    return Damage(fixture.s1_paths[_first(fixture)])


def _twelve_s2_bands(fixture: DataSet, tmp: Path, write: Writer) -> Damage:
    path = fixture.s2_paths[_first(fixture)]
    return Damage(write(path, np.full((12, 64, 64), 1000, np.uint16)))


def _integer_s1(fixture: DataSet, tmp: Path, write: Writer) -> Damage:
    path = fixture.s1_paths[_first(fixture)]
    return Damage(write(path, np.full((2, 64, 64), 10, np.uint16)))


def _larger_s1(fixture: DataSet, tmp: Path, write: Writer) -> Damage:
    path = fixture.s1_paths[_first(fixture)]
    return Damage(write(path, np.full((2, 80, 80), -10.0, np.float32)))


def _s1_other_crs(fixture: DataSet, tmp: Path, write: Writer) -> Damage:
    return Damage(_rewrite_s1(fixture, write, crs="EPSG:32633"))


def _s1_shifted(fixture: DataSet, tmp: Path, write: Writer) -> Damage:
    shifted = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0 + 640.0)  # 64 px north
    return Damage(_rewrite_s1(fixture, write, transform=shifted))


def _non_finite_s1(value: float) -> Callable[[DataSet, Path, Writer], Damage]:
    def damage(fixture: DataSet, tmp: Path, write: Writer) -> Damage:
        path = fixture.s1_paths[_first(fixture)]
        sar = np.full((2, 64, 64), -10.0, np.float32)
        sar[1, 7, 9] = value
        write(path, sar)
        return Damage(path, ("--data.init_args.sar_nan=reject",))  # `fill` fills and warns

    return damage


def _non_finite_s2(value: float) -> Callable[[DataSet, Path, Writer], Damage]:
    def damage(fixture: DataSet, tmp: Path, write: Writer) -> Damage:
        path = fixture.s2_paths[_first(fixture)]
        s2 = np.full((13, 64, 64), 1000.0, np.float32)
        s2[3, 7, 9] = value  # B04, the red channel the model reads
        return Damage(write(path, s2))

    return damage


def _labels_lines(fixture: DataSet) -> list[str]:
    return fixture.labels_path.read_text().splitlines()


def _write_labels(fixture: DataSet, lines: list[str]) -> Path:
    path: Path = fixture.labels_path
    path.write_text("\n".join(lines) + "\n")
    return path


def _labels_lack_a_split_tile(fixture: DataSet, tmp: Path, write: Writer) -> Damage:
    patch = _first(fixture)
    labels = _write_labels(fixture, [x for x in _labels_lines(fixture) if patch not in x])
    split = tmp / "split.csv"  # a split written by an earlier run, which labelled the patch
    write_split_csv([SplitRow(patch, patch, 0, "labelled")], split)
    return Damage(labels, (f"--data.init_args.split_file={split}",))


def _labels_unknown_class(fixture: DataSet, tmp: Path, write: Writer) -> Damage:
    return Damage(_write_labels(fixture, [*_labels_lines(fixture), "extra_p1.tif,Glacier"]))


def _labels_duplicate_row(fixture: DataSet, tmp: Path, write: Writer) -> Damage:
    again = f"{_first(fixture)}.tif,{CLASSES[2]}"  # the first patch is a Barren one
    return Damage(_write_labels(fixture, [*_labels_lines(fixture), again]))


def _labels_missing(fixture: DataSet, tmp: Path, write: Writer) -> Damage:
    fixture.labels_path.unlink()
    return Damage(fixture.labels_path)


def _empty_class(fixture: DataSet, tmp: Path, write: Writer) -> Damage:
    # Unlabelled patches join the unlabelled pool: no Water tile is left to label.
    kept = [x for x in _labels_lines(fixture) if not x.endswith(f",{CLASSES[2]}")]
    return Damage(_write_labels(fixture, kept))


def _empty_root(fixture: DataSet, tmp: Path, write: Writer) -> Damage:
    empty = tmp / "empty"
    empty.mkdir()
    return Damage(empty, (f"--profile.data_root={empty}",))


def _missing_root(fixture: DataSet, tmp: Path, write: Writer) -> Damage:
    missing = tmp / "nowhere"
    return Damage(missing, (f"--profile.data_root={missing}",))


CASES: dict[str, Case] = {
    "truncated-s1": Case(_truncate_s1, r"cannot read SAR patch as GeoTIFF \(corrupt or truncated"),
    "corrupt-s2": Case(_corrupt_s2, r"cannot read optical patch as GeoTIFF \(corrupt or trunc"),
    "missing-s1": Case(_drop_s1, r"S2 patch has no S1 twin \(expected .*_s1_1_p0\.tif\)"),
    "missing-s2": Case(_drop_s2, r"S1 patch has no S2 twin \(expected .*_s2_1_p0\.tif\)"),
    "wrong-band-count": Case(_twelve_s2_bands, r"optical patch has 12 band\(s\), expected 13"),
    "wrong-dtype": Case(_integer_s1, r"SAR patch has dtype uint16, expected float32"),
    "wrong-size": Case(_larger_s1, r"SAR patch is 80 px but its optical twin .*p0\.tif is 64 px"),
    "crs-mismatch": Case(
        _s1_other_crs,
        r"SAR patch is not co-registered with its optical twin .*_s2_1_p0\.tif: "
        r"CRS EPSG:32633 vs EPSG:32632 \(SAR vs optical\)",
    ),
    "transform-mismatch": Case(
        _s1_shifted,
        r"not co-registered with its optical twin .*_s2_1_p0\.tif: "
        r"transform \(10\.0, 0\.0, 500000\.0, 0\.0, -10\.0, 5000640\.0\) vs",
    ),
    "nan-sar": Case(_non_finite_s1(np.nan), r"SAR holds 1 NaN/inf value\(s\) and sar_nan='reject"),
    "inf-sar": Case(_non_finite_s1(np.inf), r"SAR holds 1 NaN/inf value\(s\) and sar_nan='reject"),
    "nan-optical": Case(_non_finite_s2(np.nan), r"optical patch has dtype float32, expected uint"),
    "inf-optical": Case(_non_finite_s2(-np.inf), r"optical patch has dtype float32, expected uint"),
    "labels-lack-a-split-tile": Case(
        _labels_lack_a_split_tile,
        r"patch '.*_s2_1_p0' is not labelled here, but the split file .*split\.csv puts its "
        r"tile '.*_s2_1_p0' in 'labelled' with label 0",
    ),
    "labels-unknown-class": Case(_labels_unknown_class, r"label 'Glacier' is outside the class"),
    "labels-duplicate-row": Case(
        _labels_duplicate_row, r"patch '.*_s2_1_p0' is listed twice with different labels"
    ),
    "labels-missing": Case(_labels_missing, r"labels file not found"),
    "empty-class": Case(
        _empty_class, r"empty class in the labelled subset: class 'Water' \(index 2\) has 0 train"
    ),
    "empty-root": Case(_empty_root, r"no season folder found"),
    "missing-root": Case(_missing_root, r"dataset root not found"),
}


def _fit_args(tmp: Path, root: Path, *extra: str) -> list[str]:
    return [
        "fit",
        *("--config", str(EXPERIMENTS / "profiles" / "smoke.yaml")),
        *("--config", str(EXPERIMENTS / "methods" / "sl.yaml")),
        f"--data={EXPERIMENTS / 'data' / 'sen12ms_cloud.yaml'}",
        f"--profile.data_root={root}",
        f"--profile.run_root={tmp / 'runs'}",
        f"--profile.store_dir={tmp / 'store'}",
        "--profile.threads=1",
        "--profile.init=scratch",  # no source pre-training here
        f"--data.init_args.classes=[{', '.join(CLASSES)}]",
        f"--data.init_args.labelled_per_class={LABELLED_PER_CLASS}",
        f"--trainer.default_root_dir={tmp / 'run'}",
        "--trainer.limit_train_batches=1",
        "--trainer.limit_val_batches=1",
        *extra,
    ]


@pytest.fixture
def valid_set(make_sen12ms: Callable[..., DataSet], tmp_path: Path) -> DataSet:
    """A small valid SEN12MS-layout set under ``tmp_path/data`` (5 patches per class)."""
    return make_sen12ms(tmp_path / "data", patches_per_class=PATCHES_PER_CLASS)


@pytest.mark.parametrize("case", list(CASES))
def test_bad_target_data_is_one_cli_error_naming_the_file_and_damages_nothing(
    tmp_path: Path,
    valid_set: DataSet,
    write_geotiff: Writer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    case: str,
) -> None:
    monkeypatch.setattr(sys, "argv", ["cloudxfer"])  # in-process: the CLI reads only our args
    damage = CASES[case].damage(valid_set, tmp_path, write_geotiff)
    outputs = ("run", "store")
    before = file_digests(tmp_path, outputs)  # the data set and the split file beside it
    code = main(_fit_args(tmp_path, valid_set.root, *damage.args))
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if re.search("error", line, re.IGNORECASE)]
    assert len(errors) == 1, err  # one message, not one per layer it went through
    (line,) = errors
    assert line.startswith(f"cloudxfer: error: {damage.named}: "), line  # the file first
    assert re.search(CASES[case].pattern, line), line
    assert file_digests(tmp_path, outputs) == before  # none changed, added (sidecars) or removed
    # The CLI creates the run folder before anything is built, to refuse an unwritable one
    # early (`CloudxferCLI._check_writable`); the data are read later, at the fit's setup. So
    # the folder exists, and what holds is that nothing is written in it: no config.yaml,
    # metrics.csv, split.csv, normalisation.json or checkpoint.
    run = tmp_path / "run"
    assert run.is_dir() and not any(run.iterdir())
    # Packed tile stores are caches of validated tiles (a labels or split problem is found
    # after they are packed); a failed build leaves no half-written store behind.
    store = tmp_path / "store"
    assert not store.exists() or not list(store.rglob(".*")), list(store.rglob(".*"))


def test_the_undamaged_set_fits_through_the_same_command(
    tmp_path: Path,
    valid_set: DataSet,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The matrix's errors come from its damage alone: the same command on the set as written
    # trains, and reading it changes nothing either.
    monkeypatch.setattr(sys, "argv", ["cloudxfer"])
    before = file_digests(valid_set.root)
    assert main(_fit_args(tmp_path, valid_set.root)) == 0, capsys.readouterr().err
    assert (tmp_path / "run" / "split.csv").is_file()
    assert (tmp_path / "run" / "checkpoints" / "best.ckpt").is_file()
    assert file_digests(valid_set.root) == before
    shutil.rmtree(tmp_path / "run")  # a checkpoint per test run is not worth keeping
