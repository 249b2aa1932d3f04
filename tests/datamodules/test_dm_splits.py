import pytest

from datamodules.errors import DataError
from datamodules.splits import (
    SplitRow,
    TileRef,
    holdout_ids,
    make_split,
    read_split_csv,
    subset_ids,
    write_split_csv,
)

CLASSES = ["a", "b", "c"]


def tiles(per_class=30, tiles_per_patch=1):
    out = []
    for label in range(len(CLASSES)):
        for p in range(per_class):
            patch = f"{CLASSES[label]}_{p}"
            for t in range(tiles_per_patch):
                tile = patch if tiles_per_patch == 1 else f"{patch}_r0c{t}"
                out.append(TileRef(tile, patch, label))
    return out


def test_80_20_by_patch_and_20_labelled_per_class():
    rows = make_split(tiles(), CLASSES, test_fraction=0.2, labelled_per_class=20, seed=1)
    assert len(rows) == 90
    for label in range(3):
        mine = [r for r in rows if r.label == label]
        assert sum(r.split == "test" for r in mine) == 6
        assert sum(r.split == "labelled" for r in mine) == 20
        assert sum(r.split == "unlabelled" for r in mine) == 4
    ids = {name: set(subset_ids(rows, name)) for name in ("labelled", "unlabelled", "test")}
    assert not ids["labelled"] & ids["unlabelled"]
    assert not ids["labelled"] & ids["test"]
    assert not ids["unlabelled"] & ids["test"]
    assert set(subset_ids(rows, "train")) == ids["labelled"] | ids["unlabelled"]


def test_same_seed_same_split_other_seed_differs():
    a = make_split(tiles(), CLASSES, seed=3)
    b = make_split(tiles(), CLASSES, seed=3)
    c = make_split(tiles(), CLASSES, seed=4)
    assert a == b
    assert a != c


def test_fixed_test_seed_keeps_the_test_tiles_and_redraws_the_labelled_subset():
    def ids(rows, split):
        return {r.id for r in rows if r.split == split}

    base = make_split(tiles(), CLASSES, seed=3)
    assert make_split(tiles(), CLASSES, seed=3, test_seed=3) == base  # the one-seed split
    runs = [make_split(tiles(), CLASSES, seed=s, test_seed=0) for s in (0, 1, 2)]
    assert runs[0] == make_split(tiles(), CLASSES, seed=0)
    assert ids(runs[0], "test") == ids(runs[1], "test") == ids(runs[2], "test")
    labelled = [ids(r, "labelled") for r in runs]
    assert labelled[0] != labelled[1] != labelled[2] != labelled[0]
    assert all(len(x) == 60 for x in labelled)
    assert runs[1] == make_split(tiles(), CLASSES, seed=1, test_seed=0)  # seeded


def test_tiles_of_a_patch_share_the_split():
    rows = make_split(tiles(per_class=10, tiles_per_patch=4), CLASSES, labelled_per_class=5)
    by_patch = {}
    for row in rows:
        by_patch.setdefault(row.patch, set()).add("test" if row.split == "test" else "train")
    assert all(len(s) == 1 for s in by_patch.values())
    assert sum(r.split == "test" for r in rows) == 3 * 2 * 4


def test_too_small_class_names_class_and_labels_file():
    small = [t for t in tiles() if not (t.label == 1 and int(t.patch.split("_")[1]) >= 15)]
    with pytest.raises(DataError, match=r"my/labels\.csv.*empty class in the labelled subset.*'b'"):
        make_split(small, CLASSES, labelled_per_class=20, labels_file="my/labels.csv")


def test_class_without_tiles_is_an_error():
    with pytest.raises(DataError, match="'d'"):
        make_split(tiles(), [*CLASSES, "d"], labelled_per_class=1)


def test_round_trip(tmp_path):
    rows = make_split(tiles(), CLASSES, seed=0)
    path = tmp_path / "run" / "split.csv"
    write_split_csv(rows, path)
    assert path.read_text().splitlines()[0] == "id,patch,label,split"
    assert read_split_csv(path) == rows
    assert not list(path.parent.glob("*.tmp"))


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("id,label\n", "header"),
        ("id,patch,label,split\na,a,0,train\n", "split 'train'"),
        ("id,patch,label,split\na,a,x,test\n", "not an integer"),
        (
            "id,patch,label,split\na,a,0,test\n\na,a,0,test\n",
            r"'a' is listed twice \(lines 2 and 4\)",
        ),
    ],
)
def test_bad_split_file(tmp_path, text, pattern):
    path = tmp_path / "split.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=pattern) as info:
        read_split_csv(path)
    assert str(path) in str(info.value)


def train_rows(per_class=30, tiles_per_patch=1):
    return [
        SplitRow(t.id, t.patch, t.label, "unlabelled") for t in tiles(per_class, tiles_per_patch)
    ]


def test_holdout_keeps_whole_patches_and_class_shares():
    rows = train_rows(per_class=20, tiles_per_patch=4)
    held = holdout_ids(rows, 0.1, seed=3, stratify=True)
    patches = {r.patch for r in rows if r.id in held}
    assert {r.id for r in rows if r.patch in patches} == held  # every tile of a held-out patch
    assert sorted(p[0] for p in patches) == ["a", "a", "b", "b", "c", "c"]
    assert holdout_ids(rows, 0.1, seed=3, stratify=True) == held
    assert holdout_ids(rows, 0.1, seed=4, stratify=True) != held
    assert holdout_ids(rows, 0.0, seed=3, stratify=True) == set()


def test_stratified_holdout_takes_one_patch_of_a_small_class():
    held = holdout_ids(train_rows(per_class=3), 0.1, seed=0, stratify=True)
    assert sorted(h[0] for h in held) == ["a", "b", "c"]


def test_unstratified_holdout_ignores_labels():
    rows = train_rows(per_class=20)
    relabelled = [SplitRow(r.id, r.patch, (r.label + 1) % 3, r.split) for r in rows]
    held = holdout_ids(rows, 0.2, seed=5, stratify=False)
    assert len(held) == 12
    assert holdout_ids(relabelled, 0.2, seed=5, stratify=False) == held


@pytest.mark.parametrize("fraction", [-0.1, 1.0])
def test_holdout_fraction_is_checked(fraction):
    with pytest.raises(ValueError, match="val_fraction"):
        holdout_ids(train_rows(), fraction, seed=0, stratify=True)
