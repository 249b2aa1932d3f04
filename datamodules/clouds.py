"""Cloud masks (simulated or read from a folder of real ones) and pasting them onto tiles.

Everything is deterministic per tile: the random stream of a tile is seeded by
``(CloudConfig.seed, hash(tile id))``, so the same tile gets the same clouds whatever the
iteration order, the worker, or the epoch.

Pasting works on scaled RGB reflectance in [0, 1] (after ``clip(DN, 0, 10000) / 10000``,
before standardisation).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from rasterio.errors import RasterioError

from datamodules.errors import DataError, data_error
from datamodules.store import PackedStore, StoreWriter, content_key, open_or_warn_streaming

CloudKind = Literal["thin", "thick"]

CLOUD_MASK_THRESHOLD = 0.5
"""A pixel counts as cloudy when its (soft) mask value is >= this; ``cloud_fraction`` is the
mean of that binary mask."""
MASK_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png", ".npy")
"""Files read from ``masks_dir``; other files (e.g. a README) are ignored."""
UINT8_MAX = 255.0
MIN_COVERAGE = 0.05
"""Jittered coverage of a clouded tile never drops below this (it would be a clear tile)."""
CLOUD_TINT: tuple[float, float, float] = (0.97, 0.99, 1.0)
"""Per-channel (R, G, B) factor on cloud radiance: clouds are white with a slight blue cast."""
CLOUD_TEXTURE_AMPLITUDE = 0.03
"""Std of the low-texture variation of thick cloud radiance (reflectance units)."""
BASE_CELLS = 2
"""Noise cells across the tile at the coarsest octave."""


@dataclass(frozen=True)
class CloudConfig:
    """How clouds are pasted onto optical tiles at load time.

    Attributes:
        cloudy_share: Share of tiles that get a cloud (0 disables pasting; the paper: 0.5).
        coverage: Target share of a clouded tile under cloud (paper: about 0.5).
        coverage_jitter: Per-tile coverage is drawn uniformly in ``coverage +/- jitter``.
        thin_share: Share of clouded tiles whose cloud is thin (0.5 = thin:thick 1:1).
        masks_dir: Folder of real masks (GeoTIFF, PNG, ``.npy`` stacks); ``None`` simulates.
        seed: Seed of the per-tile random streams.
        octaves: Octaves of the fractal noise of simulated masks.
        persistence: Amplitude factor between successive octaves.
        edge_softness: Half-width of the soft edge of simulated masks, in std units of the
            noise field (0 gives hard edges).
        thick_reflectance_min: Lowest cloud-top reflectance of a cloud.
        thick_reflectance_max: Highest cloud-top reflectance of a cloud.
        thin_opacity_min: Lowest peak opacity of a thin cloud.
        thin_opacity_max: Highest peak opacity of a thin cloud.
        shadow: Darken the ground beside thick clouds (shifted mask).
        shadow_strength: Fraction of reflectance removed under a full shadow.
        shadow_offset: Shadow displacement in pixels (random direction per tile).
        mask_candidates: Real masks: random crops tried per tile; the one whose coverage is
            closest to the target is used.

    """

    cloudy_share: float = 0.5
    coverage: float = 0.5
    coverage_jitter: float = 0.2
    thin_share: float = 0.5
    masks_dir: str | None = None
    seed: int = 0
    octaves: int = 5
    persistence: float = 0.5
    edge_softness: float = 0.25
    thick_reflectance_min: float = 0.4
    thick_reflectance_max: float = 0.9
    thin_opacity_min: float = 0.3
    thin_opacity_max: float = 0.7
    shadow: bool = False
    shadow_strength: float = 0.4
    shadow_offset: int = 4
    mask_candidates: int = 8

    def __post_init__(self) -> None:
        for name in ("cloudy_share", "coverage", "thin_share", "shadow_strength"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"CloudConfig.{name} must lie in [0, 1], got {value}")
        if not 0.0 <= self.coverage_jitter <= 1.0:
            raise ValueError(
                f"CloudConfig.coverage_jitter must lie in [0, 1]: {self.coverage_jitter}"
            )
        if not 0.0 <= self.thick_reflectance_min <= self.thick_reflectance_max <= 1.0:
            raise ValueError("CloudConfig needs 0 <= thick_reflectance_min <= _max <= 1")
        if not 0.0 <= self.thin_opacity_min <= self.thin_opacity_max <= 1.0:
            raise ValueError("CloudConfig needs 0 <= thin_opacity_min <= thin_opacity_max <= 1")
        if self.octaves < 1 or self.mask_candidates < 1 or self.shadow_offset < 0:
            raise ValueError(
                "CloudConfig needs octaves >= 1, mask_candidates >= 1, shadow_offset >= 0"
            )
        if self.edge_softness < 0 or self.persistence <= 0:
            raise ValueError("CloudConfig needs edge_softness >= 0 and persistence > 0")


DEFAULT_CLOUDS = CloudConfig()
"""The paper's setting: half the tiles clouded at about 50 % coverage, thin:thick 1:1."""
NO_CLOUDS = CloudConfig(cloudy_share=0.0)


