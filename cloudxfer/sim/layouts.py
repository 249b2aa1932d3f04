"""Class layouts: maps of surface materials with a brightness-texture field, at any pixel size.

Every layout takes ``(shape, rng, px)`` with ``px`` the ground size of one pixel in metres and
sizes all objects in metres, so one library serves both the 10 m target tiles (rendered at a
supersampled 5 m) and the 0.5-8 m aerial source images. Object sizes are typical values for
European/Chinese landscapes (parcels 40-200 m, residential lots 10-25 m, roads 6-25 m wide).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from cloudxfer.sim.materials import Material as M
from cloudxfer.sim.textures import (
    Shape,
    blob_field,
    cell_random,
    cover_mask,
    curve_distance,
    disks,
    fractal_field,
    rotated_coords,
)


@dataclass
class Layout:
    """Material map (int8 ``Material`` codes) and a zero-centred brightness texture."""

    materials: np.ndarray
    shade: np.ndarray

    def paste(self, other: Layout, mask: np.ndarray) -> Layout:
        """Return this layout with ``other`` replacing it where ``mask`` is True."""
        return Layout(
            np.where(mask, other.materials, self.materials).astype(np.int8),
            np.where(mask, other.shade, self.shade).astype(np.float32),
        )


LayoutFn = Callable[[Shape, np.random.Generator, float], Layout]

# --- typical object sizes (metres) ------------------------------------------------------------
CROWN_M = 8.0  # tree crown diameter of temperate/subtropical broadleaf trees
FIELD_M = (40.0, 200.0)  # agricultural parcel side (small Chinese paddies to European fields)
ROW_PERIOD_M = (3.0, 12.0)  # visible row/tramline/ridge spacing inside fields
RES_LOT_M = (10.0, 22.0)  # residential lot side (terraced to detached houses)
RES_BLOCK_M = (60.0, 140.0)  # street spacing of residential grids
STREET_M = (6.0, 14.0)  # street width incl. sidewalks
IND_LOT_M = (35.0, 110.0)  # industrial hall footprints
ROAD_M = (7.0, 22.0)  # paved width of a single road (two lanes) up to a dual carriageway
SHOULDER_M = (2.0, 6.0)  # unpaved/vegetated verge on each side of a road
PIER_M = (12.0, 30.0)  # pier width
SHIP_M = (15.0, 60.0)  # ship/barge length in harbours
RUNWAY_M = (45.0, 60.0)  # ICAO code E/F runway width
CAR_M = (2.0, 5.0)  # car width, length


def _m(metres: float, px: float) -> float:
    """Convert metres to (fractional) pixels."""
    return metres / px


def _fill(shape: Shape, material: M) -> np.ndarray:
    return np.full(shape, int(material), dtype=np.int8)


def _tex(shape: Shape, rng: np.random.Generator, px: float, grain_m: float) -> np.ndarray:
    """Natural brightness texture with features no finer than ``grain_m``."""
    return fractal_field(shape, rng, beta=2.2, min_scale_px=_m(grain_m, px))


def _canopy(shape: Shape, rng: np.random.Generator, px: float) -> np.ndarray:
    """Crown-scale canopy texture (sunlit crowns vs shaded gaps) plus stand-scale variation."""
    crowns = np.tanh(1.5 * blob_field(shape, rng, _m(CROWN_M, px)))  # crisp crowns, dark gaps
    return 0.9 * crowns + 0.5 * _tex(shape, rng, px, 40.0)


def forest(shape: Shape, rng: np.random.Generator, px: float) -> Layout:
    """Paint a closed canopy with a few gaps of shrub/grass (clearings, tracks)."""
    mat = _fill(shape, M.FOREST)
    gaps = cover_mask(blob_field(shape, rng, _m(30.0, px)), rng.uniform(0.0, 0.12))
    mat[gaps] = rng.choice([M.SHRUB, M.GRASS])
    return Layout(mat, _canopy(shape, rng, px))


def herbaceous(shape: Shape, rng: np.random.Generator, px: float) -> Layout:
    """Grassland/pasture with shrub clumps and bare patches."""
    mat = _fill(shape, M.GRASS)
    mat[cover_mask(blob_field(shape, rng, _m(15.0, px)), rng.uniform(0.0, 0.15))] = M.SHRUB
    mat[cover_mask(fractal_field(shape, rng, 2.5), rng.uniform(0.0, 0.12))] = M.SOIL
    return Layout(mat, 0.6 * _tex(shape, rng, px, 5.0))


def meadow(shape: Shape, rng: np.random.Generator, px: float) -> Layout:
    """Homogeneous meadow (source class): grass with mowing/grazing texture only."""
    return Layout(_fill(shape, M.GRASS), 0.5 * _tex(shape, rng, px, 3.0))


def barren(shape: Shape, rng: np.random.Generator, px: float) -> Layout:
    """Bare soil and sand/rock with sparse shrubs; terrain shading texture."""
    mat = _fill(shape, M.SOIL)
    mat[cover_mask(fractal_field(shape, rng, 3.0), rng.uniform(0.0, 0.6))] = M.SAND
    mat[cover_mask(blob_field(shape, rng, _m(6.0, px)), rng.uniform(0.0, 0.08))] = M.SHRUB
    shade = fractal_field(shape, rng, beta=3.0, min_scale_px=_m(10.0, px))
    return Layout(mat, 0.8 * shade)


def scrub(shape: Shape, rng: np.random.Generator, px: float) -> Layout:
    """Fine mosaic of shrubs, grass and bare soil (Mediterranean/subtropical scrub)."""
    a = fractal_field(shape, rng, 2.0, min_scale_px=_m(5.0, px))
    b = fractal_field(shape, rng, 2.0, min_scale_px=_m(5.0, px))
    mat = _fill(shape, M.SOIL)
    mat[cover_mask(b, rng.uniform(0.35, 0.7))] = M.GRASS
    mat[cover_mask(a, rng.uniform(0.35, 0.6))] = M.SHRUB
    return Layout(mat, 0.6 * _tex(shape, rng, px, 5.0))


def chaparral(shape: Shape, rng: np.random.Generator, px: float) -> Layout:
    """Dense shrubland of individual bushes on dry soil (source class)."""
    mat = _fill(shape, M.SOIL)
    mat[cover_mask(blob_field(shape, rng, _m(4.0, px)), rng.uniform(0.45, 0.75))] = M.SHRUB
    return Layout(mat, 0.8 * blob_field(shape, rng, _m(4.0, px)))


def transitional_woodland(shape: Shape, rng: np.random.Generator, px: float) -> Layout:
    """Woodland-shrub transition: patchy young forest, shrubs, grass and cut-over soil."""
    coarse = fractal_field(shape, rng, 2.5, min_scale_px=_m(15.0, px))
    fine = fractal_field(shape, rng, 2.0, min_scale_px=_m(5.0, px))
    mat = _fill(shape, M.GRASS)
    mat[cover_mask(fine, rng.uniform(0.2, 0.4))] = M.SOIL
    mat[cover_mask(fine + coarse, rng.uniform(0.5, 0.7))] = M.SHRUB
    mat[cover_mask(coarse, rng.uniform(0.25, 0.5))] = M.FOREST
    return Layout(mat, _canopy(shape, rng, px))


def _parcels(
    shape: Shape, rng: np.random.Generator, px: float, flooded_share: float
) -> tuple[Layout, np.ndarray]:
    """Rectangular field parcels with per-field crop state and row texture; returns field ids."""
    angle = rng.uniform(0.0, np.pi)
    u, v = rotated_coords(shape, angle, tuple(rng.uniform(0, 500.0 / px, 2)))
    w = _m(rng.uniform(*FIELD_M), px)
    h = w * rng.uniform(0.3, 1.0)
    iv = np.floor(v / h)
    iu = np.floor((u + cell_random(iv, iv, rng) * w) / w)  # stagger fields between strips
    r = cell_random(iu, iv, rng)
    state = np.array([M.CROP, M.CROP, M.CROP, M.SOIL, M.GRASS, M.WATER], dtype=np.int8)
    p = np.array([0.55 - flooded_share, 0.0, 0.0, 0.25, 0.2, flooded_share])
    cum = np.cumsum(p / p.sum())
    mat = state[np.searchsorted(cum, r, side="right").clip(0, len(state) - 1)]
    period = _m(rng.uniform(*ROW_PERIOD_M), px)
    along = np.where(cell_random(iu, iv + 7, rng) < 0.5, u, v)
    rows = np.sin(2.0 * np.pi * along / max(period, 1.0))
    field_offset = (cell_random(iu + 3, iv, rng) - 0.5) * 2.0
    shade = 0.8 * field_offset + 0.3 * rows + 0.3 * _tex(shape, rng, px, 5.0)
    boundary = (np.mod(u + cell_random(iv, iv, rng) * w, w) < _m(2.0, px)) | (
        np.mod(v, h) < _m(2.0, px)
    )
    mat = np.where(boundary & (px <= 2.0), np.int8(M.GRASS), mat)
    return Layout(mat.astype(np.int8), shade.astype(np.float32)), iu * 1000 + iv


def agricultural(shape: Shape, rng: np.random.Generator, px: float) -> Layout:
    """Cropland parcels incl. flooded paddies (Hunan-style agriculture)."""
    return _parcels(shape, rng, px, flooded_share=rng.uniform(0.0, 0.25))[0]


def rectangular_farmland(shape: Shape, rng: np.random.Generator, px: float) -> Layout:
    """Rectangular fields without paddies (source class)."""
    return _parcels(shape, rng, px, flooded_share=0.0)[0]


def circular_farmland(shape: Shape, rng: np.random.Generator, px: float) -> Layout:
    """Centre-pivot irrigation circles (400-800 m) on dry land (source class)."""
    base = barren(shape, rng, px) if rng.random() < 0.5 else herbaceous(shape, rng, px)
    d = _m(rng.uniform(400.0, 800.0), px)
    n = max(1, int(np.ceil(max(shape) / d)) + 1)
    off = rng.uniform(-d / 2, d / 2, 2)
    gy, gx = np.meshgrid(np.arange(n) * d + off[0], np.arange(n) * d + off[1], indexing="ij")
    centres = np.stack([gy.ravel(), gx.ravel()], axis=1)
    inside, idx = disks(shape, centres, np.full(len(centres), d * 0.48))
    r = rng.random(len(centres) + 1)[idx]
    mat = np.where(inside, np.where(r < 0.7, M.CROP, M.SOIL), base.materials).astype(np.int8)
    y, x = np.indices(shape)
    cy, cx = centres[idx.clip(0), 0], centres[idx.clip(0), 1]
    radial = np.sin(np.hypot(y - cy, x - cx) / max(_m(6.0, px), 1.0))  # pivot wheel tracks
    shade = np.where(inside, 0.6 * (r - 0.5) + 0.2 * radial, base.shade)
    return Layout(mat, shade.astype(np.float32))


def _buildings(
    shape: Shape,
    rng: np.random.Generator,
    px: float,
    *,
    lot_m: float,
    building_prob: float,
    footprint: tuple[float, float],
    tile_share: float,
    angle: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Place buildings on a rotated lot grid: (material map, -1 where empty; roof shade)."""
    u, v = rotated_coords(shape, angle, tuple(rng.uniform(0, 1000.0, 2)))
    lot = _m(lot_m, px)
    iu, iv = np.floor(u / lot), np.floor(v / lot)
    fu, fv = np.mod(u, lot) / lot, np.mod(v, lot) / lot
    occupied = cell_random(iu, iv, rng) < building_prob
    fp = footprint[0] + (footprint[1] - footprint[0]) * cell_random(iu, iv, rng)
    aspect = 0.6 + 0.4 * cell_random(iu, iv, rng)
    inside = (np.abs(fu - 0.5) < fp / 2) & (np.abs(fv - 0.5) < fp * aspect / 2)
    roof_r = cell_random(iu, iv, rng)
    roof = np.where(roof_r < tile_share, M.ROOF_TILE, M.ROOF_METAL).astype(np.int8)
    mat = np.where(occupied & inside, roof, np.int8(-1)).astype(np.int8)
    ridge = np.where(fu < 0.5, 0.25, -0.25)  # pitched roofs: two faces lit differently
    shade = 1.6 * (cell_random(iu, iv, rng) - 0.5) + ridge
    return mat, shade.astype(np.float32)


