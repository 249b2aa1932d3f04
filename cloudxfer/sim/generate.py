"""Dataset generation: plan (labels, scenes, splits), render one sample, write the layouts."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rasterio.transform import Affine

from cloudxfer.sim.clouds import CloudCover, apply_clouds, draw_clouds
from cloudxfer.sim.landcover import landcover
from cloudxfer.sim.layouts import LAYOUTS, Layout
from cloudxfer.sim.sar import render_sar
from cloudxfer.sim.scene import OBJECT_SCALE_RANGE, SceneConditions, draw_scene, log_uniform
from cloudxfer.sim.schemes import SCHEMES, SOURCE_ROLES, ClassSpec, Scheme
from cloudxfer.sim.spectra import (
    BUILDING_HEIGHT_M,
    building_shadows,
    regional_palette,
    sensor_resolution,
    surface_reflectance,
    to_dn,
    to_rgb8,
    to_toa,
)
from cloudxfer.sim.textures import block_mean, cover_mask, fractal_field
from cloudxfer.sim.writers import (
    atomic_output_dir,
    write_csv,
    write_geotiff,
    write_lines,
    write_png,
)

PIXEL_M = 10.0  # Sentinel-1/2 10 m grid
SUPERSAMPLE = 2  # render at 5 m and area-average: mixed pixels as a real sensor integrates them
PATCHES_PER_SCENE = 40  # patches cut from one scene (shared season, atmosphere, SAR geometry)
MIN_PER_CLASS = 30  # so 20 labelled per class fit in the 80 % train part
TRAIN_SHARE = 0.8
INTRUSION_PROB = 0.7  # share of tiles mixing other classes around the dominant one
SOURCE_INTRUSION_PROB = 0.3  # curated aerial datasets are purer than 640 m satellite tiles
INTRUSION_COVER = (0.05, 0.25)  # area share of one intruding class
MAX_INTRUSIONS = 2
VEHICLE_HEIGHT_M = 1.5  # shadow height for layouts whose "roofs" are cars
SOURCE_GREENNESS = (0.5, 1.0)  # aerial campaigns fly mostly in the growing season
SOURCE_SUN_ZENITH = (25.0, 60.0)

_PLAN, _SCENE, _PATCH, _SOURCE = 0, 1, 2, 3  # independent random streams per purpose
_SOURCE_STREAM = {"nwpu": _SOURCE, "aid": 4}  # each source role draws from its own stream


def _rng(seed: int, *key: int) -> np.random.Generator:
    """Return the generator of one purpose/item (SeedSequence keys: order-independent)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


@dataclass(frozen=True)
class PatchPlan:
    """Where a target patch goes and what it shows."""

    index: int
    label: int
    scene: int
    row: int
    col: int
    train: bool

    @property
    def patch_number(self) -> int:
        """SEN12MS-style patch number ``pN`` (row-major position in the scene grid, 1-based)."""
        return self.row * _grid_width() + self.col + 1


def _grid_width() -> int:
    return math.ceil(math.sqrt(PATCHES_PER_SCENE))


def plan_target(pairs: int, seed: int, scheme: Scheme) -> list[PatchPlan]:
    """Assign class labels (scheme proportions), scenes, scene-grid positions and 80/20 split."""
    rng = _rng(seed, _PLAN)
    counts = scheme.allocate(pairs, MIN_PER_CLASS)
    labels = rng.permutation(np.repeat(np.arange(len(counts)), counts))
    train = np.zeros(pairs, dtype=bool)
    train[rng.permutation(pairs)[: round(TRAIN_SHARE * pairs)]] = True
    gw = _grid_width()
    return [
        PatchPlan(
            index=i,
            label=int(labels[i]),
            scene=i // PATCHES_PER_SCENE,
            row=(i % PATCHES_PER_SCENE) // gw,
            col=(i % PATCHES_PER_SCENE) % gw,
            train=bool(train[i]),
        )
        for i in range(pairs)
    ]


def compose_layout(
    spec: ClassSpec, shape: tuple[int, int], rng: np.random.Generator, px: float, prob: float
) -> Layout:
    """Dominant class layout with, at probability ``prob``, intrusions of context classes."""
    layout = LAYOUTS[spec.layout](shape, rng, px)
    if spec.context and rng.random() < prob:
        for _ in range(int(rng.integers(1, MAX_INTRUSIONS + 1))):
            other = LAYOUTS[spec.context[rng.integers(len(spec.context))]](shape, rng, px)
            region = fractal_field(shape, rng, beta=3.5, min_scale_px=2.0)
            layout = layout.paste(other, cover_mask(region, rng.uniform(*INTRUSION_COVER)))
    return layout


