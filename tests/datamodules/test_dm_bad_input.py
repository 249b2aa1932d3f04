"""Every bad input gives one DataError naming the file, at setup, with nothing on disk changed."""

import shutil

import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import file_digests

from datamodules import DataError, Sen12msCloudDataModule, Standardisation
from datamodules.splits import SplitRow, write_split_csv


def make_dm(fixture, **kwargs):
    kwargs.setdefault("labels_file", fixture.labels_file)
    return Sen12msCloudDataModule(
        root=str(fixture.root),
        classes=fixture.classes,
        standardisation=Standardisation.identity(),
        **kwargs,
    )


def expect_error(fixture, named, pattern, **kwargs):
    """Setup must fail with a DataError naming `named`, and must not touch the dataset."""
    before = file_digests(fixture.root)
    dm = make_dm(fixture, **kwargs)  # construction never reads the data
    with pytest.raises(DataError, match=pattern) as info:
        dm.setup("fit")
    assert str(named) in str(info.value), str(info.value)
    assert file_digests(fixture.root) == before
    return info.value


def first(fixture):
    return fixture.patches[0]


def test_missing_root(sen12ms_dataset):
    missing = sen12ms_dataset.root / "nope"
    dm = Sen12msCloudDataModule(str(missing), sen12ms_dataset.classes, Standardisation.identity())
    with pytest.raises(DataError, match="root not found") as info:
        dm.setup()
    assert str(missing) in str(info.value)


def test_missing_season_folder(sen12ms_dataset):
    expect_error(
        sen12ms_dataset,
        sen12ms_dataset.root / "ROIs1868_summer",
        "season folder not found",
        seasons=["ROIs1868_summer"],
    )


def test_no_season_at_all(sen12ms_dataset):
    shutil.rmtree(sen12ms_dataset.root / "ROIs1158_spring")
    expect_error(sen12ms_dataset, sen12ms_dataset.root, "no season folder")


def test_s2_without_s1(sen12ms_dataset):
    patch = first(sen12ms_dataset)
    sen12ms_dataset.s1_paths[patch].unlink()
    expect_error(sen12ms_dataset, sen12ms_dataset.s2_paths[patch], "S2 patch has no S1 twin")


def test_s1_without_s2(sen12ms_dataset):
    patch = first(sen12ms_dataset)
    sen12ms_dataset.s2_paths[patch].unlink()
    expect_error(sen12ms_dataset, sen12ms_dataset.s1_paths[patch], "S1 patch has no S2 twin")


def test_corrupt_geotiff(sen12ms_dataset):
    path = sen12ms_dataset.s2_paths[first(sen12ms_dataset)]
    path.write_bytes(b"this is not a tiff at all" * 10)
    expect_error(sen12ms_dataset, path, "cannot read")


def test_truncated_geotiff(sen12ms_dataset):
    path = sen12ms_dataset.s1_paths[first(sen12ms_dataset)]
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    expect_error(sen12ms_dataset, path, "cannot read")


def test_wrong_band_count(sen12ms_dataset, write_geotiff):
    path = sen12ms_dataset.s2_paths[first(sen12ms_dataset)]
    write_geotiff(path, np.zeros((12, 64, 64), np.uint16))
    expect_error(sen12ms_dataset, path, "12 band.*expected 13")


def test_wrong_s1_band_count(sen12ms_dataset, write_geotiff):
    path = sen12ms_dataset.s1_paths[first(sen12ms_dataset)]
    write_geotiff(path, np.zeros((3, 64, 64), np.float32))
    expect_error(sen12ms_dataset, path, "3 band.*expected 2")


def test_wrong_dtype(sen12ms_dataset, write_geotiff):
    path = sen12ms_dataset.s2_paths[first(sen12ms_dataset)]
    write_geotiff(path, np.zeros((13, 64, 64), np.float32))
    expect_error(sen12ms_dataset, path, "dtype float32, expected uint16")


def test_wrong_s1_dtype(sen12ms_dataset, write_geotiff):
    path = sen12ms_dataset.s1_paths[first(sen12ms_dataset)]
    write_geotiff(path, np.zeros((2, 64, 64), np.uint16))
    expect_error(sen12ms_dataset, path, "dtype uint16, expected float32")


def test_patch_smaller_than_tile(make_sen12ms):
    fixture = make_sen12ms(patch_size=32, patches_per_class=3)
    expect_error(fixture, fixture.s2_paths[first(fixture)], "smaller than the tile size 64")


