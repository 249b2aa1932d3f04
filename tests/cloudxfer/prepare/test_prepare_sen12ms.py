"""``cloudxfer prepare sen12ms`` on files forged in the formats of the SEN12MS release."""

from __future__ import annotations

import csv
import pickle
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from cloudxfer.cli import main
from cloudxfer.prepare.datafile import build_datamodule, read_data_file
from datamodules.labels import SIMPLIFIED_IGBP_CLASSES
from datamodules.normalisation import Standardisation
from tests.official_files import Release, write_sen12ms_release

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    return write_sen12ms_release(tmp_path_factory.mktemp("release"))


@pytest.fixture
def prepare(capsys: pytest.CaptureFixture[str], release: Release, tmp_path: Path) -> Run:
    """``prepare(*extra, root=..., labels=...)``: run ``cloudxfer prepare sen12ms`` in-process."""

    def run(
        *extra: str, root: Path | None = None, labels: Path | None = None
    ) -> tuple[int, str, str]:
        args = [
            "prepare", "sen12ms", "--root", str(root or release.root),
            "--labels", str(labels or release.labels), "--splits", str(release.splits),
            "--out", str(tmp_path / "data" / "sen12ms.yaml"), "--tile-size", "32",
            "--labelled-per-class", "2", *extra,
        ]  # fmt: skip
        code = main(args)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def one_error(err: str) -> str:
    """The one error line (progress lines aside), with no traceback."""
    errors = [line for line in err.splitlines() if line.startswith("cloudxfer: error: ")]
    assert len(errors) == 1 and "Traceback" not in err, err
    return errors[0]