def _urban(
    shape: Shape,
    rng: np.random.Generator,
    px: float,
    *,
    block_m: float,
    lot_m: float,
    building_prob: float,
    footprint: tuple[float, float],
    tile_share: float,
    open_material: M,
    tree_share: float,
) -> Layout:
    """Street grid with blocks of buildings, open ground and trees."""
    angle = rng.uniform(0.0, np.pi)
    u, v = rotated_coords(shape, angle, tuple(rng.uniform(0, 1000.0, 2)))
    street_w = _m(rng.uniform(*STREET_M), px)
    sp = _m(block_m, px)
    street = (np.mod(u, sp) < street_w) | (np.mod(v, sp * rng.uniform(0.6, 1.4)) < street_w)
    open_tex = _tex(shape, rng, px, 4.0)
    mat = _fill(shape, open_material)
    if open_material == M.GRASS:  # gardens are partly paved/bare
        mat[cover_mask(fractal_field(shape, rng, 1.5), 0.25)] = M.CONCRETE
    mat[cover_mask(blob_field(shape, rng, _m(CROWN_M, px)), tree_share)] = M.FOREST
    bmat, bshade = _buildings(
        shape,
        rng,
        px,
        lot_m=lot_m,
        building_prob=building_prob,
        footprint=footprint,
        tile_share=tile_share,
        angle=angle,
    )
    has_b = bmat >= 0
    mat = np.where(has_b, bmat, mat)
    mat[street] = M.ASPHALT
    shade = np.where(has_b, bshade, 0.5 * open_tex)
    return Layout(mat.astype(np.int8), shade.astype(np.float32))


