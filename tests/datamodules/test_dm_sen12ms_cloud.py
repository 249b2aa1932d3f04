import json
import math
import pickle

import numpy as np
import pytest
import torch

from datamodules import CloudConfig, Sen12msCloudDataModule, Standardisation
from datamodules.clouds import NO_CLOUDS
from datamodules.errors import DataError
from datamodules.normalisation import SAR_RATIO_DB_MAX, SAR_RATIO_DB_MIN
from datamodules.splits import read_split_csv

IGBP10 = ["Forest", "Shrubland", "Savanna", "Grassland", "Wetlands", "Croplands",
          "Urban/Built-up", "Snow/Ice", "Barren", "Water"]  # fmt: skip


def make_dm(fixture, standardisation=None, **kwargs):
    kwargs.setdefault("labels_file", fixture.labels_file)
    return Sen12msCloudDataModule(
        root=str(fixture.root),
        classes=fixture.classes,
        standardisation=standardisation or Standardisation.identity(),
        **kwargs,
    )


def sample_by_id(dm, tile_id):
    for subset in ("train", "test"):
        ds = dm.subset_dataset(subset)
        for i, tile in enumerate(ds.tiles):
            if tile.id == tile_id:
                return ds[i]
    raise KeyError(tile_id)


def all_samples(dataset):
    return {dataset[i]["id"]: dataset[i] for i in range(len(dataset))}


def test_class_names_available_after_init_without_touching_disk(tmp_path):
    dm = Sen12msCloudDataModule(
        root=str(tmp_path / "missing"),
        classes=["a", "b"],
        standardisation=Standardisation.identity(),
    )
    assert dm.class_names == ["a", "b"] and dm.num_classes == 2
    assert json.loads(json.dumps(dm.normalisation)) == dm.normalisation


@pytest.mark.parametrize("train_subset", ["labelled", "unlabelled", "train"])
def test_batches_have_keys_dtypes_shapes(sen12ms_dataset, train_subset):
    dm = make_dm(sen12ms_dataset, train_subset=train_subset, batch_size=8)
    dm.setup("fit")
    expected = {"labelled": 60, "unlabelled": 12, "train": 72}[train_subset]
    # 10 % of the patches held out for validation: per class (2 of 20, 2 of 24) when the stage
    # trains on labels, by a label-blind draw (1 of 12) on unlabelled tiles.
    held = {"labelled": 6, "unlabelled": 1, "train": 6}[train_subset]
    assert len(dm.subset_dataset(train_subset)) == expected
    assert len(dm.train_dataloader().dataset) == expected - held
    assert len(dm.val_dataloader().dataset) == held
    if train_subset != "unlabelled":
        val_labels = [t.label for t in dm.val_dataloader().dataset.tiles]
        assert sorted(val_labels) == [0, 0, 1, 1, 2, 2]
    expected -= held
    n = 0
    for batch in dm.train_dataloader():
        assert set(batch) == {"image_opt", "image_sar", "label", "cloud_fraction", "id", "labelled"}
        b = batch["label"].shape[0]
        assert (
            batch["image_opt"].shape == (b, 3, 64, 64) and batch["image_opt"].dtype == torch.float32
        )
        assert (
            batch["image_sar"].shape == (b, 3, 64, 64) and batch["image_sar"].dtype == torch.float32
        )
        assert batch["label"].dtype == torch.int64
        assert (
            batch["cloud_fraction"].shape == (b,) and batch["cloud_fraction"].dtype == torch.float32
        )
        assert isinstance(batch["id"], list) and isinstance(batch["id"][0], str)
        n += b
    assert n == expected  # no drop_last
    for loader in (dm.test_dataloader(), dm.predict_dataloader()):
        assert len(loader.dataset) == 18
    test_ids = {t.id for t in dm.test_dataloader().dataset.tiles}
    assert not test_ids & {t.id for t in dm.val_dataloader().dataset.tiles}


def test_layout_parsing_and_seasons(make_sen12ms):
    seasons = ["ROIs1158_spring", "ROIs1868_summer", "ROIs2017_winter"]
    fixture = make_sen12ms(seasons=seasons, patches_per_class=24, with_lc=True)
    dm = make_dm(fixture, labelled_per_class=5)
    dm.setup()
    ids = {row.id for row in dm.split_rows}
    assert ids == set(fixture.patches)
    dm2 = make_dm(fixture, seasons=["summer", "ROIs2017_winter"], labelled_per_class=5)
    dm2.setup()
    rows = dm2.split_rows
    assert {r.id.split("_s2_")[0] for r in rows} == {"ROIs1868_summer", "ROIs2017_winter"}
    assert len(rows) == 2 * len(fixture.patches) // 3


