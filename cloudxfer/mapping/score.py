"""Overall accuracy of a class map against a truth raster, read block by block."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio

from cloudxfer.mapping.reader import check_twins, open_raster
from cloudxfer.mapping.writer import NODATA
from datamodules.errors import data_error

__all__ = ["MapScore", "score_map"]


@dataclass(frozen=True)
class MapScore:
    """Pixels scored (valid in both rasters) and how many of them agree."""

    pixels: int
    correct: int

    @property
    def oa(self) -> float:
        """Overall accuracy in [0, 1] (NaN when no pixel was scored)."""
        return self.correct / self.pixels if self.pixels else float("nan")


def _class_names(ds: rasterio.io.DatasetReader, path: Path) -> list[str]:
    raw = ds.tags().get("class_names")
    if raw is None:
        raise data_error(path, "raster carries no class_names tag (cloudxfer map / synth scene)")
    return list(json.loads(raw))


def score_map(map_path: Path, truth_path: Path) -> MapScore:
    """Compare band 1 of a map with band 1 of a truth raster of the same grid and classes.

    Classes are matched by name (the truth's ``class_names`` tag), so the two rasters may
    number them differently; pixels that are nodata (255) in either are not scored.

    Raises:
        DataError: Missing files, different grids, or truth classes the map does not know.

    """
    map_path, truth_path = Path(map_path), Path(truth_path)
    with open_raster(map_path, "map") as pred, open_raster(truth_path, "truth") as truth:
        check_twins([map_path, truth_path], [pred, truth])
        names = _class_names(pred, map_path)
        truth_names = _class_names(truth, truth_path)
        unknown = sorted(set(truth_names) - set(names))
        if unknown:
            raise data_error(truth_path, f"truth classes {unknown} are not classes of the map")
        lookup = np.full(256, NODATA, np.uint8)
        lookup[: len(truth_names)] = [names.index(n) for n in truth_names]
        pixels = correct = 0
        for _, window in pred.block_windows(1):
            p = pred.read(1, window=window)
            t = lookup[truth.read(1, window=window)]
            valid = (p != NODATA) & (t != NODATA)
            pixels += int(valid.sum())
            correct += int((p[valid] == t[valid]).sum())
    return MapScore(pixels, correct)