def tile_rng(seed: int, tile_id: str, stream: int) -> np.random.Generator:
    """Return the random generator of one tile (independent of iteration order).

    Args:
        seed: The cloud seed.
        tile_id: The tile id.
        stream: Sub-stream number (decisions and shapes use different streams).

    Returns:
        A generator seeded from ``(seed, blake2b(tile_id), stream)``.

    """
    digest = int.from_bytes(hashlib.blake2b(tile_id.encode(), digest_size=8).digest(), "little")
    return np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, digest, stream]))


def cloud_fraction(mask: np.ndarray) -> float:
    """Share of pixels whose mask value is >= 0.5."""
    return float(np.mean(mask >= CLOUD_MASK_THRESHOLD)) if mask.size else 0.0


def _smooth_upsample(grid: np.ndarray, size: int) -> np.ndarray:
    cells = grid.shape[0] - 1
    coords = np.linspace(0.0, cells, size)
    i0 = np.minimum(coords.astype(int), cells - 1)
    t = coords - i0
    t = t * t * (3.0 - 2.0 * t)  # smoothstep: no visible grid creases
    ty, tx = t[:, None], t[None, :]
    a = grid[np.ix_(i0, i0)]
    b = grid[np.ix_(i0, i0 + 1)]
    c = grid[np.ix_(i0 + 1, i0)]
    d = grid[np.ix_(i0 + 1, i0 + 1)]
    top = a * (1 - tx) + b * tx
    bottom = c * (1 - tx) + d * tx
    return np.asarray(top * (1 - ty) + bottom * ty)


def fractal_field(
    rng: np.random.Generator, size: int, octaves: int = 5, persistence: float = 0.5
) -> np.ndarray:
    """Multi-octave value noise, normalised to zero mean and unit std.

    Args:
        rng: Random generator.
        size: Side length of the square field.
        octaves: Number of octaves (each doubles the frequency).
        persistence: Amplitude factor between octaves.

    Returns:
        float64 array (size, size).

    """
    field = np.zeros((size, size))
    amplitude = 1.0
    for octave in range(octaves):
        cells = BASE_CELLS * 2**octave
        field += amplitude * _smooth_upsample(rng.standard_normal((cells + 1, cells + 1)), size)
        amplitude *= persistence
    std = field.std()
    return (field - field.mean()) / (std if std > 0 else 1.0)