def test_setup_is_idempotent_and_cheap(sen12ms_dataset, monkeypatch):
    dm = make_dm(sen12ms_dataset)
    dm.setup("fit")
    rows = dm.split_rows
    monkeypatch.setattr(dm, "_scan", lambda: pytest.fail("setup scanned twice"))
    dm.setup("validate")
    dm.setup("test")
    assert dm.split_rows == rows


def test_band_order_is_b04_b03_b02(make_sen12ms):
    fixture = make_sen12ms(constant_bands={2: 1000, 3: 2000, 4: 3000}, patches_per_class=3)
    dm = make_dm(fixture, clouds=NO_CLOUDS, labelled_per_class=1)
    sample = dm.subset_dataset("train")[0]
    opt = sample["image_opt"]
    # R = B04, G = B03, B = B02; the [2, 3, 4] pitfall would give 0.1, 0.2, 0.3
    np.testing.assert_allclose(opt[:, 0, 0].numpy(), [0.3, 0.2, 0.1], rtol=1e-6)
    assert sample["cloud_fraction"].item() == 0.0


def test_sar_scaling_in_samples(sen12ms_dataset, write_geotiff):
    patch = sen12ms_dataset.patches[0]
    vv = np.full((64, 64), -5.0, np.float32)
    vh = np.full((64, 64), -15.0, np.float32)
    vv[0, 0], vh[0, 0] = -30.0, 3.0  # clipped on both ends
    write_geotiff(sen12ms_dataset.s1_paths[patch], np.stack([vv, vh]))
    dm = make_dm(sen12ms_dataset)
    sample = sample_by_id(dm, patch)
    sar = sample["image_sar"].numpy()
    ratio = (10 - SAR_RATIO_DB_MIN) / (SAR_RATIO_DB_MAX - SAR_RATIO_DB_MIN)
    np.testing.assert_allclose(sar[:, 5, 5], [0.8, 0.4, ratio], rtol=1e-6)
    np.testing.assert_allclose(sar[:2, 0, 0], [0.0, 1.0])


def test_standardisation_applied_after_scaling(make_sen12ms):
    fixture = make_sen12ms(constant_bands={2: 1000, 3: 2000, 4: 3000}, patches_per_class=3)
    std = Standardisation(
        opt_mean=[0.3, 0.2, 0.1], opt_std=[0.1, 0.1, 0.1], sar_mean=[0.5] * 3, sar_std=[0.25] * 3
    )
    dm = make_dm(fixture, standardisation=std, clouds=NO_CLOUDS, labelled_per_class=1)
    dm.setup()
    sample = dm.subset_dataset("train")[0]
    np.testing.assert_allclose(sample["image_opt"].numpy(), 0.0, atol=1e-5)
    assert dm.normalisation["standardisation"] == std.to_dict()


def test_clouds_pasted_deterministically_across_datamodules(sen12ms_dataset):
    a = make_dm(sen12ms_dataset, clouds=CloudConfig(cloudy_share=0.5, seed=5))
    b = make_dm(sen12ms_dataset, clouds=CloudConfig(cloudy_share=0.5, seed=5), cache=False)
    da, db = a.subset_dataset("train"), b.subset_dataset("train")
    forward = {da[i]["id"]: da[i] for i in range(len(da))}
    backward = {db[i]["id"]: db[i] for i in reversed(range(len(db)))}
    assert forward.keys() == backward.keys()
    for key, sample in forward.items():
        assert torch.equal(sample["image_opt"], backward[key]["image_opt"])
        assert sample["cloud_fraction"] == backward[key]["cloud_fraction"]
    fractions = torch.stack([s["cloud_fraction"] for s in forward.values()])
    assert (fractions == 0).any() and (fractions > 0).any()
    again = da[0]
    assert torch.equal(again["image_opt"], forward[again["id"]]["image_opt"])  # same every epoch