def residential(shape: Shape, rng: np.random.Generator, px: float) -> Layout:
    """Medium-density housing: street grid, detached/terraced houses, gardens, street trees."""
    return _urban(
        shape,
        rng,
        px,
        block_m=rng.uniform(*RES_BLOCK_M),
        lot_m=rng.uniform(*RES_LOT_M),
        building_prob=rng.uniform(0.6, 0.9),
        footprint=(0.5, 0.8),
        tile_share=rng.uniform(0.2, 0.8),
        open_material=M.GRASS,
        tree_share=rng.uniform(0.05, 0.25),
    )


def dense_residential(shape: Shape, rng: np.random.Generator, px: float) -> Layout:
    """Dense housing: small lots nearly all built, little green (source class)."""
    return _urban(
        shape,
        rng,
        px,
        block_m=rng.uniform(50.0, 90.0),
        lot_m=rng.uniform(8.0, 14.0),
        building_prob=rng.uniform(0.85, 1.0),
        footprint=(0.75, 0.95),
        tile_share=rng.uniform(0.2, 0.8),
        open_material=M.CONCRETE,
        tree_share=rng.uniform(0.0, 0.08),
    )


def sparse_residential(shape: Shape, rng: np.random.Generator, px: float) -> Layout:
    """Scattered detached houses in large green lots (source class)."""
    return _urban(
        shape,
        rng,
        px,
        block_m=rng.uniform(120.0, 250.0),
        lot_m=rng.uniform(25.0, 45.0),
        building_prob=rng.uniform(0.35, 0.7),
        footprint=(0.3, 0.5),
        tile_share=rng.uniform(0.2, 0.8),
        open_material=M.GRASS,
        tree_share=rng.uniform(0.15, 0.35),
    )


