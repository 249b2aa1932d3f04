"""Named scaling constants and the scaling rules for every input modality, in one place.

Order of operations for a target sample:

1. optical: pick RGB = B04, B03, B02, then ``clip(DN, 0, 10000) / 10000`` (reflectance [0, 1]);
   clouds are pasted at this stage (``datamodules.clouds``);
2. SAR: replace non-finite dB values (policy ``sar_nan``), clip VV and VH to [-25, 0] dB and
   map to [0, 1]; the third channel is VV - VH in dB, clipped to its own range and mapped to
   [0, 1];
3. both: :class:`Standardisation` (per-channel ``(x - mean) / std``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from datamodules.errors import data_error

SarNanPolicy = Literal["fill", "reject"]

# --- Sentinel-2 (optical) ---------------------------------------------------------------
S2_NUM_BANDS = 13
"""SEN12MS S2 L1C patches hold 13 bands B01..B12 incl. B8A and B10."""
S2_DTYPE = "uint16"
S2_DN_MIN = 0.0
S2_DN_MAX = 10000.0
"""Digital numbers are reflectance x 10000; scaling is ``clip(DN, 0, 10000) / 10000``."""
S2_RGB_BANDS: tuple[int, int, int] = (4, 3, 2)
"""1-based band numbers of R, G, B (B04, B03, B02). The official loader's ``[2, 3, 4]``
reads B02, B03, B04, i.e. B, G, R: a known pitfall."""
S2_RGB_BAND_NAMES: tuple[str, str, str] = ("B04", "B03", "B02")

# --- Sentinel-1 (SAR) -------------------------------------------------------------------
S1_NUM_BANDS = 2
"""SEN12MS S1 patches hold VV and VH backscatter in dB."""
S1_DTYPE = "float32"
S1_DB_MIN = -25.0
S1_DB_MAX = 0.0
"""VV and VH are clipped to [S1_DB_MIN, S1_DB_MAX] dB and mapped linearly to [0, 1]."""
SAR_RATIO_DB_MIN = -5.0
SAR_RATIO_DB_MAX = 20.0
"""The ratio channel VV - VH (dB, from the clipped VV and VH) is clipped to this range and
mapped linearly to [0, 1]; VH is typically 5-12 dB below VV over land."""
SAR_CHANNEL_NAMES: tuple[str, str, str] = ("VV", "VH", "VV-VH")
SAR_NAN_FILL_DB = S1_DB_MIN
"""``sar_nan="fill"``: NaN becomes the noise floor."""
SAR_POSINF_FILL_DB = S1_DB_MAX
SAR_NEGINF_FILL_DB = S1_DB_MIN
SAR_NAN_POLICIES: tuple[str, str] = ("fill", "reject")

NUM_CHANNELS = 3
"""Both model inputs have three channels (RGB; VV, VH, VV-VH)."""


def scale_s2(dn: np.ndarray) -> np.ndarray:
    """Scale Sentinel-2 digital numbers to reflectance in [0, 1].

    Args:
        dn: Array of DNs (any shape, any numeric dtype).

    Returns:
        float32 array ``clip(dn, 0, 10000) / 10000``.

    """
    return (np.clip(dn.astype(np.float32), S2_DN_MIN, S2_DN_MAX) / S2_DN_MAX).astype(np.float32)


def scale_db(db: np.ndarray) -> np.ndarray:
    """Map SAR backscatter in dB to [0, 1]: clip to [-25, 0] dB, then ``x / 25 + 1``.

    Args:
        db: Finite backscatter values in dB.

    Returns:
        float32 array in [0, 1].

    """
    clipped = np.clip(db.astype(np.float32), S1_DB_MIN, S1_DB_MAX)
    return ((clipped - S1_DB_MIN) / (S1_DB_MAX - S1_DB_MIN)).astype(np.float32)


def ratio_db(vv_db: np.ndarray, vh_db: np.ndarray) -> np.ndarray:
    """Compute the VV/VH ratio channel in dB (``VV - VH``) from clipped VV and VH.

    Args:
        vv_db: VV backscatter in dB (finite).
        vh_db: VH backscatter in dB (finite), same shape.

    Returns:
        float32 array of ``clip(VV) - clip(VH)`` in dB.

    """
    vv = np.clip(vv_db.astype(np.float32), S1_DB_MIN, S1_DB_MAX)
    vh = np.clip(vh_db.astype(np.float32), S1_DB_MIN, S1_DB_MAX)
    return (vv - vh).astype(np.float32)


def scale_ratio(ratio: np.ndarray) -> np.ndarray:
    """Map the VV - VH ratio in dB to [0, 1] with its own clip range.

    Args:
        ratio: VV - VH in dB.

    Returns:
        float32 array in [0, 1].

    """
    clipped = np.clip(ratio, SAR_RATIO_DB_MIN, SAR_RATIO_DB_MAX)
    return ((clipped - SAR_RATIO_DB_MIN) / (SAR_RATIO_DB_MAX - SAR_RATIO_DB_MIN)).astype(np.float32)


def sar_channels(s1_db: np.ndarray) -> np.ndarray:
    """Turn finite (VV, VH) dB bands into the three scaled SAR channels.

    Args:
        s1_db: Array (2, H, W) of VV, VH in dB, already free of NaN/inf.

    Returns:
        float32 array (3, H, W): scaled VV, scaled VH, scaled VV - VH, all in [0, 1].

    """
    vv, vh = s1_db[0], s1_db[1]
    return np.stack([scale_db(vv), scale_db(vh), scale_ratio(ratio_db(vv, vh))]).astype(np.float32)


def fix_sar_nonfinite(
    s1_db: np.ndarray, policy: SarNanPolicy, path: str | Path
) -> tuple[np.ndarray, int]:
    """Apply the NaN/inf policy to SAR backscatter in dB.

    ``fill``: NaN -> -25 dB (noise floor), +inf -> 0 dB, -inf -> -25 dB.
    ``reject``: any non-finite pixel raises :class:`DataError` naming the file.

    Args:
        s1_db: SAR array in dB (any shape).
        policy: ``"fill"`` or ``"reject"``.
        path: The file the array came from (for the error message).

    Returns:
        The (possibly filled) float32 array and the number of values replaced.

    Raises:
        DataError: With ``policy="reject"`` when the array holds NaN or inf.
        ValueError: On an unknown policy.

    """
    if policy not in SAR_NAN_POLICIES:
        raise ValueError(f"sar_nan must be one of {SAR_NAN_POLICIES}, got {policy!r}")
    bad = ~np.isfinite(s1_db)
    count = int(bad.sum())
    if count == 0:
        return s1_db.astype(np.float32, copy=False), 0
    if policy == "reject":
        raise data_error(
            path, f"SAR holds {count} NaN/inf value(s) and sar_nan='reject' (use 'fill')"
        )
    fixed = np.nan_to_num(
        s1_db.astype(np.float32),
        nan=SAR_NAN_FILL_DB,
        posinf=SAR_POSINF_FILL_DB,
        neginf=SAR_NEGINF_FILL_DB,
    )
    return fixed, count


def warn_filled_sar(replaced: Mapping[str, int], max_files: int = 10) -> None:
    """Emit one warning listing the SAR files whose NaN/inf values were filled.

    Args:
        replaced: File path -> number of values replaced (files with 0 are ignored).
        max_files: How many file names to spell out before summarising.

    """
    hits = {path: n for path, n in replaced.items() if n > 0}
    if not hits:
        return
    total = sum(hits.values())
    names = ", ".join(f"{path} ({n})" for path, n in list(hits.items())[:max_files])
    more = f" and {len(hits) - max_files} more file(s)" if len(hits) > max_files else ""
    warnings.warn(
        f"sar_nan='fill' replaced {total} NaN/inf SAR value(s) in {len(hits)} file(s): "
        f"{names}{more}",
        stacklevel=2,
    )


@dataclass(frozen=True)
class Standardisation:
    """Per-channel standardisation ``(x - mean) / std`` applied after scaling.

    All four lists are required (three values each): there is no silent default. Derive
    values for your data with :func:`compute_standardisation`; :meth:`identity` gives
    mean 0 / std 1 when you want the scaled values unchanged.

    Attributes:
        opt_mean: Means of the scaled R, G, B channels.
        opt_std: Standard deviations of the scaled R, G, B channels (> 0).
        sar_mean: Means of the scaled VV, VH, VV-VH channels.
        sar_std: Standard deviations of the scaled VV, VH, VV-VH channels (> 0).

    """

    opt_mean: list[float]
    opt_std: list[float]
    sar_mean: list[float]
    sar_std: list[float]

    def __post_init__(self) -> None:
        for name in ("opt_mean", "opt_std", "sar_mean", "sar_std"):
            values = [float(v) for v in getattr(self, name)]
            if len(values) != NUM_CHANNELS:
                raise ValueError(f"Standardisation.{name} needs {NUM_CHANNELS} values: {values}")
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"Standardisation.{name} must be finite: {values}")
            if name.endswith("std") and min(values) <= 0:
                raise ValueError(f"Standardisation.{name} must be > 0: {values}")
            object.__setattr__(self, name, values)

    @classmethod
    def identity(cls) -> Standardisation:
        """Return mean 0 / std 1 for both modalities (scaled values pass unchanged)."""
        zeros, ones = [0.0] * NUM_CHANNELS, [1.0] * NUM_CHANNELS
        return cls(opt_mean=zeros, opt_std=ones, sar_mean=list(zeros), sar_std=list(ones))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Standardisation:
        """Rebuild from :meth:`to_dict` output (e.g. read from normalisation.json)."""
        return cls(
            opt_mean=list(values["opt_mean"]),
            opt_std=list(values["opt_std"]),
            sar_mean=list(values["sar_mean"]),
            sar_std=list(values["sar_std"]),
        )

    def to_dict(self) -> dict[str, list[float]]:
        """Return a JSON-serialisable dict (for checkpoints and normalisation.json)."""
        return {key: [float(v) for v in value] for key, value in asdict(self).items()}

    def apply_opt(self, image: np.ndarray) -> np.ndarray:
        """Standardise a scaled optical array (3, H, W)."""
        return _standardise(image, self.opt_mean, self.opt_std)

    def apply_sar(self, image: np.ndarray) -> np.ndarray:
        """Standardise a scaled SAR array (3, H, W)."""
        return _standardise(image, self.sar_mean, self.sar_std)


def _standardise(image: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    m = np.asarray(mean, dtype=np.float32)[:, None, None]
    s = np.asarray(std, dtype=np.float32)[:, None, None]
    return ((image.astype(np.float32) - m) / s).astype(np.float32)


def scaling_constants() -> dict[str, Any]:
    """Return the scaling constants as a JSON-serialisable dict (for normalisation.json)."""
    return {
        "optical": {
            "bands_1based": list(S2_RGB_BANDS),
            "band_names": list(S2_RGB_BAND_NAMES),
            "dn_clip": [S2_DN_MIN, S2_DN_MAX],
            "dn_divisor": S2_DN_MAX,
        },
        "sar": {
            "channels": list(SAR_CHANNEL_NAMES),
            "db_clip": [S1_DB_MIN, S1_DB_MAX],
            "ratio_db_clip": [SAR_RATIO_DB_MIN, SAR_RATIO_DB_MAX],
            "nan_fill_db": SAR_NAN_FILL_DB,
            "posinf_fill_db": SAR_POSINF_FILL_DB,
            "neginf_fill_db": SAR_NEGINF_FILL_DB,
        },
    }


class ChannelStats:
    """Streaming per-channel mean/std accumulator (float64 sums)."""

    def __init__(self) -> None:
        self._sum: np.ndarray | None = None
        self._sum_sq: np.ndarray | None = None
        self._count = 0

    def update(self, image: torch.Tensor | np.ndarray) -> None:
        """Add one (C, H, W) image or a (B, C, H, W) batch."""
        arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else image
        arr = np.asarray(arr, dtype=np.float64)
        if arr.ndim == 3:
            arr = arr[None]
        if arr.ndim != 4:
            raise ValueError(f"expected (C, H, W) or (B, C, H, W) images, got shape {arr.shape}")
        per_channel = arr.transpose(1, 0, 2, 3).reshape(arr.shape[1], -1)
        if self._sum is None or self._sum_sq is None:
            self._sum = np.zeros(arr.shape[1])
            self._sum_sq = np.zeros(arr.shape[1])
        elif per_channel.shape[0] != self._sum.shape[0]:
            raise ValueError("images have different channel counts")
        self._sum += per_channel.sum(axis=1)
        self._sum_sq += (per_channel**2).sum(axis=1)
        self._count += per_channel.shape[1]

    def result(self) -> tuple[list[float], list[float]]:
        """Return ``(mean, std)`` (population std) as lists of C floats."""
        if self._sum is None or self._sum_sq is None or self._count == 0:
            raise ValueError("channel statistics need at least one image")
        mean = self._sum / self._count
        std = np.sqrt(np.maximum(self._sum_sq / self._count - mean**2, 0.0))
        return [float(v) for v in mean], [float(v) for v in std]


def channel_mean_std(
    images: Iterable[torch.Tensor | np.ndarray],
) -> tuple[list[float], list[float]]:
    """Compute per-channel mean and (population) std over a stream of images.

    Args:
        images: Iterable of arrays/tensors shaped (C, H, W) or batches (B, C, H, W).

    Returns:
        ``(mean, std)`` as lists of C floats.

    Raises:
        ValueError: When the iterable is empty or the channel counts differ.

    """
    stats = ChannelStats()
    for image in images:
        stats.update(image)
    return stats.result()


def compute_standardisation(
    samples: Iterable[Mapping[str, Any]], min_std: float = 1e-6
) -> Standardisation:
    """Derive a :class:`Standardisation` from samples of a dataset built with identity.

    Typical use: build the datamodule with ``Standardisation.identity()``, call ``setup()``,
    then pass ``datamodule.subset_dataset("train")`` (or one of its dataloaders) here.
    Streams: nothing but the running sums is kept in memory.

    Args:
        samples: Iterable of sample dicts (or collated batches) with ``image_opt`` and
            ``image_sar``.
        min_std: Lower bound applied to each std so constant channels stay usable.

    Returns:
        The derived standardisation.

    """
    opt, sar = ChannelStats(), ChannelStats()
    for sample in samples:
        opt.update(sample["image_opt"])
        sar.update(sample["image_sar"])
    opt_mean, opt_std = opt.result()
    sar_mean, sar_std = sar.result()
    return Standardisation(
        opt_mean=opt_mean,
        opt_std=[max(v, min_std) for v in opt_std],
        sar_mean=sar_mean,
        sar_std=[max(v, min_std) for v in sar_std],
    )