def test_grid_tiling(make_sen12ms):
    fixture = make_sen12ms(patch_size=128, patches_per_class=10)
    dm = make_dm(fixture, tiling="grid", labelled_per_class=10)
    dm.setup()
    rows = dm.split_rows
    assert len(rows) == 30 * 4
    patch = fixture.patches[0]
    assert {r.id for r in rows if r.patch == patch} == {
        f"{patch}_r{r}c{c}" for r in (0, 1) for c in (0, 1)
    }
    by_patch = {}
    for row in rows:
        by_patch.setdefault(row.patch, set()).add(row.split == "test")
    assert all(len(v) == 1 for v in by_patch.values())  # no leakage between neighbours
    ds = dm.subset_dataset("test")
    sample = ds[0]
    assert sample["image_opt"].shape == (3, 64, 64)
    # tiles are real windows of the patch: compare with a cache-free datamodule
    dm2 = make_dm(fixture, tiling="grid", labelled_per_class=10, cache=False, clouds=NO_CLOUDS)
    dm3 = make_dm(fixture, tiling="grid", labelled_per_class=10, clouds=NO_CLOUDS)
    s2, s3 = all_samples(dm2.subset_dataset("test")), all_samples(dm3.subset_dataset("test"))
    for key in list(s2)[:8]:
        assert torch.equal(s2[key]["image_opt"], s3[key]["image_opt"])
        assert torch.equal(s2[key]["image_sar"], s3[key]["image_sar"])


def test_center_crop_of_larger_patch(make_sen12ms):
    fixture = make_sen12ms(patch_size=96, patches_per_class=3)
    dm = make_dm(fixture, labelled_per_class=1, clouds=NO_CLOUDS)
    sample = dm.subset_dataset("train")[0]
    assert sample["image_opt"].shape == (3, 64, 64) and sample["id"] in fixture.labels


@pytest.mark.parametrize("form", ["name", "index", "probabilities"])
def test_label_forms(make_sen12ms, form):
    fixture = make_sen12ms(label_form=form, patches_per_class=5)
    dm = make_dm(fixture, labelled_per_class=2)
    dm.setup()
    assert {r.id: r.label for r in dm.split_rows} == fixture.labels


@pytest.mark.parametrize("form", ["igbp17"])
def test_igbp_label_forms(make_sen12ms, form):
    fixture = make_sen12ms(classes=IGBP10, label_form=form, patches_per_class=3)
    dm = make_dm(fixture, labelled_per_class=1)
    dm.setup()
    assert {r.id: r.label for r in dm.split_rows} == fixture.labels
    assert dm.num_classes == 10


def test_write_run_files_and_reload_split(sen12ms_dataset, tmp_path):
    dm = make_dm(sen12ms_dataset, split_seed=11)
    run = tmp_path / "run"
    dm.write_run_files(run)
    rows = read_split_csv(run / "split.csv")
    assert rows == dm.split_rows
    assert {r.split for r in rows} == {"labelled", "unlabelled", "test"}
    saved = json.loads((run / "normalisation.json").read_text())
    assert saved == json.loads(json.dumps(dm.normalisation))
    assert saved["sar"]["sar_nan"] == "fill" and saved["optical"]["bands_1based"] == [4, 3, 2]
    reloaded = make_dm(sen12ms_dataset, split_seed=99, split_file=str(run / "split.csv"))
    assert reloaded.split_rows == rows
    other = make_dm(sen12ms_dataset, split_seed=99)
    assert other.split_rows != rows


def test_samples_say_whether_they_are_labelled(sen12ms_dataset):
    dm = make_dm(sen12ms_dataset, clouds=NO_CLOUDS)
    labelled = {row.id for row in dm.split_rows if row.split == "labelled"}
    flags = {s["id"]: bool(s["labelled"]) for s in dm.subset_dataset("train")}
    assert labelled and {i for i, flag in flags.items() if flag} == labelled
    assert not any(bool(s["labelled"]) for s in dm.subset_dataset("test"))


def test_labelled_stream_pairs_train_batches_with_labelled_ones(sen12ms_dataset):
    from lightning.pytorch.utilities import CombinedLoader

    dm = make_dm(
        sen12ms_dataset, clouds=NO_CLOUDS, train_subset="train", labelled_stream=True,
        val_fraction=0.2, batch_size=4,
    )  # fmt: skip
    loader = dm.train_dataloader()
    assert isinstance(loader, CombinedLoader)
    labelled = {row.id for row in dm.split_rows if row.split == "labelled"}
    fit = {s["id"] for s in dm.subset_dataset("fit")}
    held = {s["id"] for s in dm.subset_dataset("val")}
    streamed = {s["id"] for s in dm.subset_dataset("fit_labelled")}
    assert streamed == fit & labelled and not streamed & held and streamed
    iter(loader)
    seen_target: set[str] = set()
    for batch, _, _ in loader:
        assert set(batch) == {"target", "labelled"}
        assert all(bool(flag) for flag in batch["labelled"]["labelled"])
        assert set(batch["labelled"]["id"]) <= streamed
        seen_target.update(batch["target"]["id"])
    assert seen_target == fit  # the longer stream sets the epoch; the labelled one cycles
    assert not isinstance(make_dm(sen12ms_dataset).train_dataloader(), CombinedLoader)