def simulated_mask(
    rng: np.random.Generator, size: int, coverage: float, config: CloudConfig
) -> np.ndarray:
    """Build a soft cloud mask: a fractal density field thresholded at the wanted coverage.

    Args:
        rng: Random generator.
        size: Side length.
        coverage: Wanted share of pixels with mask >= 0.5.
        config: Noise and edge settings.

    Returns:
        float32 array (size, size) in [0, 1].

    """
    if coverage <= 0.0:
        return np.zeros((size, size), np.float32)
    if coverage >= 1.0:
        return np.ones((size, size), np.float32)
    field = fractal_field(rng, size, config.octaves, config.persistence)
    threshold = np.quantile(field, 1.0 - coverage)
    if config.edge_softness <= 0:
        return (field >= threshold).astype(np.float32)
    soft = 0.5 + (field - threshold) / (2.0 * config.edge_softness)
    soft = np.where(field >= threshold, np.maximum(soft, CLOUD_MASK_THRESHOLD), soft)
    return np.clip(soft, 0.0, 1.0).astype(np.float32)


def _normalise_mask_values(array: np.ndarray, path: Path) -> np.ndarray:
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.integer):
        peak = float(array.max(initial=0))
        binary = array.min(initial=0) >= 0 and peak <= 1
        if not binary and array.dtype != np.uint8:
            raise data_error(
                path, f"integer cloud mask ({array.dtype}) must hold 0/1 (or 0..255 as uint8)"
            )
        scale = 1.0 if binary else UINT8_MAX
        return (array.astype(np.float32) / scale).astype(np.float32)
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or array.min(initial=0) < 0 or array.max(initial=0) > 1:
            raise data_error(path, "float cloud mask must be a probability in [0, 1] (no NaN)")
        return array.astype(np.float32)
    raise data_error(path, f"cloud mask has unsupported dtype {array.dtype}")


def read_mask_file(path: str | Path) -> np.ndarray:
    """Read one mask file into a stack (N, H, W) of float32 values in [0, 1].

    GeoTIFF (1 band) and PNG (single channel) give one mask; ``.npy`` may hold (H, W),
    (N, H, W) or (N, H, W, 1). Binary (0/1, bool, 0/255) and probability masks are accepted.

    Args:
        path: The mask file.

    Returns:
        float32 array (N, H, W).

    Raises:
        DataError: Unreadable file, wrong shape or out-of-range values; names the file.

    """
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            array = np.load(path, allow_pickle=False)
        elif suffix == ".png":
            with Image.open(path) as image:
                array = np.asarray(image)
            if array.ndim != 2:
                raise data_error(path, f"PNG cloud mask has shape {array.shape}; expected (H, W)")
        else:
            with rasterio.open(path) as src:
                if src.count != 1:
                    raise data_error(path, f"cloud mask has {src.count} bands, expected 1")
                array = src.read(1)
    except DataError:
        raise
    except (OSError, ValueError, RasterioError, UnidentifiedImageError) as exc:
        raise data_error(path, f"cannot read cloud mask: {exc}") from exc
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or min(array.shape) < 1:
        raise data_error(
            path, f"cloud mask has shape {array.shape}; expected (H, W), (N, H, W) or (N, H, W, 1)"
        )
    return _normalise_mask_values(array, path)


def mask_files(folder: Path) -> list[Path]:
    """Return the mask files of a folder (``MASK_SUFFIXES``), sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in MASK_SUFFIXES)


def load_mask_folder(masks_dir: str | Path) -> list[np.ndarray]:
    """Read every mask file of a folder (sorted by name) into a list of (H, W) masks.

    Args:
        masks_dir: Folder with ``.tif``/``.tiff``/``.png``/``.npy`` files.

    Returns:
        List of float32 (H, W) masks in [0, 1].

    Raises:
        DataError: Missing folder, no mask files, or a bad file.

    """
    folder = Path(masks_dir)
    if not folder.is_dir():
        raise data_error(folder, "cloud masks folder not found")
    files = mask_files(folder)
    if not files:
        raise data_error(folder, f"no cloud mask files ({', '.join(MASK_SUFFIXES)}) found")
    masks: list[np.ndarray] = []
    for path in files:
        masks.extend(list(read_mask_file(path)))
    return masks


def resize_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Bilinearly resize a (H, W) mask to (size, size)."""
    tensor = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    resized = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False)
    return resized[0, 0].numpy().clip(0.0, 1.0)


