"""``unlabelled_pool``: a nested, seeded subset of a stage's unlabelled training tiles.

The unlabelled-pool figure (``make fig-pool``) trains F1 and F2 on pools of several sizes; only
the pool may change with the size: the test split, the labelled draw and the held-out tiles
stay as they are.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from datamodules import Sen12msCloudDataModule, Standardisation
from datamodules.clouds import NO_CLOUDS
from datamodules.errors import DataError
from datamodules.splits import SubsetName

# 3 classes x 12 patches cut into 16 tiles each (grid of 16 px tiles): 576 tiles, enough
# unlabelled ones for several pool sizes from a fixture that writes only 36 patch pairs.
PATCHES_PER_CLASS = 12
TILE = 16


@pytest.fixture
def many_tiles(make_sen12ms: Callable[..., Any]) -> Any:
    """A SEN12MS-layout set of 36 patches (576 grid tiles)."""
    return make_sen12ms(patches_per_class=PATCHES_PER_CLASS)


def _dm(fixture: Any, **kwargs: Any) -> Sen12msCloudDataModule:
    kwargs.setdefault("train_subset", "unlabelled")
    return Sen12msCloudDataModule(
        root=str(fixture.root),
        classes=fixture.classes,
        standardisation=Standardisation.identity(),
        labels_file=fixture.labels_file,
        tile_size=TILE,
        tiling="grid",
        labelled_per_class=20,
        clouds=NO_CLOUDS,
        **kwargs,
    )


def _ids(dm: Sen12msCloudDataModule, subset: SubsetName) -> list[str]:
    return [tile.id for tile in dm.subset_dataset(subset).tiles]


def test_pools_are_nested_and_leave_test_labelled_and_held_out_tiles_alone(many_tiles: Any) -> None:
    full = _dm(many_tiles)
    everything = _ids(full, "fit")
    sizes = [10, 50, 200, len(everything)]
    pools = {n: _dm(many_tiles, unlabelled_pool=n) for n in sizes}
    for n, dm in pools.items():
        fit = _ids(dm, "fit")
        assert len(fit) == n and len(set(fit)) == n
        assert set(fit) <= set(everything)
        assert fit == [i for i in everything if i in set(fit)]  # the loader's order is kept
        # what the size must not touch: the split (test and labelled draw), the held-out tiles
        assert dm.split_rows == full.split_rows
        assert _ids(dm, "val") == _ids(full, "val")
        assert _ids(dm, "test") == _ids(full, "test")
        assert _ids(dm, "labelled") == _ids(full, "labelled")
        assert not set(fit) & set(_ids(dm, "val"))
    for small, large in zip(sizes, sizes[1:], strict=False):
        assert set(_ids(pools[small], "fit")) < set(_ids(pools[large], "fit"))
    assert set(_ids(pools[len(everything)], "fit")) == set(everything)  # all of them: no draw
    # drawn, not the first tiles in order; the same seed draws the same pool, another another
    assert _ids(pools[50], "fit") != everything[:50]
    assert _ids(_dm(many_tiles, unlabelled_pool=50), "fit") == _ids(pools[50], "fit")
    other = _dm(many_tiles, unlabelled_pool=50, split_seed=1)
    assert set(_ids(other, "fit")) != set(_ids(pools[50], "fit"))


def test_train_subset_keeps_every_labelled_fit_tile(many_tiles: Any) -> None:
    full = _dm(many_tiles, train_subset="train")
    labelled = set(_ids(full, "labelled"))
    fit_labelled = [i for i in _ids(full, "fit") if i in labelled]
    dm = _dm(many_tiles, train_subset="train", unlabelled_pool=30)
    fit = _ids(dm, "fit")
    assert [i for i in fit if i in labelled] == fit_labelled and fit_labelled
    assert len([i for i in fit if i not in labelled]) == 30
    assert _ids(dm, "val") == _ids(full, "val")
    assert _ids(dm, "fit_labelled") == _ids(full, "fit_labelled")


def test_a_pool_larger_than_the_unlabelled_tiles_is_refused_with_both_counts(
    many_tiles: Any,
) -> None:
    available = len(_ids(_dm(many_tiles), "fit"))
    held = len(_ids(_dm(many_tiles), "val"))
    dm = _dm(many_tiles, unlabelled_pool=available + 1)
    message = (
        f"unlabelled_pool={available + 1} exceeds the {available} unlabelled training tiles "
        f"of train_subset 'unlabelled' (after the {held} held out"
    )
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        dm.subset_dataset("fit")


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"unlabelled_pool": 0}, "unlabelled_pool must be >= 1"),
        ({"unlabelled_pool": 5, "train_subset": "labelled"}, "train_subset is 'labelled'"),
    ],
)
def test_bad_pool_arguments_are_refused_before_reading(
    tmp_path: Any, kwargs: dict[str, Any], pattern: str
) -> None:
    with pytest.raises(ValueError, match=pattern):
        Sen12msCloudDataModule(
            root=str(tmp_path / "missing"),
            classes=["a", "b"],
            standardisation=Standardisation.identity(),
            **kwargs,
        )
