"""The SEN12MS toolbox's label and split files, as distributed."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from datamodules.errors import DataError
from datamodules.sen12ms_toolbox import (
    CLASS_SCHEMES,
    find_split_files,
    read_holdout_scenes,
    read_probability_labels,
    read_split_list,
    scene_of,
)


def test_schemes_and_scenes() -> None:
    assert len(CLASS_SCHEMES["simplified-igbp"]) == 10
    assert len(CLASS_SCHEMES["dfc2020"]) == 8
    assert not {"Savanna", "Snow/Ice"} & set(CLASS_SCHEMES["dfc2020"])
    assert scene_of("ROIs1158_spring_s2_63_p30") == "ROIs1158_spring/63"


def test_split_lists_as_text_and_pickle(tmp_path: Path) -> None:
    names = ["ROIs1158_spring_s2_1_p30.tif", "ROIs1868_summer_s2_2_p1.tif"]
    (tmp_path / "test_list.txt").write_text("\n".join(names) + "\n")
    (tmp_path / "split_lists_pkl").mkdir()
    (tmp_path / "split_lists_pkl" / "train_list.pkl").write_bytes(pickle.dumps(names[:1]))
    (tmp_path / "SEN12MS_holdOutScenes.txt").write_text(
        "ROIs1158_spring/s1_63\nROIs1970_fall/s1_7\n"
    )
    files = find_split_files(tmp_path)
    assert files.test == tmp_path / "test_list.txt"
    assert files.train == tmp_path / "split_lists_pkl" / "train_list.pkl"
    assert read_split_list(files.test) == ["ROIs1158_spring_s2_1_p30", "ROIs1868_summer_s2_2_p1"]
    assert read_split_list(files.train) == ["ROIs1158_spring_s2_1_p30"]
    assert read_holdout_scenes(files.holdout) == {"ROIs1158_spring/63", "ROIs1970_fall/7"}


def test_bad_split_files_are_one_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="holds neither test_list"):
        find_split_files(tmp_path)
    bad = tmp_path / "SEN12MS_holdOutScenes.txt"
    bad.write_text("ROIs1158_spring/scene63\n")
    with pytest.raises(DataError, match=r"line 1: 'ROIs1158_spring/scene63' is not"):
        read_holdout_scenes(bad)
    listed = tmp_path / "train_list.pkl"
    listed.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(DataError, match="list of S2 file names"):
        read_split_list(listed)


def test_probability_labels_need_17_fractions_a_patch(tmp_path: Path) -> None:
    path = tmp_path / "IGBP_probability_labels.pkl"
    path.write_bytes(pickle.dumps({"a.tif": np.eye(17)[3], "b.tif": list(np.eye(17)[16])}))
    labels = read_probability_labels(path)
    assert set(labels) == {"a", "b"} and labels["b"][16] == 1.0
    path.write_bytes(pickle.dumps({"a.tif": np.ones(10)}))
    with pytest.raises(DataError, match="'a': 10 values; IGBP_probability_labels holds 17"):
        read_probability_labels(path)
    path.write_bytes(pickle.dumps([np.ones(17)]))
    with pytest.raises(DataError, match="must hold a dict"):
        read_probability_labels(path)
