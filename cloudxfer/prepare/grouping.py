"""Scenes as units: a scene-grouped random split, a subset of whole scenes, footprint groups.

SEN12MS patches of one scene overlap their neighbours by half, so every choice that separates
patches (test from train, a subset) takes whole scenes; real cloudy pairs have no scene in
their names, so their groups are the connected sets of overlapping footprints.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

from datamodules.footprints import Footprint, overlapping_pairs

__all__ = ["footprint_groups", "random_group_split", "subset_groups"]


def _shuffled(groups: Sequence[str], seed: int, stream: int) -> list[str]:
    order = sorted(groups)
    rng = np.random.default_rng([seed, stream])
    return [order[i] for i in rng.permutation(len(order))]


def random_group_split(
    patch_group: Mapping[str, str], test_fraction: float, seed: int
) -> dict[str, str]:
    """Draw whole groups into the test split until it holds ``test_fraction`` of the patches.

    Args:
        patch_group: Patch -> group (scene).
        test_fraction: Wanted share of test patches, in (0, 1).
        seed: Seed of the group order.

    Returns:
        Patch -> ``train`` or ``test``; at least one group stays in train.

    """
    sizes = Counter(patch_group.values())
    wanted = round(test_fraction * len(patch_group))
    test: set[str] = set()
    count = 0
    for group in _shuffled(list(sizes), seed, 7):
        if count >= wanted or len(test) + 1 >= len(sizes):
            break
        test.add(group)
        count += sizes[group]
    return {p: "test" if g in test else "train" for p, g in patch_group.items()}


def subset_groups(
    patch_group: Mapping[str, str],
    max_pairs: int,
    seed: int,
    split_of: Mapping[str, str] | None = None,
) -> set[str]:
    """Choose whole groups, in a seeded order, holding at most ``max_pairs`` patches.

    With ``split_of`` each split keeps its share of the patches (its quota filled on its
    own); a group too large for what is left of a quota is passed over for smaller ones. A
    split whose quota no group fits keeps its smallest group (so the total may pass
    ``max_pairs`` by less than a group).

    Returns:
        The chosen patches.

    """
    splits = sorted(set(split_of.values())) if split_of is not None else [""]
    chosen: set[str] = set()
    for split in splits:
        members = [p for p in patch_group if split_of is None or split_of[p] == split]
        quota = round(max_pairs * len(members) / len(patch_group))
        sizes = Counter(patch_group[p] for p in members)
        taken: set[str] = set()
        count = 0
        for group in _shuffled(list(sizes), seed, 11):
            if count + sizes[group] <= quota:
                taken.add(group)
                count += sizes[group]
        if not taken and sizes:
            taken.add(min(sizes, key=lambda g: (sizes[g], g)))
        chosen.update(p for p in members if patch_group[p] in taken)
    return chosen


def footprint_groups(names: Sequence[str], boxes: Sequence[Footprint]) -> dict[str, str]:
    """Group patches whose footprints overlap (transitively); a group is named by its first.

    Args:
        names: Patch names, sorted.
        boxes: Their footprints, in the same order.

    Returns:
        Patch -> group name (the group's smallest patch name).

    """
    parent = list(range(len(names)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in overlapping_pairs(boxes, boxes):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {name: names[root(i)] for i, name in enumerate(names)}