def industrial(shape: Shape, rng: np.random.Generator, px: float) -> Layout:
    """Large metal-roofed halls, paved yards, access roads and storage tanks."""
    lay = _urban(
        shape,
        rng,
        px,
        block_m=rng.uniform(150.0, 300.0),
        lot_m=rng.uniform(*IND_LOT_M),
        building_prob=rng.uniform(0.5, 0.85),
        footprint=(0.6, 0.9),
        tile_share=rng.uniform(0.0, 0.15),
        open_material=M.CONCRETE,
        tree_share=rng.uniform(0.0, 0.06),
    )
    unpaved = cover_mask(fractal_field(shape, rng, 2.5), rng.uniform(0.05, 0.4))
    lay.materials[unpaved & (lay.materials == M.CONCRETE)] = rng.choice([M.SOIL, M.GRASS])
    if rng.random() < 0.3:  # tank farm
        n = rng.integers(2, 8)
        centres = rng.uniform(0, max(shape), (n, 2))
        tank, _ = disks(shape, centres, np.full(n, _m(rng.uniform(8.0, 20.0), px)))
        lay.materials[tank] = M.ROOF_METAL
        lay.shade[tank] = 0.8
    return lay


def sparse_built(shape: Shape, rng: np.random.Generator, px: float) -> Layout:
    """Scattered buildings and farmsteads in a rural background with a track or two."""
    base = agricultural(shape, rng, px) if rng.random() < 0.5 else herbaceous(shape, rng, px)
    bmat, bshade = _buildings(
        shape,
        rng,
        px,
        lot_m=rng.uniform(25.0, 50.0),
        building_prob=rng.uniform(0.1, 0.3),
        footprint=(0.3, 0.6),
        tile_share=rng.uniform(0.3, 0.9),
        angle=rng.uniform(0.0, np.pi),
    )
    has_b = bmat >= 0
    mat = np.where(has_b, bmat, base.materials)
    track = curve_distance(shape, rng, rng.uniform(0, np.pi), 0.0, 5.0, 300.0) < _m(3.0, px)
    mat[track] = rng.choice([M.ASPHALT, M.SOIL])
    return Layout(mat.astype(np.int8), np.where(has_b, bshade, base.shade).astype(np.float32))


