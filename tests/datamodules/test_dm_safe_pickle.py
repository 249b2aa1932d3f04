"""The restricted unpickler reads the toolbox's pickles and nothing that could run code."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from datamodules.errors import DataError
from datamodules.safe_pickle import load_pickle


class _Hostile:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (str(self.target),))


def test_numpy_arrays_written_under_numpy_1_and_2_load(tmp_path: Path) -> None:
    labels = {"ROIs1158_spring_s2_1_p30.tif": np.linspace(0, 1, 17)}
    for protocol in (2, 3, 4, 5):
        data = pickle.dumps(labels, protocol=protocol)
        variants = [data]
        if protocol < 4:  # text globals: numpy 1.x wrote these module names
            variants.append(data.replace(b"numpy._core", b"numpy.core"))
            assert b"numpy.core.multiarray\n_reconstruct" in variants[-1]
        for variant in variants:
            path = tmp_path / "labels.pkl"
            path.write_bytes(variant)
            loaded = load_pickle(path)
            np.testing.assert_array_equal(
                loaded["ROIs1158_spring_s2_1_p30.tif"], np.linspace(0, 1, 17)
            )
    path.write_bytes(pickle.dumps(["a.tif", "b.tif"]))
    assert load_pickle(path) == ["a.tif", "b.tif"]


def test_a_pickle_naming_anything_else_is_refused_before_it_runs(tmp_path: Path) -> None:
    target = tmp_path / "created_by_the_pickle"
    path = tmp_path / "labels.pkl"
    path.write_bytes(pickle.dumps({"a.tif": _Hostile(target)}))
    with pytest.raises(DataError) as info:
        load_pickle(path)
    assert str(info.value).startswith(f"{path}: cannot read the pickle: it names posix.mkdir")
    assert not target.exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (pickle.dumps({"a": np.arange(17.0)})[:-9], "cannot read the pickle"),
        (pickle.dumps({"a": np.array([object()] * 2, dtype=object)}), "names"),
        (b"not a pickle at all", "cannot read the pickle"),
    ],
    ids=["truncated", "object-array", "garbage"],
)
def test_damaged_pickles_are_one_error_naming_the_file(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "labels.pkl"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        load_pickle(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)
