import json
import math
import re

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from conftest import file_digests

from datamodules import CloudyPairsDataModule, DataError, Standardisation


def make_dm(fixture, **kwargs):
    return CloudyPairsDataModule(
        root=str(fixture.root),
        classes=fixture.classes,
        standardisation=Standardisation.identity(),
        **kwargs,
    )


def samples(dm):
    out = {}
    for subset in ("train", "test"):
        ds = dm.subset_dataset(subset)
        out.update({ds[i]["id"]: ds[i] for i in range(len(ds))})
    return out


@pytest.mark.parametrize("train_subset", ["labelled", "unlabelled", "train"])
def test_batches(cloudy_pairs_dataset, train_subset):
    dm = make_dm(cloudy_pairs_dataset, train_subset=train_subset, batch_size=16)
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"image_opt", "image_sar", "label", "cloud_fraction", "id", "labelled"}
    assert batch["image_opt"].shape[1:] == (3, 64, 64) and batch["image_opt"].dtype == torch.float32
    assert batch["image_sar"].shape[1:] == (3, 64, 64) and batch["image_sar"].dtype == torch.float32
    assert batch["label"].dtype == torch.int64 and batch["cloud_fraction"].dtype == torch.float32
    assert len(dm.test_dataloader().dataset) == 18
    fit = {t.id for t in dm.train_dataloader().dataset.tiles}
    val = {t.id for t in dm.val_dataloader().dataset.tiles}
    test = {t.id for t in dm.test_dataloader().dataset.tiles}
    assert val and not val & fit and not val & test  # held out from training, never the test split
    assert fit | val == {t.id for t in dm.subset_dataset(train_subset).tiles}


def test_cloud_fraction_from_masks(cloudy_pairs_dataset):
    got = samples(make_dm(cloudy_pairs_dataset))
    assert got.keys() == set(cloudy_pairs_dataset.ids)
    for pair_id, sample in got.items():
        assert sample["cloud_fraction"].item() == pytest.approx(
            cloudy_pairs_dataset.fractions[pair_id]
        )
        assert sample["label"].item() == cloudy_pairs_dataset.labels[pair_id]


def test_probability_masks(make_cloudy_pairs):
    fixture = make_cloudy_pairs(masks="float32", pairs_per_class=5)
    got = samples(make_dm(fixture, labelled_per_class=2))
    for pair_id, sample in got.items():
        assert sample["cloud_fraction"].item() == pytest.approx(fixture.fractions[pair_id])


def test_no_masks_gives_nan(make_cloudy_pairs):
    fixture = make_cloudy_pairs(masks=None, pairs_per_class=5)
    got = samples(make_dm(fixture, labelled_per_class=2))
    assert all(math.isnan(s["cloud_fraction"].item()) for s in got.values())


def test_opt_bands_for_rgb_files(make_cloudy_pairs, write_geotiff):
    fixture = make_cloudy_pairs(opt_bands=3, masks=None, pairs_per_class=3)
    pair_id = fixture.ids[0]
    rgb = np.stack([np.full((64, 64), v, np.uint16) for v in (3000, 2000, 1000)])
    write_geotiff(fixture.opt_path(pair_id), rgb)
    dm = make_dm(fixture, opt_bands=[1, 2, 3], labelled_per_class=1)
    np.testing.assert_allclose(samples(dm)[pair_id]["image_opt"][:, 0, 0].numpy(), [0.3, 0.2, 0.1])
    assert dm.normalisation["optical"]["bands_1based"] == [1, 2, 3]
    with pytest.raises(DataError, match="needs at least 4") as info:
        make_dm(fixture, labelled_per_class=1).setup()  # default [4, 3, 2] on 3-band files
    assert str(fixture.root / "opt") in str(info.value)


def test_thirteen_band_order(make_cloudy_pairs, write_geotiff):
    fixture = make_cloudy_pairs(masks=None, pairs_per_class=3)
    pair_id = fixture.ids[0]
    s2 = np.zeros((13, 64, 64), np.uint16)
    s2[1], s2[2], s2[3] = 1000, 2000, 3000  # B02, B03, B04
    write_geotiff(fixture.opt_path(pair_id), s2)
    dm = make_dm(fixture, labelled_per_class=1)
    np.testing.assert_allclose(samples(dm)[pair_id]["image_opt"][:, 0, 0].numpy(), [0.3, 0.2, 0.1])


def test_index_labels_and_run_files(make_cloudy_pairs, tmp_path):
    fixture = make_cloudy_pairs(label_form="index", pairs_per_class=6)
    dm = make_dm(fixture, labelled_per_class=3)
    dm.write_run_files(tmp_path / "run")
    assert (tmp_path / "run" / "split.csv").read_text().startswith("id,patch,label,split\n")
    assert (
        json.loads((tmp_path / "run" / "normalisation.json").read_text())["dataset"]
        == "cloudy_pairs"
    )
    assert {r.id: r.label for r in dm.split_rows} == fixture.labels


def test_missing_sar_twin(cloudy_pairs_dataset):
    pair_id = cloudy_pairs_dataset.ids[0]
    cloudy_pairs_dataset.sar_path(pair_id).unlink()
    with pytest.raises(DataError, match="no SAR twin") as info:
        make_dm(cloudy_pairs_dataset).setup()
    assert str(cloudy_pairs_dataset.opt_path(pair_id)) in str(info.value)


