"""The map's outputs: a tiled, compressed GeoTIFF written row block by row block, and a PNG.

Band 1 holds the class index (uint8, nodata 255) with the colour table, band 2 the confidence
(mean probability of the chosen class, 0-100). Both files are written under a temporary name
in the destination folder and renamed only when complete, so a failed run leaves nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import TracebackType
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import rasterio  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from rasterio.windows import Window  # noqa: E402

from cloudxfer.mapping.windows import FinishedRows  # noqa: E402
from datamodules.runfiles import atomic_open  # noqa: E402

__all__ = ["BLOCK", "NODATA", "MapWriter", "class_colours", "labels_from_sums"]

NODATA = 255
"""Band 1 and band 2 value of pixels no valid window covers (either input's nodata)."""
BLOCK = 256
"""Output GeoTIFF block side; rows are written one full block row at a time."""
PREVIEW_MAX_PX = 1024
"""Longest side of the PNG preview (the map is sub-sampled by an integer step to fit)."""
CONFIDENCE_SCALE = 100
NAMED_COLOURS: dict[str, tuple[int, int, int]] = {
    "Barren": (190, 160, 120),
    "Dense Forests": (20, 110, 40),
    "Forest": (20, 110, 40),
    "Herbaceous": (150, 210, 90),
    "Grassland": (150, 210, 90),
    "Industrial": (150, 80, 170),
    "Residential": (220, 50, 50),
    "Road": (90, 90, 90),
    "Scrub": (160, 170, 60),
    "Shrubland": (160, 170, 60),
    "Sparsely Built": (240, 150, 150),
    "Water": (40, 100, 220),
    "Harbor": (0, 190, 200),
    "Croplands": (240, 220, 60),
}
"""Colours of class names the simulator and SEN12MS use; other classes take tab20's."""


def class_colours(class_names: list[str]) -> list[tuple[int, int, int]]:
    """One RGB colour per class: the named colour, else matplotlib's tab20 by index."""
    tab20 = plt.get_cmap("tab20")
    colours = []
    for i, name in enumerate(class_names):
        rgba = tab20(i % 20)
        fallback = (int(rgba[0] * 255), int(rgba[1] * 255), int(rgba[2] * 255))
        colours.append(NAMED_COLOURS.get(name, fallback))
    return colours


def labels_from_sums(sums: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Class index and confidence (uint8 0-100) from probability sums; NODATA where unseen."""
    seen = weights > 0
    labels = np.where(seen, sums.argmax(axis=0), NODATA).astype(np.uint8)
    mean_top = sums.max(axis=0) / np.where(seen, weights, 1.0)
    confidence = np.rint(np.clip(mean_top, 0.0, 1.0) * CONFIDENCE_SCALE).astype(np.uint8)
    return labels, np.where(seen, confidence, NODATA).astype(np.uint8)


class MapWriter:
    """Write a class map of a scene, rows in order, to a GeoTIFF (and a PNG preview).

    Args:
        out: The GeoTIFF to write.
        width: Scene width.
        height: Scene height.
        crs: The inputs' CRS.
        transform: The inputs' affine transform.
        class_names: Class names (band 1 values index them).
        preview: PNG preview path, or None.
        tags: Extra metadata tags (e.g. the checkpoint, the stride).

    """

    def __init__(
        self,
        out: Path,
        *,
        width: int,
        height: int,
        crs: Any,
        transform: Any,
        class_names: list[str],
        preview: Path | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        if len(class_names) >= NODATA:
            raise ValueError(f"at most {NODATA} classes fit a uint8 map with nodata {NODATA}")
        self.out, self.preview = Path(out), preview
        self.width, self.height = width, height
        self.class_names = list(class_names)
        self.colours = class_colours(self.class_names)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        # beside the output (same file system: the final rename is atomic); not mkstemp, whose
        # private 0600 mode the map would keep
        self.tmp = self.out.parent / f".{self.out.name}.{os.getpid()}.tmp"
        self.dst = rasterio.open(
            self.tmp,
            "w",
            driver="GTiff",
            width=width,
            height=height,
            count=2,
            dtype="uint8",
            nodata=NODATA,
            crs=crs,
            transform=transform,
            tiled=True,
            blockxsize=BLOCK,
            blockysize=BLOCK,
            compress="deflate",
            predictor=2,
        )
        self.dst.write_colormap(1, self._colormap())
        self.dst.set_band_description(1, "class")
        self.dst.set_band_description(2, "confidence (%)")
        named = zip(self.class_names, self.colours, strict=True)
        self.dst.update_tags(
            class_names=json.dumps(self.class_names),
            colours=json.dumps({name: list(colour) for name, colour in named}),
            **{f"class_{i}": name for i, name in enumerate(self.class_names)},
            **(tags or {}),
        )
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._top = 0  # first row not yet written
        self._buffered = 0
        step = max(1, -(-max(width, height) // PREVIEW_MAX_PX))
        self._step = step
        self._preview = np.full((-(-height // step), -(-width // step)), NODATA, np.uint8)
        self.counts = np.zeros(len(self.class_names), np.int64)
        """Pixels per class written so far."""

    def _colormap(self) -> dict[int, tuple[int, int, int, int]]:
        table = {i: (*c, 255) for i, c in enumerate(self.colours)}
        table[NODATA] = (0, 0, 0, 0)
        return table

    def write(self, rows: FinishedRows) -> None:
        """Add finished rows (they must follow the rows already written)."""
        if rows.top != self._top + self._buffered:
            raise ValueError(f"rows from {rows.top} arrive out of order")
        labels, confidence = labels_from_sums(rows.sums, rows.weights)
        self._pending.append((labels, confidence))
        self._buffered += len(labels)
        self.counts += np.bincount(labels[labels != NODATA], minlength=len(self.counts))
        # preview: every step-th row and column (nearest neighbour), kept as rows pass
        first = -rows.top % self._step
        picked = labels[first :: self._step, :: self._step]
        self._preview[-(-rows.top // self._step) :][: len(picked)] = picked
        if self._buffered >= BLOCK:
            self._flush(whole_blocks=True)

    def _flush(self, whole_blocks: bool) -> None:
        if not self._pending:
            return
        labels = np.concatenate([p[0] for p in self._pending])
        confidence = np.concatenate([p[1] for p in self._pending])
        count = (len(labels) // BLOCK) * BLOCK if whole_blocks else len(labels)
        window = Window(0, self._top, self.width, count)  # type: ignore[call-arg]
        self.dst.write(np.stack([labels[:count], confidence[:count]]), window=window)
        self._pending = [(labels[count:], confidence[count:])] if count < len(labels) else []
        self._top += count
        self._buffered -= count

    def commit(self) -> None:
        """Write the last rows, close the file and move it (and the preview) into place."""
        self._flush(whole_blocks=False)
        if self._top != self.height:
            raise ValueError(f"map has {self._top} of {self.height} rows written")
        self.dst.close()
        os.replace(self.tmp, self.out)
        if self.preview is not None:
            self.write_preview(self.preview)

    def abort(self) -> None:
        """Close and remove the unfinished file."""
        if not self.dst.closed:
            self.dst.close()
        self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> MapWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.abort()

    def write_preview(self, path: Path) -> None:
        """Draw the (sub-sampled) map in its class colours with a legend, as a PNG."""
        rgba = np.zeros((*self._preview.shape, 4), np.uint8)
        for i, colour in enumerate(self.colours):
            rgba[self._preview == i] = (*colour, 255)
        height, width = self._preview.shape
        fig_w = 8.0
        fig, ax = plt.subplots(figsize=(fig_w, fig_w * height / width * 0.75 + 0.5), dpi=150)
        ax.imshow(rgba, interpolation="nearest")
        ax.set_axis_off()
        present = [i for i, n in enumerate(self.counts) if n > 0]
        total = max(int(self.counts.sum()), 1)
        handles = [
            Patch(
                color=(
                    self.colours[i][0] / 255,
                    self.colours[i][1] / 255,
                    self.colours[i][2] / 255,
                ),
                label=f"{self.class_names[i]} ({100 * self.counts[i] / total:.0f} %)",
            )
            for i in present
        ]
        ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        fig.tight_layout()
        with atomic_open(path, binary=True) as handle:
            fig.savefig(handle, format="png", bbox_inches="tight")
        plt.close(fig)
