import json

import pytest
import torch

from datamodules import DataError, SourceScenesDataModule

MEAN = [0.5, 0.5, 0.5]
STD = [0.25, 0.25, 0.25]


def make_dm(fixture, **kwargs):
    return SourceScenesDataModule(str(fixture.root), mean=MEAN, std=STD, **kwargs)


def test_classes_from_folders_after_init(image_folder_dataset):
    dm = make_dm(image_folder_dataset)
    assert dm.class_names == sorted(image_folder_dataset.classes)
    assert dm.num_classes == 3


def test_batches_and_split(image_folder_dataset):
    dm = make_dm(image_folder_dataset, image_size=48, batch_size=8, val_fraction=0.2)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert set(batch) == {"image_opt", "label", "id"}
    assert batch["image_opt"].shape[1:] == (3, 48, 48)
    assert batch["image_opt"].dtype == torch.float32 and batch["label"].dtype == torch.int64
    train, val = dm.subset_dataset("train"), dm.subset_dataset("val")
    assert len(train) == 24 and len(val) == 6
    train_ids = {train[i]["id"] for i in range(len(train))}
    val_ids = {val[i]["id"] for i in range(len(val))}
    assert not train_ids & val_ids
    assert all(i.split("/")[0] in dm.class_names for i in val_ids)
    same = make_dm(image_folder_dataset, val_fraction=0.2)
    assert same.split_rows == dm.split_rows


def test_standardisation_values(make_image_folder):
    fixture = make_image_folder(images_per_class=2, size=16)
    dm = make_dm(fixture, image_size=16, augment=False, val_fraction=0.0)
    sample = dm.subset_dataset("train")[0]
    # (x/255 - 0.5) / 0.25 lies in [-2, 2]
    assert sample["image_opt"].min() >= -2.0 and sample["image_opt"].max() <= 2.0


def test_jpeg_and_class_subset(make_image_folder):
    fixture = make_image_folder(fmt="jpg", images_per_class=4)
    dm = make_dm(fixture, classes=["harbor", "farmland"], val_fraction=0.25)
    dm.setup()
    assert dm.class_names == ["harbor", "farmland"]
    rows = dm.split_rows
    assert len(rows) == 8 and {r.split for r in rows} == {"train", "val"}
    assert all(r.label == (0 if r.id.startswith("harbor") else 1) for r in rows)


def test_run_files(image_folder_dataset, tmp_path):
    dm = make_dm(image_folder_dataset)
    dm.write_run_files(tmp_path)
    norm = json.loads((tmp_path / "normalisation.json").read_text())
    assert norm["standardisation"] == {"opt_mean": MEAN, "opt_std": STD}
    assert (tmp_path / "split.csv").read_text().count("\n") == 31


def test_empty_class_folder(image_folder_dataset):
    empty = image_folder_dataset.root / "zzz_empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no image") as info:
        make_dm(image_folder_dataset).setup()
    assert str(empty) in str(info.value)


def test_unreadable_image(image_folder_dataset):
    bad = image_folder_dataset.files[3]
    bad.write_bytes(b"not a png")
    with pytest.raises(DataError, match="unreadable image") as info:
        make_dm(image_folder_dataset).setup()
    assert str(bad) in str(info.value)


def test_missing_root_and_required_stats(tmp_path):
    with pytest.raises(DataError, match="root not found") as info:
        SourceScenesDataModule(str(tmp_path / "nope"), mean=MEAN, std=STD)
    assert str(tmp_path / "nope") in str(info.value)
    with pytest.raises(ValueError, match="mean and std are required"):
        SourceScenesDataModule(str(tmp_path))
    with pytest.raises(ValueError):
        SourceScenesDataModule(str(tmp_path), mean=[0.5], std=STD)
