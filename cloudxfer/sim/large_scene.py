"""A large simulated S1/S2 scene pair with a known class layout (``synth scene``), to map.

The class layout is a patchwork of regions made of 64 x 64 cells (one class per cell, the
argmax of one smooth random field per class), written as the truth raster. Each cell is one
target patch rendered by the simulator (:func:`~cloudxfer.sim.generate.render_target`) with
its class's layouts, under scene-wide clouds: one smooth density field over the whole scene,
thresholded at the wanted cover, so cloud fields (and some fully clouded cells) span cells.
Everything is written in block rows of 256 px, so memory does not follow the scene's size.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.transform import Affine
from rasterio.windows import Window

from cloudxfer.sim.clouds import (
    CLOUD_BETA,
    CLOUD_BRIGHTNESS,
    CLOUD_HEIGHT_M,
    CLOUD_TOP_B10_SCALE,
    EDGE_SD,
    SHADOW_DEPTH,
    THICK_OPACITY,
    CloudCover,
    _smoothstep,
)
from cloudxfer.sim.generate import PIXEL_M, PatchPlan, _rng, render_target
from cloudxfer.sim.scene import draw_scene
from cloudxfer.sim.schemes import SCHEMES
from cloudxfer.sim.textures import fractal_field
from cloudxfer.sim.writers import GEOTIFF_BLOCK, atomic_output_dir, open_geotiff, write_lines

__all__ = ["CELL", "SceneFiles", "class_layout", "generate_scene"]

CELL = 64
"""Side of one class cell (a target patch) in pixels."""
REGION_CELLS = 6.0
"""Largest class regions, in cells (about 4 km): the scale cut of the class fields."""
CLOUD_CELL = 8
"""The scene-wide cloud field is drawn at 1/8 resolution and interpolated (smooth anyway)."""
DEFAULT_CLOUD_COVER = 0.3
TRUTH_NODATA = 255
# independent random streams of the scene generator (beside generate.py's 0..4)
_LAYOUT, _CLOUDS, _TILES, _CONDITIONS = 20, 21, 22, 23


@dataclass(frozen=True)
class SceneFiles:
    """What ``synth scene`` wrote (paths inside the output folder) and its class cells."""

    s2: str = "s2.tif"
    s1: str = "s1.tif"
    clouds: str = "clouds.tif"
    truth: str = "truth.tif"
    classes: str = "classes.txt"
    info: str = "scene.json"


def class_layout(rows: int, cols: int, classes: int, rng: np.random.Generator) -> np.ndarray:
    """Class index per cell (rows, cols): argmax of one smooth random field per class."""
    scale = min(REGION_CELLS, max(rows, cols))
    fields = np.stack(
        [fractal_field((rows, cols), rng, beta=3.0, max_scale_px=scale) for _ in range(classes)]
    )
    return fields.argmax(axis=0).astype(np.uint8)


def _bilinear(field: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Sample a field drawn at 1/CLOUD_CELL resolution at scene pixel centres (ys, xs)."""
    v = np.clip((ys + 0.5) / CLOUD_CELL - 0.5, 0, field.shape[0] - 1)
    u = np.clip((xs + 0.5) / CLOUD_CELL - 0.5, 0, field.shape[1] - 1)
    v0 = np.minimum(v.astype(int), field.shape[0] - 2)
    u0 = np.minimum(u.astype(int), field.shape[1] - 2)
    fv, fu = (v - v0)[:, None], (u - u0)[None, :]
    a, b = field[np.ix_(v0, u0)], field[np.ix_(v0, u0 + 1)]
    c, d = field[np.ix_(v0 + 1, u0)], field[np.ix_(v0 + 1, u0 + 1)]
    return ((a * (1 - fu) + b * fu) * (1 - fv) + (c * (1 - fu) + d * fu) * fv).astype(np.float32)


@dataclass(frozen=True)
class SceneClouds:
    """Scene-wide thick cloud: a low-resolution density field, its threshold and looks."""

    field: np.ndarray
    threshold: float
    opacity: float
    brightness: float
    b10_scale: float
    shadow_depth: float
    shadow_shift: tuple[float, float]  # (dy, dx) in pixels, from cloud height and the sun

    def cover(self, top: int, left: int, size: int) -> CloudCover:
        """Return the simulator's cloud layers of one cell, cut from the scene-wide field."""
        ys, xs = np.arange(top, top + size), np.arange(left, left + size)
        field = _bilinear(self.field, ys, xs)
        thick = self.opacity * _smoothstep((field - self.threshold) / EDGE_SD + 0.5)
        dy, dx = self.shadow_shift
        caster = _bilinear(self.field, ys - dy, xs - dx)  # the cloud whose shadow falls here
        shadow = self.opacity * _smoothstep((caster - self.threshold) / EDGE_SD + 0.5)
        zeros = np.zeros((size, size), np.float32)
        return CloudCover(
            thick=thick.astype(np.float32),
            thin=zeros,
            illumination=(1.0 - self.shadow_depth * shadow).astype(np.float32),
            mask=(field > self.threshold).astype(np.uint8),
            brightness=self.brightness,
            b10_scale=self.b10_scale,
        )


