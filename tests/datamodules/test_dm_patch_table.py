"""A prepared patch table: fixed split, whole-scene hold-outs, no tile overlapping training."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from datamodules import Sen12msCloudDataModule, Standardisation
from datamodules.clouds import NO_CLOUDS
from datamodules.errors import DataError
from datamodules.footprints import Footprint, overlapping_pairs, tile_footprint
from datamodules.labels import SIMPLIFIED_IGBP_CLASSES
from datamodules.patch_table import PatchEntry, read_patch_table, write_patch_table
from datamodules.splits import SplitRow, holdout_ids
from tests.official_files import Release, write_sen12ms_release

TRANSFORM = (10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)


def test_neighbours_cut_at_half_stride_overlap_and_touching_tiles_do_not() -> None:
    patch = tile_footprint("EPSG:32632", TRANSFORM, 0, 0, 256)
    neighbour = tile_footprint("EPSG:32632", TRANSFORM, 0, 128, 256)
    beyond = tile_footprint("EPSG:32632", TRANSFORM, 0, 256, 256)  # shares an edge only
    elsewhere = Footprint("EPSG:32633", patch.minx, patch.miny, patch.maxx, patch.maxy)
    assert overlapping_pairs([patch], [neighbour, beyond, elsewhere]) == [(0, 0)]
    # the 64-px centre crops of neighbours do not overlap: the paper's tiling is safe
    centres = [tile_footprint("EPSG:32632", TRANSFORM, 96, left + 96, 64) for left in (0, 128)]
    assert overlapping_pairs(centres[:1], centres[1:]) == []


def test_held_out_tiles_are_whole_groups_and_every_class_keeps_training_tiles() -> None:
    rows = [
        SplitRow(f"s{g}_p{i}", f"s{g}_p{i}", label, "labelled")
        for g in range(6)
        for i, label in enumerate((0, 0, 1) if g < 5 else (2, 2, 2))
    ]
    groups = {row.patch: row.patch.split("_")[0] for row in rows}
    for seed in range(5):
        held = holdout_ids(rows, 0.3, seed, stratify=True, groups=groups)
        held_groups = {groups[i] for i in held}
        assert held and held == {r.id for r in rows if groups[r.patch] in held_groups}
        assert "s5" not in held_groups  # class 2 lives in one group only: it keeps it
        assert {0, 1} <= {r.label for r in rows if r.id not in held}


def _table(
    release: Release, path: Path, split_of: dict[str, str], group_of: dict[str, str]
) -> Path:
    import rasterio

    entries = []
    for key, label in sorted(release.patches.items()):
        season, _, rest = key.partition("_s2_")
        scene = rest.split("_p")[0]
        with rasterio.open(release.root / season / f"s2_{scene}" / f"{key}.tif") as src:
            crs, transform, size = str(src.crs), tuple(src.transform)[:6], src.width
        entries.append(
            PatchEntry(
                key,
                SIMPLIFIED_IGBP_CLASSES[label],
                group_of[key],
                split_of[key],
                crs,
                transform,
                size,
            )  # fmt: skip
        )
    write_patch_table(entries, path)
    return path


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Release:
    return write_sen12ms_release(tmp_path_factory.mktemp("release"))


def _dm(release: Release, table: Path, **kwargs: object) -> Sen12msCloudDataModule:
    return Sen12msCloudDataModule(
        root=str(release.root),
        classes=list(SIMPLIFIED_IGBP_CLASSES),
        standardisation=Standardisation.identity(),
        patches_file=str(table),
        tile_size=32,
        tiling="grid",
        labelled_per_class=0,
        clouds=NO_CLOUDS,
        **kwargs,  # type: ignore[arg-type]
    )


def test_the_table_fixes_the_split_and_reads_only_its_patches(
    release: Release, tmp_path: Path
) -> None:
    split_of = {k: "test" if k in release.test else "train" for k in release.patches}
    keep = dict(list(release.scene_of.items())[::2])  # a subset: the rest is never read
    table = _table(release, tmp_path / "t.csv", split_of, release.scene_of)
    text = table.read_text().splitlines()
    table.write_text("\n".join([text[0], *(r for r in text[1:] if r.split(",")[0] in keep)]) + "\n")
    dm = _dm(release, table)
    dm.setup()
    patches = {row.patch for row in dm.split_rows}
    assert patches == set(keep)
    assert {r.patch for r in dm.split_rows if r.split == "test"} == set(keep) & set(release.test)
    for subset in ("fit", "val"):  # the stage's held-out tiles: whole scenes, no overlap
        assert len(dm.subset_dataset(subset)) > 0
    held = {release.scene_of[t.patch] for t in dm.subset_dataset("val").tiles}
    fit = {release.scene_of[t.patch] for t in dm.subset_dataset("fit").tiles}
    assert held and not held & fit


def test_test_tiles_overlapping_training_tiles_are_refused(
    release: Release, tmp_path: Path
) -> None:
    leaked = "ROIs1158_spring_s2_1_p5"  # the middle patch of a training scene: 8 neighbours
    split_of = {k: "test" if k in release.test or k == leaked else "train" for k in release.patches}
    table = _table(release, tmp_path / "t.csv", split_of, release.scene_of)
    with pytest.raises(DataError) as info:
        _dm(release, table).setup()
    message = str(info.value)
    assert message.startswith(f"{table}: 4 of 40 test tile(s) overlap a training tile")
    assert f"(first: {leaked}_r0c0 overlaps ROIs1158_spring_s2_1_p1_r1c1)" in message
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _dm(release, table, allow_overlap=True).setup()
    assert any("4 of 40 test tile(s) overlap" in str(w.message) for w in caught)


def test_held_out_tiles_overlapping_the_stages_training_tiles_are_refused(
    release: Release, tmp_path: Path
) -> None:
    # every patch its own group: a held-out patch's neighbours train (the old patch hold-out)
    split_of = {k: "test" if k in release.test else "train" for k in release.patches}
    table = _table(release, tmp_path / "t.csv", split_of, {k: k for k in release.patches})
    dm = _dm(release, table, val_fraction=0.3)
    dm.setup()  # the test split is whole scenes
    with pytest.raises(DataError, match=r"held-out tile\(s\) overlap a training tile"):
        dm.subset_dataset("fit")


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("p,Glacier,g,train,,1 0 0 0 -1 0,64", "label 'Glacier' is not one of the classes"),
        ("p,,g,test,,1 0 0 0 -1 0,64", "test patch 'p' has no label"),
        ("p,Water,g,val,,1 0 0 0 -1 0,64", "split 'val' is not train or test"),
        ("p,Water,g,train,,1 0 0,64", "transform needs 6 numbers"),
    ],
)
def test_a_bad_table_row_names_the_file_and_line(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "t.csv"
    path.write_text(f"patch,label,group,split,crs,transform,size\n{row}\n")
    with pytest.raises(DataError, match=message) as info:
        read_patch_table(path, ["Water"])
    assert str(info.value).startswith(str(path))


def test_a_patch_gone_since_prepare_is_named(release: Release, tmp_path: Path) -> None:
    split_of = {k: "test" if k in release.test else "train" for k in release.patches}
    table = _table(release, tmp_path / "t.csv", split_of, release.scene_of)
    text = table.read_text()
    table.write_text(
        text + "ROIs1158_spring_s2_9_p1,Water,ROIs1158_spring/9,train,,1 0 0 0 -1 0,64\n"
    )
    with pytest.raises(
        DataError,
        match=r"s2_9_p1.tif: file of patch .* not found: the data root "
        r"changed since `cloudxfer prepare`; run it again",
    ):
        _dm(release, table).setup()
