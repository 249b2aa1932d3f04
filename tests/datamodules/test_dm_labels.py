import pickle

import numpy as np
import pytest

from datamodules.errors import DataError
from datamodules.labels import IGBP_TO_SIMPLIFIED, igbp_to_simplified, patch_key, read_labels

CLASSES = ["Barren", "Dense Forests", "Water"]


def test_patch_key_strips_suffix_and_folder():
    assert patch_key("a/b/ROIs1158_spring_s2_1_p30.tif") == "ROIs1158_spring_s2_1_p30"
    assert patch_key(" x.TIFF ") == "x"
    assert patch_key("x") == "x"


def test_names_indices_and_header(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("patch,label\np1.tif,Water\np2,0\np3,dense forests\n")
    assert read_labels(path, CLASSES) == {"p1": 2, "p2": 0, "p3": 1}
    path.write_text("p1,Water\np2,1\n")  # no header
    assert read_labels(path, CLASSES) == {"p1": 2, "p2": 1}


def test_probabilities_argmax(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("patch,p1,p2,p3\na,0.1,0.7,0.2\nb,0.5,0.2,0.3\n")
    assert read_labels(path, CLASSES) == {"a": 1, "b": 0}


def test_igbp_conversion_rule():
    assert len(IGBP_TO_SIMPLIFIED) == 17
    fractions = np.zeros(17)
    fractions[[0, 1, 2]] = 0.15  # forest 0.45 in total
    fractions[11] = 0.3  # croplands (12)
    fractions[13] = 0.25  # croplands (14): 0.55 in total
    summed = igbp_to_simplified(fractions)
    assert summed[5] == pytest.approx(0.55) and summed[0] == pytest.approx(0.45)


def test_igbp_17_columns_need_igbp_names(tmp_path):
    path = tmp_path / "labels.csv"
    row = ",".join(["0"] * 15 + ["0.2", "0.8"])  # water wins
    path.write_text(f"a,{row}\n")
    assert read_labels(path, ["Barren", "Water"]) == {"a": 1}
    with pytest.raises(DataError, match="labels.csv.*simplified-IGBP"):
        read_labels(path, CLASSES)


def test_pickle_form(tmp_path):
    path = tmp_path / "labels.pkl"
    with path.open("wb") as handle:
        pickle.dump({"a.tif": np.array([0.1, 0.2, 0.7]), "b": [0.9, 0.05, 0.05]}, handle)
    assert read_labels(path, CLASSES) == {"a": 2, "b": 0}


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ("a,Desert\n", "outside the class scheme"),
        ("a,7\n", "outside the class scheme"),
        ("a,0.5,0.5\n", "2 probabilities"),
        ("a,Water\na,Barren\n", "twice"),
        ("a\n", "needs 'patch,label'"),
        ("patch,label\n", "no rows"),
    ],
)
def test_bad_labels_name_the_file(tmp_path, content, pattern):
    path = tmp_path / "labels.csv"
    path.write_text(content)
    with pytest.raises(DataError, match=pattern) as info:
        read_labels(path, CLASSES)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("patch,label\na,Water\n\nb,Barren\na.tif,Water\n", "'a' is listed twice (lines 2 and 5)"),
        ("b,Barren\nx/b.tif,2\n", "'b' is listed twice with different labels (lines 1 and 2)"),
        ("a,0,0,1\nc,1,0,0\na,0,0,1\n", "'a' is listed twice (lines 1 and 3)"),
    ],
    ids=["identical-row", "contradicting-row", "identical-probabilities"],
)
def test_a_patch_listed_twice_names_the_file_and_both_lines(tmp_path, content, message):
    path = tmp_path / "labels.csv"
    path.write_text(content)
    with pytest.raises(DataError) as info:
        read_labels(path, CLASSES)
    assert str(info.value) == f"{path}: patch {message}"


def test_a_patch_named_twice_in_a_pickle_is_refused(tmp_path):
    path = tmp_path / "labels.pkl"
    path.write_bytes(pickle.dumps({"a": [0, 0, 1], "s2/a.tif": [0, 0, 1]}))
    with pytest.raises(DataError, match=r"'a' is listed twice \(as 'a' and 's2/a.tif'\)") as info:
        read_labels(path, CLASSES)
    assert str(path) in str(info.value)


def test_missing_labels_file(tmp_path):
    with pytest.raises(DataError, match="labels file not found"):
        read_labels(tmp_path / "nope.csv", CLASSES)