class RealMaskSampler:
    """Draws tile-sized crops from a set of real masks, closest to a target coverage.

    Args:
        masks: List of (H, W) masks in [0, 1].
        candidates: Random crops tried per draw.

    """

    def __init__(self, masks: list[np.ndarray], candidates: int) -> None:
        if not masks:
            raise ValueError("RealMaskSampler needs at least one mask")
        self.masks = masks
        self.candidates = candidates

    def sample(self, rng: np.random.Generator, size: int, coverage: float) -> np.ndarray:
        """Return a (size, size) mask: a random window (or a resize when the mask is smaller).

        Among ``candidates`` random crops (random mask, window, flip and quarter turn), the one
        whose cloud fraction is closest to ``coverage`` wins.
        """
        best: np.ndarray | None = None
        best_error = np.inf
        for _ in range(self.candidates):
            mask = self.masks[int(rng.integers(len(self.masks)))]
            height, width = mask.shape
            if height < size or width < size:
                crop = resize_mask(mask, size)
            else:
                top = int(rng.integers(height - size + 1))
                left = int(rng.integers(width - size + 1))
                crop = mask[top : top + size, left : left + size]
            crop = np.rot90(crop, int(rng.integers(4)))
            if rng.random() < 0.5:
                crop = crop[:, ::-1]
            error = abs(cloud_fraction(crop) - coverage)
            if error < best_error:
                best, best_error = crop, error
        assert best is not None
        return np.ascontiguousarray(best, dtype=np.float32)


@dataclass(frozen=True)
class CloudPlan:
    """What happens to one tile: whether it is clouded, with what kind and coverage."""

    clouded: bool
    kind: CloudKind
    coverage: float


class CloudPaster:
    """Pastes deterministic per-tile clouds onto scaled RGB tiles.

    Args:
        config: Cloud settings.
        masks: Real masks to use; default: read ``config.masks_dir`` when set, else simulate.

    """

    def __init__(self, config: CloudConfig, masks: list[np.ndarray] | None = None) -> None:
        self.config = config
        if masks is None and config.masks_dir is not None and config.cloudy_share > 0:
            masks = load_mask_folder(config.masks_dir)
        self.sampler = RealMaskSampler(masks, config.mask_candidates) if masks else None

    def plan(self, tile_id: str) -> CloudPlan:
        """Decide (deterministically) whether and how a tile is clouded."""
        rng = tile_rng(self.config.seed, tile_id, 0)
        clouded = bool(rng.random() < self.config.cloudy_share)
        kind: CloudKind = "thin" if rng.random() < self.config.thin_share else "thick"
        jitter = rng.uniform(-self.config.coverage_jitter, self.config.coverage_jitter)
        coverage = float(np.clip(self.config.coverage + jitter, MIN_COVERAGE, 1.0))
        return CloudPlan(clouded=clouded, kind=kind, coverage=coverage)

    def mask(self, tile_id: str, size: int, coverage: float) -> np.ndarray:
        """Return the soft (size, size) cloud mask of a tile."""
        rng = tile_rng(self.config.seed, tile_id, 1)
        if self.sampler is not None:
            return self.sampler.sample(rng, size, coverage)
        return simulated_mask(rng, size, coverage, self.config)

    def layer(self, tile_id: str, size: int) -> CloudLayer | None:
        """Return the tile's cloud as a blend layer, or None when the tile stays clear."""
        plan = self.plan(tile_id)
        if not plan.clouded:
            return None
        mask = self.mask(tile_id, size, plan.coverage)
        rng = tile_rng(self.config.seed, tile_id, 2)
        return cloud_layer(mask, plan.kind, rng, self.config)

    def __call__(self, rgb: np.ndarray, tile_id: str) -> tuple[np.ndarray, float]:
        """Paste this tile's cloud (if any) onto scaled RGB reflectance.

        Args:
            rgb: float32 (3, T, T) reflectance in [0, 1].
            tile_id: The tile id (seeds the tile's random streams).

        Returns:
            The clouded RGB (a new array) and the cloud fraction (0.0 for clear tiles).

        """
        layer = self.layer(tile_id, rgb.shape[-1])
        if layer is None:
            return rgb, 0.0
        return blend(rgb, layer), layer.fraction