def test_s1_s2_sizes_differ(sen12ms_dataset, write_geotiff):
    path = sen12ms_dataset.s1_paths[first(sen12ms_dataset)]
    write_geotiff(path, np.zeros((2, 80, 80), np.float32))
    expect_error(sen12ms_dataset, path, "SAR patch is 80 px but its optical twin")


def test_not_square(sen12ms_dataset, write_geotiff):
    path = sen12ms_dataset.s2_paths[first(sen12ms_dataset)]
    write_geotiff(path, np.zeros((13, 64, 72), np.uint16))
    expect_error(sen12ms_dataset, path, "64x72 px, not square")


def s1_rewritten(fixture, write_geotiff, **georef):
    """Rewrite the first patch's S1 file with the same pixels and other georeferencing."""
    path = fixture.s1_paths[first(fixture)]
    with rasterio.open(path) as src:
        pixels = src.read()
    return write_geotiff(path, pixels, **georef)


@pytest.mark.parametrize("store", [True, False], ids=["store", "no-store"])
def test_s1_s2_crs_differ(sen12ms_dataset, write_geotiff, store):
    path = s1_rewritten(sen12ms_dataset, write_geotiff, crs="EPSG:32633")
    err = expect_error(
        sen12ms_dataset,
        path,
        "not co-registered with its optical twin .*: CRS EPSG:32633 vs EPSG:32632",
        store=store,
    )
    assert str(sen12ms_dataset.s2_paths[first(sen12ms_dataset)]) in str(err)
    assert "transform" not in str(err)  # only what differs is named


@pytest.mark.parametrize("store", [True, False], ids=["store", "no-store"])
def test_s1_s2_transforms_differ(sen12ms_dataset, write_geotiff, store):
    shifted = Affine(10.0, 0.0, 500000.0 + 640.0, 0.0, -10.0, 5000000.0)  # 64 px east
    path = s1_rewritten(sen12ms_dataset, write_geotiff, transform=shifted)
    err = expect_error(
        sen12ms_dataset,
        path,
        r"not co-registered .*: transform \(10.0, 0.0, 500640.0, .*\) vs \(10.0, 0.0, 500000.0",
        store=store,
    )
    assert str(sen12ms_dataset.s2_paths[first(sen12ms_dataset)]) in str(err)
    assert "CRS" not in str(err)


def test_s1_moved_after_the_store_was_built_is_caught(sen12ms_dataset, write_geotiff):
    make_dm(sen12ms_dataset).setup()  # packs the valid tiles once
    path = s1_rewritten(sen12ms_dataset, write_geotiff, crs="EPSG:4326")
    expect_error(sen12ms_dataset, path, "CRS EPSG:4326 vs EPSG:32632")  # not the old store


def test_transform_float_noise_is_not_a_difference(sen12ms_dataset, write_geotiff):
    noisy = Affine(10.0 + 1e-9, 0.0, 500000.0 + 1e-7, 0.0, -10.0, 5000000.0)
    s1_rewritten(sen12ms_dataset, write_geotiff, transform=noisy)
    make_dm(sen12ms_dataset).setup()


@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "inf"])
def test_non_finite_optical_is_refused_by_its_dtype(sen12ms_dataset, write_geotiff, value):
    # Optical digital numbers are uint16, which holds no NaN/inf: a float optical file that
    # could is refused by its dtype before any pixel is read or scaled.
    path = sen12ms_dataset.s2_paths[first(sen12ms_dataset)]
    s2 = np.full((13, 64, 64), 1000.0, np.float32)
    s2[3, 5, 5] = value
    write_geotiff(path, s2)
    expect_error(sen12ms_dataset, path, "optical patch has dtype float32, expected uint16")
    expect_error(sen12ms_dataset, path, "dtype float32, expected uint16", cache=False, store=False)


def test_nan_in_sar_rejected(sen12ms_dataset, write_geotiff):
    path = sen12ms_dataset.s1_paths[first(sen12ms_dataset)]
    sar = np.zeros((2, 64, 64), np.float32)
    sar[0, 3, 3] = np.nan
    write_geotiff(path, sar)
    expect_error(sen12ms_dataset, path, "1 NaN/inf.*reject", sar_nan="reject")


def test_inf_in_sar_rejected_without_cache(sen12ms_dataset, write_geotiff):
    path = sen12ms_dataset.s1_paths[first(sen12ms_dataset)]
    sar = np.zeros((2, 64, 64), np.float32)
    sar[1, 0, 0] = -np.inf
    write_geotiff(path, sar)
    expect_error(sen12ms_dataset, path, "NaN/inf", sar_nan="reject", cache=False)