@dataclass
class TargetSample:
    """Rendered arrays of one target patch (mask only for already-cloudy sets)."""

    s2: np.ndarray
    s1: np.ndarray
    lc: np.ndarray
    mask: np.ndarray | None


def render_target(
    plan: PatchPlan,
    spec: ClassSpec,
    scene: SceneConditions,
    seed: int,
    patch_size: int,
    cloudy: bool,
    nan_fraction: float = 0.0,
    cover: CloudCover | None = None,
) -> TargetSample:
    """Render S2 L1C DN, S1 dB, LC codes (and clouds + mask if ``cloudy``) for one patch.

    ``cover``: the patch's clouds, drawn by the caller (a scene-wide cloud field cut to the
    patch, ``synth scene``); None draws the patch's own clouds when ``cloudy``.
    """
    rng = _rng(seed, _PATCH, plan.index)
    px = PIXEL_M / SUPERSAMPLE
    shape = (patch_size * SUPERSAMPLE, patch_size * SUPERSAMPLE)
    # objects scaled by the region: a pixel covers fewer nominal metres where they are larger
    layout = compose_layout(spec, shape, rng, px / scene.object_scale, INTRUSION_PROB)
    surf = surface_reflectance(layout, rng, scene.greenness, scene.palette)
    height = rng.uniform(*BUILDING_HEIGHT_M)
    surf *= building_shadows(
        layout.materials, px, scene.sun_zenith_deg, scene.sun_azimuth_deg, height
    )[None]
    surf10 = block_mean(surf, SUPERSAMPLE)
    mask = None
    if cloudy:
        if cover is None:
            cover = draw_clouds(
                (patch_size, patch_size), rng, PIXEL_M, scene.sun_zenith_deg, scene.sun_azimuth_deg
            )
        surf10 = surf10 * cover.illumination[None]
        toa = apply_clouds(to_toa(surf10, scene.aerosol, scene.gain), cover, rng)
        mask = cover.mask[None]
    else:
        toa = to_toa(surf10, scene.aerosol, scene.gain)
    s2 = to_dn(sensor_resolution(toa, PIXEL_M), rng)
    s1 = render_sar(layout.materials, layout.shade, scene, rng, SUPERSAMPLE, nan_fraction)
    mat10 = layout.materials[::SUPERSAMPLE, ::SUPERSAMPLE]
    lc = landcover(mat10, plan.row * patch_size, plan.col * patch_size, PIXEL_M)
    return TargetSample(s2=s2, s1=s1, lc=lc, mask=mask)


def render_source(
    spec: ClassSpec, seed: int, class_index: int, i: int, size: int, role: str = "nwpu"
) -> np.ndarray:
    """Render one cloud-free aerial RGB image (H, W, 3) uint8 of a source class."""
    rng = _rng(seed, _SOURCE_STREAM[role], class_index, i)
    px = rng.uniform(*spec.pixel_m) / SUPERSAMPLE
    shape = (size * SUPERSAMPLE, size * SUPERSAMPLE)
    # every aerial image comes from its own place: its own regional looks and object sizes
    scale = log_uniform(rng, OBJECT_SCALE_RANGE)
    layout = compose_layout(spec, shape, rng, px / scale, SOURCE_INTRUSION_PROB)
    palette = regional_palette(rng)
    surf = surface_reflectance(layout, rng, rng.uniform(*SOURCE_GREENNESS), palette)
    cars = spec.layout in ("parking_lot", "freeway")
    height = VEHICLE_HEIGHT_M if cars else rng.uniform(*BUILDING_HEIGHT_M)
    surf *= building_shadows(
        layout.materials, px, rng.uniform(*SOURCE_SUN_ZENITH), rng.uniform(0.0, 360.0), height
    )[None]
    return to_rgb8(block_mean(surf, SUPERSAMPLE), rng)


# --- target sets ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetJob:
    """Everything a worker needs to render and write one target patch."""

    root: Path
    scheme: str
    seed: int
    patch_size: int
    nan_fraction: float
    plan: PatchPlan
    scene: SceneConditions


def sen12ms_stem(kind: str, season: str, scene: int, patch: int) -> str:
    """SEN12MS file stem, e.g. ``ROIs1158_spring_s2_1_p30`` (kind in s1, s2, lc)."""
    return f"{season}_{kind}_{scene}_p{patch}"


def hunan_id(index: int) -> str:
    """Pair id of the Hunan-style layout."""
    return f"pair_{index:05d}"


def _target_name(job: TargetJob) -> str:
    if job.scheme == "hunan":
        return hunan_id(job.plan.index)
    return sen12ms_stem("s2", job.scene.season, job.scene.index + 1, job.plan.patch_number)