def village(shape: Shape, rng: np.random.Generator, px: float) -> Layout:
    """Compact cluster of tiled houses with trees amid paddy/crop fields (Hunan villages)."""
    base = agricultural(shape, rng, px)
    houses = _urban(
        shape,
        rng,
        px,
        block_m=rng.uniform(80.0, 200.0),
        lot_m=rng.uniform(10.0, 16.0),
        building_prob=rng.uniform(0.55, 0.85),
        footprint=(0.6, 0.85),
        tile_share=rng.uniform(0.5, 0.9),
        open_material=M.SOIL,
        tree_share=rng.uniform(0.1, 0.3),
    )
    core = cover_mask(fractal_field(shape, rng, 3.0, min_scale_px=_m(30.0, px)), 0.3)
    return base.paste(houses, core)


def _road_on(
    base: Layout, rng: np.random.Generator, px: float, width_m: float, offset_px: float
) -> Layout:
    """Paint a paved road with verges onto ``base`` along a gently curving axis."""
    shape = base.materials.shape
    dist = curve_distance(
        shape, rng, rng.uniform(0.0, np.pi), offset_px, _m(rng.uniform(0, 20.0), px), 2000.0 / px
    )
    half = _m(width_m, px) / 2.0
    mat = base.materials.copy()
    verge = dist < half + _m(rng.uniform(*SHOULDER_M), px)
    mat[verge] = rng.choice([M.GRASS, M.SOIL, M.CONCRETE])
    mat[dist < half] = M.ASPHALT
    shade = base.shade.copy()
    marking = (dist < _m(0.15, px)) & (px < 1.0)  # centre line visible only in aerial images
    shade[dist < half] = 0.2 * np.cos(dist[dist < half] / max(half, 1.0) * np.pi)
    shade[marking] = 4.0
    return Layout(mat.astype(np.int8), shade.astype(np.float32))


_ROAD_BACKGROUNDS: tuple[LayoutFn, ...] = ()  # filled after all layouts exist (see below)


