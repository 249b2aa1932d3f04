import pickle

import numpy as np
import pytest

from datamodules.errors import DataError
from datamodules.labels import IGBP_TO_SIMPLIFIED, igbp_to_simplified, patch_key, read_labels
from datamodules.sen12ms_toolbox import read_probability_labels

CLASSES = ["Barren", "Dense Forests", "Water"]


def test_patch_key_strips_suffix_and_folder():
    assert patch_key("a/b/ROIs1158_spring_s2_1_p30.tif") == "ROIs1158_spring_s2_1_p30"
    assert patch_key(" x.TIFF ") == "x"
    assert patch_key("x") == "x"


def test_names_indices_and_header(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("patch,label\np1.tif,Water\np3,dense forests\n")
    assert read_labels(path, CLASSES) == {"p1": 2, "p3": 1}
    path.write_text("p1,Water\np2,Barren\n")  # no header
    assert read_labels(path, CLASSES) == {"p1": 2, "p2": 0}


def test_class_numbers_state_their_base_or_are_refused(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("patch,index0\np1,0\np2,2\n")
    assert read_labels(path, CLASSES) == {"p1": 0, "p2": 2}
    path.write_text("patch,index1\np1,1\np2,3\n")  # 1-based: the same classes
    assert read_labels(path, CLASSES) == {"p1": 0, "p2": 2}
    for text in ("patch,label\np1,1\n", "p1,Water\np2,1\n"):  # numbers of unstated base
        path.write_text(text)
        with pytest.raises(DataError) as info:
            read_labels(path, CLASSES)
        message = str(info.value)
        assert message.startswith(f"{path}: patch 'p") and "index0 (0-based)" in message
        assert "index1 (1-based)" in message and "\n" not in message
    path.write_text("patch,index1\np1,0\n")
    with pytest.raises(DataError, match=r"label index 0 is outside the class scheme \(1\.\.3"):
        read_labels(path, CLASSES)
    path.write_text("patch,index0\np1,Water\n")
    with pytest.raises(DataError, match="'Water' is not a class number"):
        read_labels(path, CLASSES)


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


def test_a_pickle_is_left_to_prepare(tmp_path):
    # only `cloudxfer prepare` unpickles (restricted, once); a run reads its data file
    path = tmp_path / "labels.pkl"
    with path.open("wb") as handle:
        pickle.dump({"a.tif": np.array([0.1, 0.2, 0.7]), "b": [0.9, 0.05, 0.05]}, handle)
    with pytest.raises(
        DataError,
        match=r"labels\.pkl: a labels pickle is read once by "
        r"`cloudxfer prepare sen12ms --labels labels\.pkl`",
    ):
        read_labels(path, CLASSES)


def test_a_row_of_an_absent_patch_without_a_class_is_ignored(tmp_path):
    # DFC2020's 8 classes leave out Savanna: a pure-savanna row matters only for a patch on disk
    path = tmp_path / "labels.csv"
    savanna = ",".join("1" if i == 7 else "0" for i in range(17))
    water = ",".join("1" if i == 16 else "0" for i in range(17))
    path.write_text(f"absent,{savanna}\nhere,{water}\n")
    assert read_labels(path, ["Forest", "Water"], present={"here"}) == {"here": 1}
    with pytest.raises(DataError, match="'absent': no configured class has a non-zero"):
        read_labels(path, ["Forest", "Water"], present={"here", "absent"})


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ("a,Desert\n", "outside the class scheme"),
        ("a,7\n", "does not say whether numbers start at 0 or 1"),
        ("patch,index0\na,7\n", "outside the class scheme"),
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
        ("b,Barren\nx/b.tif,Water\n", "'b' is listed twice with different labels (lines 1 and 2)"),
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
    path.write_bytes(pickle.dumps({"a": np.eye(17)[0], "s2/a.tif": np.eye(17)[0]}))
    with pytest.raises(DataError, match=r"'a' is listed twice \(as 'a' and 's2/a.tif'\)") as info:
        read_probability_labels(path)
    assert str(path) in str(info.value)


def test_missing_labels_file(tmp_path):
    with pytest.raises(DataError, match="labels file not found"):
        read_labels(tmp_path / "nope.csv", CLASSES)