def test_clear_twins_only_for_labelled_and_test_tiles(sen12ms_dataset):
    clouds = CloudConfig(cloudy_share=1.0, seed=3)
    dm = make_dm(sen12ms_dataset, clouds=clouds, clear_twins=True, train_subset="train")
    clear = make_dm(sen12ms_dataset, clouds=NO_CLOUDS)
    allowed = {r.id for r in dm.split_rows if r.split in ("labelled", "test")}
    truth = {
        **all_samples(clear.subset_dataset("train")),
        **all_samples(clear.subset_dataset("test")),
    }
    seen = set()
    for subset in ("train", "test"):
        for tile_id, sample in all_samples(dm.subset_dataset(subset)).items():
            seen.add(tile_id)
            assert bool(sample["clear_available"]) == (tile_id in allowed)
            if tile_id in allowed:  # the tile before pasting; the served input is clouded
                assert torch.equal(sample["image_opt_clear"], truth[tile_id]["image_opt"])
                assert not torch.equal(sample["image_opt"], sample["image_opt_clear"])
            else:  # an unlabelled training tile: never its clear twin
                assert torch.isnan(sample["image_opt_clear"]).all()
    assert allowed < seen
    batch = next(iter(dm.train_dataloader()))  # mixed tiles still collate
    assert batch["image_opt_clear"].shape == batch["image_opt"].shape
    assert "image_opt_clear" not in make_dm(sen12ms_dataset).subset_dataset("test")[0]


def test_same_seed_same_split(sen12ms_dataset):
    assert (
        make_dm(sen12ms_dataset, split_seed=1).split_rows
        == make_dm(sen12ms_dataset, split_seed=1).split_rows
    )


def test_identity_datamodule_gives_standardisation(sen12ms_dataset):
    from datamodules.normalisation import compute_standardisation

    dm = make_dm(sen12ms_dataset, clouds=NO_CLOUDS)
    std = compute_standardisation(dm.subset_dataset("train"))
    dm2 = make_dm(sen12ms_dataset, standardisation=std, clouds=NO_CLOUDS)
    opt = torch.stack([s["image_opt"] for s in dm2.subset_dataset("train")])
    np.testing.assert_allclose(opt.mean(dim=(0, 2, 3)).numpy(), 0.0, atol=1e-4)
    np.testing.assert_allclose(opt.std(dim=(0, 2, 3)).numpy(), 1.0, atol=1e-2)


def test_nan_sar_filled_with_warning(sen12ms_dataset, write_geotiff):
    patch = sen12ms_dataset.patches[3]
    path = sen12ms_dataset.s1_paths[patch]
    sar = np.full((2, 64, 64), -10.0, np.float32)
    sar[0, :2, :2] = np.nan
    sar[1, 5, 5] = np.inf
    write_geotiff(path, sar)
    dm = make_dm(sen12ms_dataset, cache=False)
    with pytest.warns(UserWarning, match=rf"replaced 5 NaN/inf SAR value\(s\).*{path.name}"):
        dm.setup()
    sample = sample_by_id(dm, patch)
    assert torch.isfinite(sample["image_sar"]).all()
    assert sample["image_sar"][0, 0, 0] == 0.0  # NaN -> -25 dB -> 0
    assert sample["image_sar"][1, 5, 5] == 1.0  # +inf -> 0 dB -> 1
    assert math.isfinite(sample["cloud_fraction"].item())


def test_a_labels_pickle_is_refused_with_the_command_that_reads_it(make_sen12ms):
    fixture = make_sen12ms(label_form="pickle", patches_per_class=3)
    with fixture.labels_path.open("rb") as handle:
        assert all(k.endswith(".tif") for k in pickle.load(handle))
    dm = make_dm(fixture, labelled_per_class=1)
    with pytest.raises(DataError, match="read once by `cloudxfer prepare sen12ms --labels"):
        dm.setup()
