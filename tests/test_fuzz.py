"""Randomly damaged inputs end in our own error naming the file, never a library traceback.

GeoTIFF bytes, labels files and checkpoints are truncated or overwritten at random places; a
damaged input either still reads (a flipped pixel is data) or raises ``DataError`` /
``CheckpointError`` with the file's path.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudxfer.checkpoints import METADATA_KEY, CheckpointError, read_metadata
from datamodules import DataError, Sen12msCloudDataModule, Standardisation

FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,  # the same examples every run: a failure reproduces
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

damage = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0.0, 0.99), st.binary(max_size=0)),
    st.tuples(st.just("overwrite"), st.floats(0.0, 0.99), st.binary(min_size=1, max_size=64)),
)


def _damaged(original: bytes, how: tuple[str, float, bytes]) -> bytes:
    kind, where, junk = how
    at = int(where * len(original))
    if kind == "truncate":
        return original[:at]
    return original[:at] + junk + original[at + len(junk) :]


def _setup(fixture: object) -> None:
    Sen12msCloudDataModule(
        root=str(fixture.root),  # type: ignore[attr-defined]
        classes=fixture.classes,  # type: ignore[attr-defined]
        standardisation=Standardisation.identity(),
        labels_file=fixture.labels_file,  # type: ignore[attr-defined]
        store=False,
        cache=False,
    ).setup()


def _setup_with_damaged(fixture: object, path: Path, how: tuple[str, float, bytes]) -> None:
    """Damage one file, set the data up (ours or no error), then restore the file."""
    original = path.read_bytes()
    try:
        path.write_bytes(_damaged(original, how))
        try:
            _setup(fixture)
        except DataError as err:
            assert str(path) in str(err)
    finally:
        path.write_bytes(original)


@pytest.fixture
def small_set(make_sen12ms):  # type: ignore[no-untyped-def]
    return make_sen12ms(patches_per_class=26)


@FUZZ
@given(how=damage, which=st.integers(0, 10_000), modality=st.sampled_from(["s1", "s2"]))
def test_damaged_geotiff_is_our_error(small_set, how, which, modality) -> None:  # type: ignore[no-untyped-def]
    paths = small_set.s2_paths if modality == "s2" else small_set.s1_paths
    _setup_with_damaged(small_set, sorted(paths.values())[which % len(paths)], how)


@FUZZ
@given(how=damage)
def test_damaged_labels_file_is_our_error(small_set, how) -> None:  # type: ignore[no-untyped-def]
    _setup_with_damaged(small_set, small_set.labels_path, how)


@FUZZ
@given(how=damage)
def test_damaged_checkpoint_is_our_error(tmp_path: Path, how) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "stage.ckpt"
    state = {"state_dict": {"w": torch.zeros(3)}, METADATA_KEY: {"stage": "target"}}
    torch.save(state, path)
    path.write_bytes(_damaged(path.read_bytes(), how))
    try:
        assert read_metadata(path)["stage"] == "target"
    except CheckpointError as err:
        assert str(path) in str(err)