def draw_scene_clouds(
    height: int, width: int, cover: float, rng: np.random.Generator, zenith: float, azimuth: float
) -> SceneClouds:
    """Draw the scene's cloud field with ``cover`` of its area under cloud."""
    shape = (math.ceil(height / CLOUD_CELL) + 1, math.ceil(width / CLOUD_CELL) + 1)
    field = fractal_field(shape, rng, beta=CLOUD_BETA, min_scale_px=2.0)
    threshold = float(np.quantile(field, 1.0 - cover)) if cover > 0 else np.inf
    length = rng.uniform(*CLOUD_HEIGHT_M) * np.tan(np.radians(zenith)) / PIXEL_M
    az = np.radians(azimuth)
    return SceneClouds(
        field=field,
        threshold=threshold,
        opacity=float(rng.uniform(*THICK_OPACITY)),
        brightness=float(rng.uniform(*CLOUD_BRIGHTNESS)),
        b10_scale=float(rng.uniform(*CLOUD_TOP_B10_SCALE)),
        shadow_depth=float(rng.uniform(*SHADOW_DEPTH)),
        shadow_shift=(float(length * np.cos(az)), float(-length * np.sin(az))),
    )


def generate_scene(
    out: Path,
    size: int = 2048,
    seed: int = 0,
    scheme: str = "sen12ms_cloud",
    cloud_cover: float = DEFAULT_CLOUD_COVER,
    overwrite: bool = False,
) -> dict[str, int]:
    """Write a ``size`` x ``size`` scene pair, its cloud mask and truth; pixels per class."""
    if size < CELL:
        raise ValueError(f"--size must be >= {CELL}, got {size}")
    if not 0.0 <= cloud_cover < 1.0:
        raise ValueError(f"--cloud-cover must lie in [0, 1), got {cloud_cover}")
    sch = SCHEMES[scheme]
    rows, cols = math.ceil(size / CELL), math.ceil(size / CELL)
    layout = class_layout(rows, cols, len(sch.classes), _rng(seed, _LAYOUT))
    scene = draw_scene(0, _rng(seed, _CONDITIONS), hunan=scheme == "hunan")
    clouds = draw_scene_clouds(
        size, size, cloud_cover, _rng(seed, _CLOUDS), scene.sun_zenith_deg, scene.sun_azimuth_deg
    )
    tile_seed = int(_rng(seed, _TILES).integers(2**31))  # patches unlike any `synth target` set
    transform = Affine(PIXEL_M, 0.0, scene.origin[0], 0.0, -PIXEL_M, scene.origin[1])
    files = SceneFiles()
    counts = np.zeros(len(sch.classes), np.int64)
    with atomic_output_dir(Path(out), overwrite) as tmp:
        specs = {
            "s2": (13, "uint16", None),
            "s1": (2, "float32", None),
            "clouds": (1, "uint8", None),
            "truth": (1, "uint8", TRUTH_NODATA),
        }
        outputs = {
            name: open_geotiff(
                tmp / getattr(files, name), bands, size, size, dtype, scene.epsg, transform, nd
            )
            for name, (bands, dtype, nd) in specs.items()
        }
        try:
            outputs["truth"].update_tags(class_names=json.dumps(sch.names))
            cells_per_block = GEOTIFF_BLOCK // CELL
            for block_top in range(0, rows, cells_per_block):
                block_rows = range(block_top, min(rows, block_top + cells_per_block))
                top = block_top * CELL
                height = min(size, top + len(block_rows) * CELL) - top
                arrays = {
                    name: np.zeros((bands, height, size), dtype)
                    for name, (bands, dtype, _) in specs.items()
                }
                for r in block_rows:
                    for c in range(cols):
                        label = int(layout[r, c])
                        plan = PatchPlan(r * cols + c, label, 0, r, c, train=False)
                        cover = clouds.cover(r * CELL, c * CELL, CELL)
                        sample = render_target(
                            plan, sch.classes[label], scene, tile_seed, CELL, True, cover=cover
                        )
                        assert sample.mask is not None
                        y0, x0 = (r - block_top) * CELL, c * CELL
                        h, w = min(CELL, height - y0), min(CELL, size - x0)
                        y, x = slice(y0, y0 + h), slice(x0, x0 + w)
                        arrays["s2"][:, y, x] = sample.s2[:, :h, :w]
                        arrays["s1"][:, y, x] = sample.s1[:, :h, :w]
                        arrays["clouds"][:, y, x] = sample.mask[:, :h, :w]
                        arrays["truth"][:, y, x] = label
                window = Window(0, top, size, height)  # type: ignore[call-arg]
                for name, array in arrays.items():
                    outputs[name].write(array, window=window)
                counts += np.bincount(arrays["truth"].ravel(), minlength=len(counts))
        finally:
            for dst in outputs.values():
                dst.close()
        write_lines(tmp / files.classes, sch.names)
        info = {
            "size": size,
            "seed": seed,
            "scheme": scheme,
            "cloud_cover": cloud_cover,
            "cell_px": CELL,
            "epsg": scene.epsg,
            "season": scene.season,
            "pixels_per_class": dict(zip(sch.names, map(int, counts), strict=True)),
        }
        (tmp / files.info).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return dict(zip(sch.names, map(int, counts), strict=True))