def _table(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as handle:
        return {row["patch"]: row for row in csv.DictReader(handle)}


def test_the_official_files_become_a_checked_scene_split_data_file(
    prepare: Run, release: Release, tmp_path: Path
) -> None:
    code, out, err = prepare("--drop-small-classes")
    assert code == 0, err
    data = tmp_path / "data" / "sen12ms.yaml"
    config = read_data_file(data)
    init = config["init_args"]
    assert config["class_path"] == "datamodules.Sen12msCloudDataModule"
    present = sorted({SIMPLIFIED_IGBP_CLASSES[i] for i in release.patches.values()},
                     key=SIMPLIFIED_IGBP_CLASSES.index)  # fmt: skip
    assert init["classes"] == present  # the empty classes of the scheme were dropped, in order
    rows = _table(Path(init["patches_file"]))
    # the patches on disk, the damaged triplet left out, labelled by the simplified-IGBP rule
    assert {
        k: SIMPLIFIED_IGBP_CLASSES.index(r["label"]) for k, r in rows.items()
    } == release.patches
    assert "ROIs1868_summer_s2_146_p202" not in rows
    # the official scene hold-out is the test split
    assert sorted(k for k, r in rows.items() if r["split"] == "test") == release.test
    assert {r["group"] for r in rows.values()} == set(release.scene_of.values())
    std = init["standardisation"]
    shipped = yaml.safe_load((Path("experiments/data/sen12ms_cloud.yaml")).read_text())
    assert std != shipped["init_args"]["standardisation"]
    assert all(0 < v < 1 for v in std["opt_std"] + std["sar_std"])
    header = data.read_text().splitlines()[:6]
    assert header[1].startswith("# command: cloudxfer prepare sen12ms --root ")
    assert header[5].startswith("# content: ") and "not the paper's" in header[3]
    # what it printed: found, labels, split, classes, checks, written
    assert "found 47 S2/S1 patch pairs in 6 scenes" in out
    assert "skipped the damaged triplet ROIs1868_summer_*_146_p202" in out
    assert "47 of 47 patches on disk labelled" in out
    assert "split: official scene hold-out (test_list.txt and train_list.txt" in out
    assert "38 labelled training and 9 test patches (5 and 1 scenes or groups)" in out
    assert "Shrubland" in out and "(dropped: too few training tiles)" in out
    assert "overlap check: none of 9 test tiles overlaps a training tile" in out
    assert f"wrote {data} and {data.with_name('sen12ms.patches.csv')}" in out


def test_later_commands_never_open_the_pickle(
    prepare: Run, release: Release, tmp_path: Path
) -> None:
    labels = tmp_path / "IGBP_probability_labels.pkl"
    shutil.copy(release.labels, labels)
    assert prepare("--drop-small-classes", labels=labels)[0] == 0
    labels.unlink()
    config = read_data_file(tmp_path / "data" / "sen12ms.yaml")
    dm = build_datamodule(config, standardisation=Standardisation.identity())
    dm.setup()
    assert {r.split for r in dm.split_rows} == {"labelled", "unlabelled", "test"}


def test_grid_tiles_of_the_scene_hold_out_never_overlap(prepare: Run, tmp_path: Path) -> None:
    code, out, err = prepare("--drop-small-classes", "--tiling", "grid")
    assert code == 0, err
    assert "overlap check: none of 36 test tiles overlaps a training tile" in out
    config = read_data_file(tmp_path / "data" / "sen12ms.yaml")
    for subset in ("labelled", "unlabelled", "train"):
        dm = build_datamodule(config, train_subset=subset, val_fraction=0.3)
        assert len(dm.subset_dataset("val")) and len(dm.subset_dataset("fit"))  # checked


def test_a_patch_level_split_leaks_and_is_refused_unless_allowed(
    prepare: Run, release: Release, tmp_path: Path
) -> None:
    splits = tmp_path / "splits"
    shutil.copytree(release.splits, splits)
    # a patch split of one scene: the test patches' neighbours train
    keys = sorted(release.scene_of)
    test = [k for k in keys if k.startswith("ROIs1158_spring_s2_1_")][::2]
    (splits / "test_list.txt").write_text("".join(f"{k}.tif\n" for k in test))
    (splits / "train_list.txt").write_text("".join(f"{k}.tif\n" for k in keys if k not in test))
    args = ("--drop-small-classes", "--tiling", "grid", "--splits", str(splits))
    code, _, err = prepare(*args)
    assert code == 2
    error = one_error(err)
    assert "official scene hold-out" in error and "test tiles overlap a training tile on" in error
    code, out, err = prepare(*args, "--allow-overlap")
    assert code == 0, err
    assert "(allowed: --allow-overlap)" in out
    assert read_data_file(tmp_path / "data" / "sen12ms.yaml")["init_args"]["allow_overlap"]


def test_a_random_split_takes_whole_scenes(prepare: Run, tmp_path: Path) -> None:
    code, out, err = prepare("--drop-small-classes", "--split", "random", "--test-fraction",
                             "0.3", "--tiling", "grid")  # fmt: skip
    assert code == 0, err
    rows = _table(tmp_path / "data" / "sen12ms.patches.csv")
    by_scene: dict[str, set[str]] = {}
    for row in rows.values():
        by_scene.setdefault(row["group"], set()).add(row["split"])
    assert all(len(splits) == 1 for splits in by_scene.values())
    assert {s for splits in by_scene.values() for s in splits} == {"train", "test"}
    assert "overlap check: none of" in out


def test_a_subset_of_whole_scenes(prepare: Run, release: Release, tmp_path: Path) -> None:
    code, out, err = prepare("--drop-small-classes", "--max-pairs", "30")
    assert code == 0, err
    rows = _table(tmp_path / "data" / "sen12ms.patches.csv")
    classes = read_data_file(tmp_path / "data" / "sen12ms.yaml")["init_args"]["classes"]
    scenes = {r["group"] for r in rows.values()}
    assert len(rows) <= 30 and len(scenes) < 6 and "subset: " in out
    assert {r["split"] for r in rows.values()} == {"train", "test"}
    for scene in scenes:  # every patch of a chosen scene (of a kept class) is in
        members = {k for k, s in release.scene_of.items() if s == scene}
        kept = {k for k in members if SIMPLIFIED_IGBP_CLASSES[release.patches[k]] in classes}
        assert {k for k, r in rows.items() if r["group"] == scene} == kept


def test_dfc2020_ignores_rows_of_absent_patches_without_a_class(
    prepare: Run, tmp_path: Path
) -> None:
    code, _, err = prepare("--drop-small-classes", "--scheme", "dfc2020")
    assert code == 0, err  # the release's pure-savanna row of an absent patch is no error
    classes = read_data_file(tmp_path / "data" / "sen12ms.yaml")["init_args"]["classes"]
    assert set(classes) <= set(SIMPLIFIED_IGBP_CLASSES) - {"Savanna", "Snow/Ice"}


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            "small-class",
            "class(es) with fewer than labelled_per_class=2 training tiles: "
            "Shrubland (0), Savanna (0), Grassland (0), Wetlands (0), Snow/Ice (0)",
        ),
        (
            "missing-row",
            "1 of 47 patches on disk have no label row (first: "
            "ROIs1158_spring_s2_1_p1); give the labels file",
        ),
        ("tile-size", "ROIs1158_spring_s2_1_p1: patch is 64 px, smaller than the tile size 128"),
        ("missing-twin", "ROIs1158_spring_s2_2_p3.tif: S2 patch has no S1 twin"),
        ("hostile-pickle", "cannot read the pickle: it names posix.system"),
        ("unstated-base", "is a class number, but the file does not say whether numbers start"),
        ("no-splits", "--splits: the official split needs the toolbox's splits/ folder"),
    ],
)
def test_each_problem_is_one_line_naming_the_file_before_any_training(
    prepare: Run, release: Release, tmp_path: Path, damage: str, message: str
) -> None:
    root, labels, extra = release.root, release.labels, ["--drop-small-classes"]
    if damage == "small-class":
        extra = []
    elif damage == "missing-row":
        entries = pickle.loads(release.labels.read_bytes().replace(b"numpy.core", b"numpy._core"))
        del entries["ROIs1158_spring_s2_1_p1.tif"]
        labels = tmp_path / "labels.pkl"
        labels.write_bytes(pickle.dumps(entries))
    elif damage == "tile-size":
        extra += ["--tile-size", "128"]
    elif damage == "missing-twin":
        root = tmp_path / "sen12ms"
        shutil.copytree(release.root, root)
        (root / "ROIs1158_spring" / "s1_2" / "ROIs1158_spring_s1_2_p3.tif").unlink()
    elif damage == "hostile-pickle":
        labels = tmp_path / "labels.pkl"
        labels.write_bytes(b"cposix\nsystem\n(S'true'\ntR.")
    elif damage == "unstated-base":
        labels = tmp_path / "labels.csv"
        labels.write_text("".join(f"{k}.tif,{i + 1}\n" for k, i in release.patches.items()))
    elif damage == "no-splits":
        code = main(["prepare", "sen12ms", "--root", str(root), "--labels", str(labels),
                     "--out", str(tmp_path / "d.yaml")])  # fmt: skip
        assert code == 2
        return
    code, _, err = prepare(*extra, root=root, labels=labels)
    assert code == 2
    assert message in one_error(err)
    assert not (tmp_path / "data" / "sen12ms.yaml").exists()