def test_missing_opt_twin(cloudy_pairs_dataset):
    pair_id = cloudy_pairs_dataset.ids[0]
    cloudy_pairs_dataset.opt_path(pair_id).unlink()
    with pytest.raises(DataError, match="no optical twin") as info:
        make_dm(cloudy_pairs_dataset).setup()
    assert str(cloudy_pairs_dataset.sar_path(pair_id)) in str(info.value)


def test_bad_mask(cloudy_pairs_dataset, write_geotiff):
    path = cloudy_pairs_dataset.mask_path(cloudy_pairs_dataset.ids[0])
    write_geotiff(path, np.zeros((32, 32), np.uint8))
    with pytest.raises(DataError, match="cloud mask is 32x32") as info:
        make_dm(cloudy_pairs_dataset).setup()
    assert str(path) in str(info.value)
    write_geotiff(path, np.full((64, 64), 7, np.uint16))
    with pytest.raises(DataError, match="must hold 0/1") as info:
        make_dm(cloudy_pairs_dataset).setup()
    assert str(path) in str(info.value)


def mask_rewritten(fixture, write_geotiff, **georef):
    """Rewrite the first pair's mask with the same pixels and other georeferencing."""
    path = fixture.mask_path(fixture.ids[0])
    with rasterio.open(path) as src:
        pixels = src.read()
    return write_geotiff(path, pixels, **georef)


@pytest.mark.parametrize("store", [True, False], ids=["store", "no-store"])
@pytest.mark.parametrize(
    ("georef", "pattern", "absent"),
    [
        ({"crs": "EPSG:32633"}, "CRS EPSG:32633 vs EPSG:32632", "transform"),
        (
            {"transform": Affine(10.0, 0.0, 500000.0 + 640.0, 0.0, -10.0, 5000000.0)},
            r"transform \(10.0, 0.0, 500640.0, .*\) vs \(10.0, 0.0, 500000.0",
            "CRS",
        ),
    ],
    ids=["crs", "transform"],
)
def test_mask_off_its_tiles_grid_is_refused(
    cloudy_pairs_dataset, write_geotiff, georef, pattern, absent, store
):
    path = mask_rewritten(cloudy_pairs_dataset, write_geotiff, **georef)
    before = file_digests(cloudy_pairs_dataset.root)
    with pytest.raises(DataError, match="not co-registered with its optical patch") as info:
        make_dm(cloudy_pairs_dataset, store=store).setup()
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    assert str(cloudy_pairs_dataset.opt_path(cloudy_pairs_dataset.ids[0])) in message
    assert re.search(pattern, message) and absent not in message, message
    assert file_digests(cloudy_pairs_dataset.root) == before


def test_mask_transform_float_noise_is_not_a_difference(cloudy_pairs_dataset, write_geotiff):
    noisy = Affine(10.0 + 1e-9, 0.0, 500000.0 + 1e-7, 0.0, -10.0, 5000000.0)
    mask_rewritten(cloudy_pairs_dataset, write_geotiff, transform=noisy)
    make_dm(cloudy_pairs_dataset).setup()


def test_a_tile_listed_twice_in_labels_csv_is_refused(cloudy_pairs_dataset):
    labels = cloudy_pairs_dataset.labels_path
    lines = labels.read_text().splitlines()
    pair_id = cloudy_pairs_dataset.ids[3]
    (first,) = [n for n, line in enumerate(lines, start=1) if line.startswith(f"{pair_id},")]
    labels.write_text("\n".join([*lines, lines[first - 1]]) + "\n")  # the same row again
    before = file_digests(cloudy_pairs_dataset.root)
    with pytest.raises(DataError) as info:
        make_dm(cloudy_pairs_dataset).setup()
    expected = f"patch {pair_id!r} is listed twice (lines {first} and {len(lines) + 1})"
    assert str(info.value) == f"{labels}: {expected}"
    assert file_digests(cloudy_pairs_dataset.root) == before


def test_missing_folder_and_label(cloudy_pairs_dataset):
    pair_id = cloudy_pairs_dataset.ids[-1]
    lines = cloudy_pairs_dataset.labels_path.read_text().splitlines()
    cloudy_pairs_dataset.labels_path.write_text("\n".join(x for x in lines if pair_id not in x))
    dm = make_dm(cloudy_pairs_dataset)
    dm.setup()  # an image without a label joins the unlabelled pool
    (row,) = [row for row in dm.split_rows if row.id == pair_id]
    assert row.split == "unlabelled" and row.label == -1
    with pytest.raises(DataError, match="folder not found"):
        CloudyPairsDataModule(
            str(cloudy_pairs_dataset.root / "opt"), ["a"], Standardisation.identity()
        ).setup()


def test_real_cloudy_tiles_have_no_clear_twin(cloudy_pairs_dataset):
    got = samples(make_dm(cloudy_pairs_dataset, clear_twins=True))
    assert got and not any(bool(s["clear_available"]) for s in got.values())
    assert all(torch.isnan(s["image_opt_clear"]).all() for s in got.values())
