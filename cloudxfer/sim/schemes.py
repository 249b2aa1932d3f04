"""Class schemes as data: names, paper counts (-> proportions), layouts and typical context.

Counts are the per-class pair counts of the paper's SEN12MS Cloud and Hunan Cloud sets
(METHOD.md, "Class schemes"); the simulator only uses them as proportions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cloudxfer.sim.layouts import LAYOUTS


@dataclass(frozen=True)
class ClassSpec:
    """One scene class: its name, weight, main layout and layouts that intrude from nearby."""

    name: str
    count: int
    layout: str
    context: tuple[str, ...] = ()
    pixel_m: tuple[float, float] = (10.0, 10.0)  # ground sampling range (source images only)


@dataclass(frozen=True)
class Scheme:
    """An ordered set of classes; the order is the class-index order written to classes.txt."""

    name: str
    classes: tuple[ClassSpec, ...]

    @property
    def names(self) -> list[str]:
        """Class names in scheme order."""
        return [c.name for c in self.classes]

    def proportions(self) -> np.ndarray:
        """Class shares from the counts (sum to 1)."""
        counts = np.array([c.count for c in self.classes], dtype=np.float64)
        return counts / counts.sum()

    def allocate(self, total: int, min_per_class: int) -> list[int]:
        """Integer class counts summing to ``total``: proportional, but each >= a floor.

        Classes whose share falls below the floor get the floor; the rest is shared among the
        others in proportion (repeated until stable), with largest-remainder rounding.
        """
        k = len(self.classes)
        floor = min(min_per_class, total // k)
        props = self.proportions()
        fixed = np.zeros(k, dtype=bool)
        while True:
            free = total - floor * int(fixed.sum())
            share = np.where(fixed, 0.0, props / props[~fixed].sum() * free)
            low = ~fixed & (share < floor)
            if not low.any():
                break
            fixed |= low
        base = np.floor(share).astype(int)
        order = np.argsort(-(share - base), kind="stable")
        order = order[~fixed[order]]
        base[order[: free - int(base.sum())]] += 1
        base[fixed] = floor
        return [int(b) for b in base]


_RURAL = ("herbaceous", "agricultural", "forest", "scrub")

SEN12MS_CLOUD = Scheme(
    "sen12ms_cloud",
    (
        ClassSpec("Barren", 2791, "barren", ("scrub", "herbaceous", "road")),
        ClassSpec("Dense Forests", 1300, "forest", ("herbaceous", "scrub", "water", "road")),
        ClassSpec("Herbaceous", 2987, "herbaceous", ("agricultural", "forest", "scrub", "road")),
        ClassSpec("Industrial", 1220, "industrial", ("residential", "herbaceous", "road")),
        ClassSpec("Residential", 1300, "residential", ("industrial", "herbaceous", "forest")),
        ClassSpec("Road", 749, "road", ()),
        ClassSpec("Scrub", 1868, "scrub", ("barren", "herbaceous", "forest")),
        ClassSpec("Sparsely Built", 1000, "sparse_built", ("residential", *_RURAL)),
        ClassSpec("Water", 2000, "water", ("herbaceous", "forest", "barren")),
        ClassSpec("Harbor", 1005, "harbor", ("water", "industrial", "residential")),
    ),
)

HUNAN = Scheme(
    "hunan",
    (
        ClassSpec("Agricultural", 1280, "agricultural", ("village", "forest", "road", "water")),
        ClassSpec("Forest", 2991, "forest", ("transitional_woodland", "agricultural", "road")),
        ClassSpec("Harbor", 1486, "harbor", ("water", "industrial", "residential")),
        ClassSpec("Industrial", 446, "industrial", ("residential", "agricultural", "road")),
        ClassSpec("Residential", 309, "residential", ("industrial", "village", "agricultural")),
        ClassSpec("Road", 772, "road", ()),
        ClassSpec("Scrub", 1448, "scrub", ("transitional_woodland", "agricultural", "barren")),
        ClassSpec("Transitional Woodland", 368, "transitional_woodland", ("forest", "scrub")),
        ClassSpec("Village", 1690, "village", ("agricultural", "forest", "road")),
        ClassSpec("Water", 366, "water", ("agricultural", "forest", "village")),
    ),
)

_AERIAL = (0.5, 3.0)  # m/px of sub-metre to metre aerial imagery (NWPU-RESISC45 role)
_MID = (1.0, 8.0)
_WIDE = (3.0, 12.0)  # large objects (airports, pivot fields) need coarser pixels to fit
_FINE = (0.5, 2.0)  # a bridge deck must stay visible next to the river it crosses
_RIVER = (1.0, 4.0)
SOURCE = Scheme(
    "source",
    (
        ClassSpec("airport", 1, "airport", ("herbaceous",), _WIDE),
        ClassSpec("beach", 1, "beach", (), _MID),
        ClassSpec("bridge", 1, "bridge", (), _FINE),
        ClassSpec("chaparral", 1, "chaparral", ("barren",), _AERIAL),
        ClassSpec("circular_farmland", 1, "circular_farmland", (), _WIDE),
        ClassSpec("dense_residential", 1, "dense_residential", (), _AERIAL),
        ClassSpec("desert", 1, "desert", (), _MID),
        ClassSpec("forest", 1, "forest", (), _AERIAL),
        ClassSpec("freeway", 1, "freeway", (), _AERIAL),
        ClassSpec("harbor", 1, "harbor", ("industrial",), _MID),
        ClassSpec("industrial_area", 1, "industrial", ("residential",), _MID),
        ClassSpec("lake", 1, "lake", (), _WIDE),
        ClassSpec("meadow", 1, "meadow", (), _AERIAL),
        ClassSpec("medium_residential", 1, "residential", (), _AERIAL),
        ClassSpec("parking_lot", 1, "parking_lot", (), (0.3, 1.0)),
        ClassSpec("rectangular_farmland", 1, "rectangular_farmland", (), _MID),
        ClassSpec("river", 1, "river", (), _RIVER),
        ClassSpec("sparse_residential", 1, "sparse_residential", (), _AERIAL),
        # classes of AID / NWPU-RESISC45 kind built from the layouts the target classes use
        # (bare soil, parcels, small water bodies, marsh, shrubs, villages), seen at aerial
        # scale: building blocks the source domain shares with the target at another scale
        ClassSpec("bare_land", 1, "barren", ("scrub",), _MID),
        ClassSpec("farmland", 1, "agricultural", ("road",), _MID),
        ClassSpec("pond", 1, "water", ("herbaceous",), _MID),
        ClassSpec("wetland", 1, "herbaceous", ("water",), _MID),
        ClassSpec("shrubland", 1, "scrub", ("barren",), _MID),
        ClassSpec("village", 1, "village", ("agricultural",), _MID),
    ),
)

_AID = (0.5, 8.0)  # AID's images span 0.5-8 m per pixel
AID_SOURCE = Scheme(
    "aid",
    (
        ClassSpec("Airport", 1, "airport", ("herbaceous",), _WIDE),
        ClassSpec("BareLand", 1, "barren", ("scrub",), _AID),
        ClassSpec("Beach", 1, "beach", (), _AID),
        ClassSpec("Bridge", 1, "bridge", (), _FINE),
        ClassSpec("DenseResidential", 1, "dense_residential", (), _AID),
        ClassSpec("Desert", 1, "desert", (), _AID),
        ClassSpec("Farmland", 1, "agricultural", ("road",), _AID),
        ClassSpec("Forest", 1, "forest", (), _AID),
        ClassSpec("Industrial", 1, "industrial", ("residential",), _AID),
        ClassSpec("Meadow", 1, "meadow", (), _AID),
        ClassSpec("MediumResidential", 1, "residential", (), _AID),
        ClassSpec("Parking", 1, "parking_lot", (), (0.5, 1.5)),
        ClassSpec("Pond", 1, "water", ("herbaceous",), _AID),
        ClassSpec("Port", 1, "harbor", ("industrial",), _AID),
        ClassSpec("River", 1, "river", (), _RIVER),
        ClassSpec("SparseResidential", 1, "sparse_residential", (), _AID),
        ClassSpec("Viaduct", 1, "freeway", (), _AID),
    ),
)
"""The AID role (Table II): another class set (AID's names, 17 of its 30 classes that the
layouts can draw) at AID's 0.5-8 m, beside the NWPU-RESISC45 role of ``SOURCE``."""

SOURCE_ROLES: dict[str, Scheme] = {"nwpu": SOURCE, "aid": AID_SOURCE}
"""Source sets selectable with ``synth source --role``."""

SCHEMES: dict[str, Scheme] = {s.name: s for s in (SEN12MS_CLOUD, HUNAN)}
"""Target schemes selectable with ``synth target --scheme``."""

for _scheme in (SEN12MS_CLOUD, HUNAN, SOURCE, AID_SOURCE):
    for _c in _scheme.classes:
        assert _c.layout in LAYOUTS and all(x in LAYOUTS for x in _c.context), _c