@dataclass(frozen=True)
class CloudLayer:
    """A tile's cloud as one blend: ``clip(rgb * keep + add, 0, 1)``.

    Deterministic per tile, so it can be computed once and stored (``datamodules.store``);
    pasting is then a single multiply-add.

    Attributes:
        keep: float32 (1, T, T): share of ground reflectance that survives (cloud opacity and
            shadow folded in).
        add: float32 (3, T, T): cloud radiance added on top.
        fraction: Cloud fraction of the tile (share of mask >= 0.5).

    """

    keep: np.ndarray
    add: np.ndarray
    fraction: float


def blend(rgb: np.ndarray, layer: CloudLayer) -> np.ndarray:
    """Paste a cloud layer onto float32 (3, T, T) reflectance; returns a new float32 array."""
    out = rgb * layer.keep
    out += layer.add
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32, copy=False)


def cloud_layer(
    mask: np.ndarray,
    kind: CloudKind,
    rng: np.random.Generator,
    config: CloudConfig,
) -> CloudLayer:
    """Cloud radiance and opacity of one tile under a soft mask, as a blend layer.

    Thick: the pixel is replaced (alpha = mask) by bright, low-texture cloud radiance
    (reflectance in ``[thick_reflectance_min, thick_reflectance_max]``). Thin: alpha-blend with
    a peak opacity in ``[thin_opacity_min, thin_opacity_max]``, so ground texture shows
    through. With ``config.shadow``, thick clouds darken the ground beside them.

    Args:
        mask: float32 (H, W) in [0, 1].
        kind: ``"thin"`` or ``"thick"``.
        rng: Random generator for brightness, texture, opacity and shadow direction.
        config: Cloud settings.

    Returns:
        The layer; ``blend(rgb, layer)`` pastes it.

    """
    size = mask.shape[0]
    brightness = rng.uniform(config.thick_reflectance_min, config.thick_reflectance_max)
    texture = CLOUD_TEXTURE_AMPLITUDE * fractal_field(rng, size, octaves=3)
    tint = np.asarray(CLOUD_TINT, dtype=np.float32)[:, None, None]
    radiance = np.clip((brightness + texture)[None] * tint, 0.0, 1.0)
    if kind == "thick":
        alpha = mask.astype(np.float64)
    else:
        alpha = mask * float(rng.uniform(config.thin_opacity_min, config.thin_opacity_max))
    shade = np.ones_like(alpha, dtype=np.float64)
    if config.shadow and kind == "thick" and config.shadow_offset > 0:
        angle = rng.uniform(0, 2 * np.pi)
        dy = int(round(config.shadow_offset * np.sin(angle)))
        dx = int(round(config.shadow_offset * np.cos(angle)))
        shade = 1.0 - config.shadow_strength * _shift(mask, dy, dx) * (1.0 - mask)
    keep = ((1.0 - alpha) * shade)[None].astype(np.float32)
    add = (radiance * (alpha * shade)[None]).astype(np.float32)
    return CloudLayer(keep=keep, add=add, fraction=cloud_fraction(mask))


def paste_cloud(
    rgb: np.ndarray,
    mask: np.ndarray,
    kind: CloudKind,
    rng: np.random.Generator,
    config: CloudConfig,
) -> np.ndarray:
    """Blend cloud radiance into RGB reflectance under a soft mask (see :func:`cloud_layer`).

    Args:
        rgb: float32 (3, H, W) in [0, 1].
        mask: float32 (H, W) in [0, 1].
        kind: ``"thin"`` or ``"thick"``.
        rng: Random generator for brightness, texture, opacity and shadow direction.
        config: Cloud settings.

    Returns:
        float32 (3, H, W) in [0, 1].

    """
    return blend(rgb, cloud_layer(mask, kind, rng, config))