def _write_target(job: TargetJob) -> str:
    """Render and write one patch; returns its key (S2 stem or pair id)."""
    scheme = SCHEMES[job.scheme]
    hunan = job.scheme == "hunan"
    sample = render_target(
        job.plan,
        scheme.classes[job.plan.label],
        job.scene,
        job.seed,
        job.patch_size,
        cloudy=hunan,
        nan_fraction=job.nan_fraction,
    )
    ps, scene = job.patch_size, job.scene
    west = scene.origin[0] + job.plan.col * ps * PIXEL_M
    north = scene.origin[1] - job.plan.row * ps * PIXEL_M
    transform = Affine(PIXEL_M, 0.0, west, 0.0, -PIXEL_M, north)
    key = _target_name(job)
    if hunan:
        write_geotiff(job.root / "opt" / f"{key}.tif", sample.s2, scene.epsg, transform)
        write_geotiff(job.root / "sar" / f"{key}.tif", sample.s1, scene.epsg, transform)
        assert sample.mask is not None
        write_geotiff(job.root / "masks" / f"{key}.tif", sample.mask, scene.epsg, transform)
        return key
    sid, p = scene.index + 1, job.plan.patch_number
    for kind, arr in (("s1", sample.s1), ("s2", sample.s2), ("lc", sample.lc)):
        path = (
            job.root
            / scene.season
            / f"{kind}_{sid}"
            / f"{sen12ms_stem(kind, scene.season, sid, p)}.tif"
        )
        write_geotiff(path, arr, scene.epsg, transform)
    return key


def _run(fn: Callable[[TargetJob], str], jobs: list[TargetJob], workers: int) -> list[str]:
    if workers <= 1:
        return [fn(j) for j in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(fn, jobs, chunksize=16))


def generate_target(
    out: Path,
    pairs: int = 1200,
    seed: int = 0,
    scheme: str = "sen12ms_cloud",
    patch_size: int = 64,
    overwrite: bool = False,
    nan_fraction: float = 0.0,
    workers: int = 1,
) -> dict[str, int]:
    """Write a simulated target set (SEN12MS or Hunan-style layout); returns counts per class."""
    sch = SCHEMES[scheme]
    plans = plan_target(pairs, seed, sch)
    n_scenes = max(p.scene for p in plans) + 1
    scenes = [
        draw_scene(k, _rng(seed, _SCENE, k), hunan=scheme == "hunan") for k in range(n_scenes)
    ]
    with atomic_output_dir(Path(out), overwrite) as tmp:
        jobs = [
            TargetJob(tmp, scheme, seed, patch_size, nan_fraction, p, scenes[p.scene])
            for p in plans
        ]
        keys = _run(_write_target, jobs, workers)
        names = sch.names
        if scheme == "hunan":
            write_csv(
                tmp / "labels.csv",
                ("id", "label"),
                [(k, names[p.label]) for k, p in zip(keys, plans, strict=True)],
            )
        else:
            write_csv(
                tmp / "labels.csv",
                ("patch", "label"),
                [(k, names[p.label]) for k, p in zip(keys, plans, strict=True)],
            )
            write_lines(
                tmp / "train_list.txt",
                [f"{k}.tif" for k, p in zip(keys, plans, strict=True) if p.train],
            )
            write_lines(
                tmp / "test_list.txt",
                [f"{k}.tif" for k, p in zip(keys, plans, strict=True) if not p.train],
            )
        write_lines(tmp / "classes.txt", names)
    return _counts(sch.names, (sch.names[p.label] for p in plans))


def _counts(names: list[str], labels: Iterable[str]) -> dict[str, int]:
    c = Counter(labels)
    return {n: c.get(n, 0) for n in names}


# --- source set ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceJob:
    """One source image to render and write."""

    root: Path
    seed: int
    class_index: int
    index: int
    size: int
    role: str = "nwpu"


def _write_source(job: SourceJob) -> str:
    spec = SOURCE_ROLES[job.role].classes[job.class_index]
    rgb = render_source(spec, job.seed, job.class_index, job.index, job.size, job.role)
    write_png(job.root / spec.name / f"{spec.name}_{job.index}.png", rgb)
    return spec.name


def generate_source(
    out: Path,
    per_class: int = 60,
    seed: int = 0,
    size: int = 96,
    overwrite: bool = False,
    workers: int = 1,
    role: str = "nwpu",
) -> dict[str, int]:
    """Write the source set of a role (``nwpu``, ``aid``) as an ImageFolder; counts per class."""
    scheme = SOURCE_ROLES[role]
    with atomic_output_dir(Path(out), overwrite) as tmp:
        jobs = [
            SourceJob(tmp, seed, c, i, size, role)
            for c in range(len(scheme.classes))
            for i in range(per_class)
        ]
        labels = _run(_write_source, jobs, workers)  # type: ignore[arg-type]
    return _counts(scheme.names, labels)