def road(shape: Shape, rng: np.random.Generator, px: float) -> Layout:
    """Paint a road (sometimes a junction) across farmland, grass, forest, scrub or barren."""
    bg = _ROAD_BACKGROUNDS[rng.integers(len(_ROAD_BACKGROUNDS))](shape, rng, px)
    lim = 0.15 * min(shape)  # keep the road axis near the tile centre
    lay = _road_on(bg, rng, px, rng.uniform(*ROAD_M), rng.uniform(-lim, lim))
    if rng.random() < 0.35:
        lay = _road_on(lay, rng, px, rng.uniform(6.0, 12.0), rng.uniform(-lim, lim))
    return lay


def freeway(shape: Shape, rng: np.random.Generator, px: float) -> Layout:
    """Dual carriageway with a green median and lane markings (source class)."""
    bg = herbaceous(shape, rng, px) if rng.random() < 0.5 else agricultural(shape, rng, px)
    angle = rng.uniform(0.0, np.pi)
    u, v = rotated_coords(shape, angle)
    lane, median = _m(3.7, px), _m(rng.uniform(3.0, 12.0), px)
    n_lanes = int(rng.integers(2, 4))
    a = np.abs(v) - median / 2
    paved = (a > 0) & (a < n_lanes * lane)
    mat = bg.materials.copy()
    mat[(a > -median / 2) & (a < n_lanes * lane + _m(4.0, px))] = M.GRASS
    mat[paved] = M.ASPHALT
    dashes = (np.mod(u, _m(12.0, px)) < _m(6.0, px)) & (np.mod(a, lane) < _m(0.15, px) + 0.5)
    shade = bg.shade.copy()
    shade[paved] = 0.1 * fractal_field(shape, rng, 2.0)[paved]
    shade[paved & dashes & (a > lane / 2)] = 4.0
    cars = paved & (cell_random(np.floor(u / _m(8.0, px)), np.floor(a / lane), rng) < 0.1)
    cars &= np.mod(a, lane) > lane * 0.3
    mat[cars] = np.where(rng.random(shape) < 0.5, M.ROOF_METAL, M.ROOF_TILE)[cars]
    return Layout(mat.astype(np.int8), shade.astype(np.float32))


def parking_lot(shape: Shape, rng: np.random.Generator, px: float) -> Layout:
    """Asphalt lot with stall markings and rows of parked cars (source class)."""
    angle = rng.uniform(0.0, np.pi)
    u, v = rotated_coords(shape, angle, tuple(rng.uniform(0, 100.0, 2)))
    stall_w, stall_l, aisle = _m(2.5, px), _m(5.0, px), _m(6.5, px)
    module = 2 * stall_l + aisle
    mv = np.mod(v, module)
    in_stall = mv < 2 * stall_l
    iu, iv = np.floor(u / stall_w), np.floor(v / stall_l)
    occupied = in_stall & (cell_random(iu, iv, rng) < rng.uniform(0.4, 0.95))
    car = occupied & (np.mod(u, stall_w) > 0.15 * stall_w) & (np.mod(u, stall_w) < 0.85 * stall_w)
    car &= (np.mod(v, stall_l) > 0.1 * stall_l) & (np.mod(v, stall_l) < 0.9 * stall_l)
    colour = cell_random(iu + 11, iv, rng)
    mat = _fill(shape, M.ASPHALT)
    mat[car] = np.where(
        colour < 0.55, M.ROOF_METAL, np.where(colour < 0.8, M.ASPHALT, M.ROOF_TILE)
    )[car]
    shade = 0.15 * fractal_field(shape, rng, 2.0)
    shade[car] = (2.0 * (colour[car] - 0.5)).astype(np.float32)
    line = in_stall & (np.mod(u, stall_w) < _m(0.12, px) + 0.3) & ~car
    shade[line] = 4.0
    return Layout(mat, shade.astype(np.float32))


def _shore(
    shape: Shape, rng: np.random.Generator, px: float, water_share: float
) -> tuple[np.ndarray, np.ndarray]:
    """Water mask with a fractal shoreline covering ``water_share``; signed shore distance (px).

    The distance is positive on land and negative in water.
    """
    angle = rng.uniform(0.0, 2.0 * np.pi)
    _, v = rotated_coords(shape, angle)
    ruggedness = _m(rng.uniform(5.0, 60.0), px)
    field = v + ruggedness * fractal_field(shape, rng, 3.5, min_scale_px=3.0)
    water = cover_mask(field, water_share)
    level = np.min(field[water]) if water.any() else np.inf
    return water, level - field


