"""Source folders as distributed: torchgeo's parent, macOS debris, odd JPEG modes, roles."""

from __future__ import annotations

from pathlib import Path

import pytest

from datamodules.errors import DataError
from datamodules.source_layout import (
    AID_CLASSES,
    NWPU_CLASSES,
    class_folders,
    resolve_source_root,
    role_of_classes,
)
from datamodules.source_scenes import SourceScenesDataModule
from tests.official_files import write_image_folder


def test_the_published_class_lists() -> None:
    assert len(NWPU_CLASSES) == 45 and len(set(NWPU_CLASSES)) == 45
    assert len(AID_CLASSES) == 30 and len(set(AID_CLASSES)) == 30


def test_roles_by_class_names() -> None:
    assert role_of_classes(["airplane", "beach", "sea_ice"]) == "nwpu"
    assert role_of_classes(["BareLand", "Beach", "RailwayStation"]) == "aid"
    # names both sets share are told apart by their spelling
    assert role_of_classes(["beach", "forest"]) == "nwpu"
    assert role_of_classes(["Beach", "Forest"]) == "aid"
    assert role_of_classes(["airplane", "BareLand"]) is None
    assert role_of_classes(["bare_land", "village"]) is None  # the simulator's: by its record


def test_torchgeo_parent_and_macos_debris_are_read_as_distributed(tmp_path: Path) -> None:
    data = write_image_folder(
        tmp_path / "NWPU-RESISC45", ["airplane", "beach", "forest"], per_class=3, macosx=True
    )
    (tmp_path / "resisc45-train.txt").write_text("airplane/airplane_001.jpg\n")  # torchgeo's
    assert resolve_source_root(tmp_path) == data
    assert class_folders(data) == ["airplane", "beach", "forest"]  # no __MACOSX class
    dm = SourceScenesDataModule(
        root=str(tmp_path), mean=[0.5] * 3, std=[0.25] * 3, image_size=16, store=False
    )
    assert dm.class_names == ["airplane", "beach", "forest"]
    dm.setup()  # decodes every image: the ._x.jpg resource forks are skipped
    ids = [row.id for row in dm.split_rows]
    assert len(ids) == 9 and not any("._" in i or "MACOSX" in i for i in ids)
    # the grayscale and the CMYK JPEG come out as 3-channel RGB, as every other image
    shapes = {tuple(dm.subset_dataset(s)[i]["image_opt"].shape) for s in ("train", "val")
              for i in range(len(dm.subset_dataset(s)))}  # fmt: skip
    assert shapes == {(3, 16, 16)}


@pytest.mark.parametrize("layout", ["one-class", "class-folder", "empty"])
def test_a_root_of_fewer_than_two_classes_is_refused(tmp_path: Path, layout: str) -> None:
    if layout != "empty":
        write_image_folder(tmp_path / "NWPU-RESISC45", ["airplane"], per_class=2)
    root = {
        "one-class": tmp_path / "NWPU-RESISC45",
        "class-folder": tmp_path / "NWPU-RESISC45" / "airplane",
        "empty": tmp_path,
    }[layout]
    with pytest.raises(DataError, match="source root holds (one class|no class) folder") as info:
        SourceScenesDataModule(root=str(root), mean=[0.5] * 3, std=[0.25] * 3)
    assert "\n" not in str(info.value)