class StoredCloudLayers:
    """Cloud layers of a fixed set of tiles, read from a packed store (one blend per tile).

    Built once per (cloud settings, tiles, tile size, real mask files) with
    :func:`stored_cloud_layers`; equal, byte for byte, to what :class:`CloudPaster` computes.
    """

    def __init__(self, store: PackedStore) -> None:
        self.keep = store.arrays["keep"]
        self.add = store.arrays["add"]
        self.fraction = store.arrays["fraction"]
        self.row = store.arrays["row"]
        self.index = {tile_id: i for i, tile_id in enumerate(store.meta["ids"])}

    def layer(self, tile_id: str, size: int) -> CloudLayer | None:
        """Return the stored layer of a tile (None when clear)."""
        i = self.index[tile_id]
        row = int(self.row[i])
        if row < 0:
            return None
        return CloudLayer(
            keep=np.asarray(self.keep[row]),
            add=np.asarray(self.add[row]),
            fraction=float(self.fraction[i]),
        )


CLOUD_CHUNK = 1024
"""Tiles whose cloud layers are computed between two checkpoints of the store's build."""


def stored_cloud_layers(
    paster: CloudPaster, tile_ids: list[str], size: int, store_dir: Path
) -> StoredCloudLayers | None:
    """Open (or build) the packed cloud layers of ``tile_ids``; None when unwritable."""
    config = paster.config
    real_masks: list[Path] = []
    if config.masks_dir is not None and config.cloudy_share > 0:
        real_masks = mask_files(Path(config.masks_dir))
    settings = {
        "config": asdict(config),
        "size": size,
        "ids": hashlib.sha256("\n".join(tile_ids).encode()).hexdigest(),
    }
    key = content_key("cloud_layers", settings, real_masks)

    clouded = [paster.plan(tile_id).clouded for tile_id in tile_ids]
    n_clouded = sum(clouded)
    specs = {
        "keep": ((n_clouded, 1, size, size), "float32"),
        "add": ((n_clouded, 3, size, size), "float32"),
        "row": ((len(tile_ids),), "int32"),
        "fraction": ((len(tile_ids),), "float32"),
    }

    def build(writer: StoreWriter) -> dict[str, Any]:
        """Compute the layers tile by tile into the store's rows (resumable every chunk)."""
        done = int(writer.state.get("tiles", 0))
        row = sum(clouded[:done])
        for start in range(done, len(tile_ids), CLOUD_CHUNK):
            keep, add, rows, fractions = (
                writer.arrays[k] for k in ("keep", "add", "row", "fraction")
            )
            for i in range(start, min(start + CLOUD_CHUNK, len(tile_ids))):
                layer = paster.layer(tile_ids[i], size) if clouded[i] else None
                if layer is None:
                    rows[i], fractions[i] = -1, 0.0
                    continue
                rows[i], fractions[i] = row, layer.fraction
                keep[row], add[row] = layer.keep, layer.add
                row += 1
            del keep, add, rows, fractions  # the checkpoint maps them afresh
            writer.checkpoint(tiles=min(start + CLOUD_CHUNK, len(tile_ids)))
        return {"ids": list(tile_ids)}

    store = open_or_warn_streaming(store_dir, "clouds", key, specs, build)
    return None if store is None else StoredCloudLayers(store)


def _shift(mask: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Shift a 2-D array by (dy, dx) pixels, filling with zeros."""
    out = np.zeros_like(mask)
    height, width = mask.shape
    ys, yd = (
        (slice(0, height - dy), slice(dy, height))
        if dy >= 0
        else (slice(-dy, height), slice(0, height + dy))
    )
    xs, xd = (
        (slice(0, width - dx), slice(dx, width))
        if dx >= 0
        else (slice(-dx, width), slice(0, width + dx))
    )
    out[yd, xd] = mask[ys, xs]
    return out