def _land(shape: Shape, rng: np.random.Generator, px: float) -> Layout:
    choices: tuple[LayoutFn, ...] = (herbaceous, forest, barren, agricultural, scrub)
    return choices[rng.integers(len(choices))](shape, rng, px)


def water(shape: Shape, rng: np.random.Generator, px: float) -> Layout:
    """Open water (lake, reservoir, wide river) with an occasional shoreline."""
    land = _land(shape, rng, px)
    wmask, _ = _shore(shape, rng, px, 1.0 if rng.random() < 0.4 else rng.uniform(0.7, 1.0))
    wat = Layout(_fill(shape, M.WATER), 0.4 * _tex(shape, rng, px, 20.0))
    return land.paste(wat, wmask)


def lake(shape: Shape, rng: np.random.Generator, px: float) -> Layout:
    """Paint a lake body with irregular shore surrounded by land (source class)."""
    land = _land(shape, rng, px)
    blob = fractal_field(shape, rng, 3.0) - 0.02 * np.hypot(*np.indices(shape) - shape[0] / 2.0)
    wmask = cover_mask(blob, rng.uniform(0.35, 0.7))
    return land.paste(Layout(_fill(shape, M.WATER), 0.3 * _tex(shape, rng, px, 10.0)), wmask)


def beach(shape: Shape, rng: np.random.Generator, px: float) -> Layout:
    """Sand strip between sea (with surf) and land (source class)."""
    wmask, dist = _shore(shape, rng, px, rng.uniform(0.3, 0.55))
    land = _land(shape, rng, px)
    sand = ~wmask & (dist < _m(rng.uniform(20.0, 80.0), px))
    mat = np.where(wmask, np.int8(M.WATER), land.materials)
    mat[sand] = M.SAND
    surf = wmask & (dist > -_m(rng.uniform(5.0, 15.0), px))
    shade = np.where(sand, 0.3 * _tex(shape, rng, px, 2.0), land.shade)
    shade = np.where(wmask, 0.3 * _tex(shape, rng, px, 5.0), shade)
    shade[surf] = 3.0  # breaking waves: white foam
    return Layout(mat.astype(np.int8), shade.astype(np.float32))


def river(shape: Shape, rng: np.random.Generator, px: float) -> Layout:
    """Paint a meandering river with vegetated banks."""
    land = _land(shape, rng, px)
    width = _m(rng.uniform(20.0, 120.0), px)
    lim = 0.1 * min(shape)
    dist = curve_distance(
        shape, rng, rng.uniform(0, np.pi), rng.uniform(-lim, lim), width, 6.0 * width
    )
    wat = Layout(_fill(shape, M.WATER), 0.3 * _tex(shape, rng, px, 10.0))
    lay = land.paste(wat, dist < width / 2)
    bank = (dist >= width / 2) & (dist < width / 2 + _m(rng.uniform(3.0, 15.0), px))
    lay.materials[bank] = rng.choice([M.FOREST, M.SAND, M.GRASS])
    return lay


def bridge(shape: Shape, rng: np.random.Generator, px: float) -> Layout:
    """Paint a river crossed by a road bridge (source class)."""
    lay = river(shape, rng, px)
    lay = _road_on(lay, rng, px, rng.uniform(10.0, 25.0), 0.0)
    return lay