def test_patch_without_label_joins_the_unlabelled_pool(sen12ms_dataset):
    patch = first(sen12ms_dataset)
    lines = sen12ms_dataset.labels_path.read_text().splitlines()
    sen12ms_dataset.labels_path.write_text("\n".join(x for x in lines if patch not in x) + "\n")
    dm = make_dm(sen12ms_dataset)
    dm.setup()
    rows = [row for row in dm.split_rows if row.patch == patch]
    assert rows and all(row.split == "unlabelled" and row.label == -1 for row in rows)
    others = [row for row in dm.split_rows if row.patch != patch]
    assert {"labelled", "test"} <= {row.split for row in others}  # drawn from labelled tiles
    unlabelled = dm.subset_dataset("unlabelled")
    sample = next(unlabelled[i] for i, t in enumerate(unlabelled.tiles) if t.patch == patch)
    assert int(sample["label"]) == -1 and not bool(sample["labelled"])


def test_label_outside_class_scheme(sen12ms_dataset):
    path = sen12ms_dataset.labels_path
    path.write_text(path.read_text() + "extra_patch.tif,Glacier\n")
    expect_error(sen12ms_dataset, path, "'Glacier' is outside the class scheme")


def test_label_index_outside_class_scheme(make_sen12ms):
    fixture = make_sen12ms(label_form="index", patches_per_class=3)
    fixture.labels_path.write_text(fixture.labels_path.read_text() + "x.tif,3\n")
    expect_error(fixture, fixture.labels_path, "index 3 is outside")


def test_missing_labels_file(sen12ms_dataset):
    expect_error(
        sen12ms_dataset, sen12ms_dataset.root / "other.csv", "not found", labels_file="other.csv"
    )


def test_empty_class_in_labelled_subset(make_sen12ms):
    fixture = make_sen12ms(patches_per_class=10)
    err = expect_error(
        fixture, fixture.labels_path, "empty class in the labelled subset", labelled_per_class=9
    )
    assert "'Barren'" in str(err)


def test_class_absent_from_data(sen12ms_dataset):
    dm = Sen12msCloudDataModule(
        str(sen12ms_dataset.root),
        [*sen12ms_dataset.classes, "Harbor"],
        Standardisation.identity(),
    )
    with pytest.raises(DataError, match="empty class in the labelled subset.*'Harbor'"):
        dm.setup()


def test_bad_split_file(sen12ms_dataset, tmp_path):
    split = tmp_path / "split.csv"
    split.write_text("id,patch,label,split\nghost,ghost,0,test\n")
    expect_error(sen12ms_dataset, split, "'ghost' is not in the dataset", split_file=str(split))
    split.write_text(f"id,patch,label,split\n{first(sen12ms_dataset)},x,2,test\n")
    expect_error(sen12ms_dataset, split, "has label 2 here", split_file=str(split))


def test_split_file_needs_a_label_the_labels_file_lacks(sen12ms_dataset, tmp_path):
    patch = first(sen12ms_dataset)
    lines = sen12ms_dataset.labels_path.read_text().splitlines()
    sen12ms_dataset.labels_path.write_text("\n".join(x for x in lines if patch not in x) + "\n")
    split = tmp_path / "split.csv"
    write_split_csv([SplitRow(patch, patch, 0, "labelled")], split)
    err = expect_error(
        sen12ms_dataset,
        sen12ms_dataset.labels_path,
        f"patch '{patch}' is not labelled here, but the split file .* puts its tile "
        f"'{patch}' in 'labelled' with label 0",
        split_file=str(split),
    )
    assert str(split) in str(err)


def test_bad_masks_folder(sen12ms_dataset, tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "broken.npy").write_bytes(b"junk")
    from datamodules import CloudConfig

    expect_error(
        sen12ms_dataset,
        masks / "broken.npy",
        "cannot read",
        clouds=CloudConfig(masks_dir=str(masks)),
    )


def test_failed_setup_writes_no_run_files(sen12ms_dataset, tmp_path):
    sen12ms_dataset.s1_paths[first(sen12ms_dataset)].unlink()
    dm = make_dm(sen12ms_dataset)
    run = tmp_path / "run"
    with pytest.raises(DataError):
        dm.write_run_files(run)
    assert not run.exists() or not any(run.iterdir())


def test_bad_choices_fail_at_construction(sen12ms_dataset):
    with pytest.raises(ValueError, match="train_subset"):
        make_dm(sen12ms_dataset, train_subset="everything")
    with pytest.raises(ValueError, match="sar_nan"):
        make_dm(sen12ms_dataset, sar_nan="zero")
    with pytest.raises(ValueError, match="tiling"):
        make_dm(sen12ms_dataset, tiling="random")