def harbor(shape: Shape, rng: np.random.Generator, px: float) -> Layout:
    """Quay, piers reaching into water, moored ships, and port buildings/yards on land."""
    land = industrial(shape, rng, px)
    wmask, dist = _shore(shape, rng, px, rng.uniform(0.3, 0.6))
    mat = np.where(wmask, np.int8(M.WATER), land.materials)
    shade = np.where(wmask, 0.3 * _tex(shape, rng, px, 20.0), land.shade)
    quay = ~wmask & (dist < _m(rng.uniform(15.0, 40.0), px))
    mat[quay] = M.CONCRETE
    angle = rng.uniform(0.0, np.pi)
    u, _ = rotated_coords(shape, angle)
    spacing = _m(rng.uniform(60.0, 150.0), px)
    pier_w = _m(rng.uniform(*PIER_M), px)
    reach = _m(rng.uniform(60.0, 200.0), px)
    mu = np.mod(u, spacing)
    built = cell_random(np.floor(u / spacing), np.zeros_like(u), rng) < rng.uniform(0.4, 1.0)
    pier = wmask & (mu < pier_w) & (-dist < reach) & built
    mat[pier] = M.CONCRETE
    ship_w = _m(rng.uniform(8.0, 20.0), px)
    berth = wmask & (mu > pier_w + _m(2.0, px)) & (mu < pier_w + _m(2.0, px) + ship_w)
    ship_idx = np.floor(-dist / _m(rng.uniform(*SHIP_M), px))
    ship = berth & (-dist < reach) & (cell_random(np.floor(u / spacing), ship_idx, rng) < 0.6)
    mat[ship] = M.ROOF_METAL
    shade[ship] = 0.5
    return Layout(mat.astype(np.int8), shade.astype(np.float32))


def desert(shape: Shape, rng: np.random.Generator, px: float) -> Layout:
    """Sand sea with wind-aligned dunes (source class)."""
    u, _ = rotated_coords(shape, rng.uniform(0.0, np.pi))
    wl = _m(rng.uniform(30.0, 150.0), px)
    warp = wl * 0.3 * fractal_field(shape, rng, 3.0)
    dunes = np.sin(2.0 * np.pi * (u + warp) / wl)
    mat = _fill(shape, M.SAND)
    mat[cover_mask(fractal_field(shape, rng, 2.5), rng.uniform(0.0, 0.2))] = M.SOIL
    return Layout(mat, (0.9 * dunes + 0.2 * _tex(shape, rng, px, 2.0)).astype(np.float32))


def airport(shape: Shape, rng: np.random.Generator, px: float) -> Layout:
    """Runway with markings, parallel taxiway, apron and grass infield (source class)."""
    angle = rng.uniform(0.0, np.pi)
    _, v = rotated_coords(shape, angle)
    mat = _fill(shape, M.GRASS)
    shade = 0.4 * _tex(shape, rng, px, 3.0)
    rw = _m(rng.uniform(*RUNWAY_M), px)
    c0 = rng.uniform(-0.2, 0.2) * min(shape)
    runway = np.abs(v - c0) < rw / 2
    mat[runway] = rng.choice([M.CONCRETE, M.ASPHALT])
    shade[runway] = 0.1 * _tex(shape, rng, px, 5.0)[runway]
    shade[np.abs(v - c0) < _m(0.5, px) + 0.3] = 4.0  # centre line
    taxi_off = rw / 2 + _m(rng.uniform(60.0, 150.0), px)
    side = rng.choice([-1.0, 1.0])
    taxi = np.abs(v - c0 - side * taxi_off) < _m(11.5, px)
    mat[taxi] = M.ASPHALT
    apron = side * (v - c0) > taxi_off + _m(20.0, px)
    mat[apron & (side * (v - c0) > taxi_off + _m(rng.uniform(20.0, 120.0), px))] = M.CONCRETE
    return Layout(mat, shade.astype(np.float32))


_ROAD_BACKGROUNDS = (herbaceous, agricultural, forest, scrub, barren)

LAYOUTS: dict[str, LayoutFn] = {
    fn.__name__: fn
    for fn in (
        forest,
        herbaceous,
        meadow,
        barren,
        scrub,
        chaparral,
        transitional_woodland,
        agricultural,
        rectangular_farmland,
        circular_farmland,
        residential,
        dense_residential,
        sparse_residential,
        industrial,
        sparse_built,
        village,
        road,
        freeway,
        parking_lot,
        water,
        lake,
        beach,
        river,
        bridge,
        harbor,
        desert,
        airport,
    )
}
"""Registry of layout functions by name; schemes refer to layouts by these names."""
