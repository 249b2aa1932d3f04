import json
import math

import numpy as np
import pytest
import torch

from datamodules.errors import DataError
from datamodules.normalisation import (
    S1_DB_MAX,
    S1_DB_MIN,
    S2_RGB_BANDS,
    SAR_RATIO_DB_MAX,
    SAR_RATIO_DB_MIN,
    Standardisation,
    channel_mean_std,
    compute_standardisation,
    fix_sar_nonfinite,
    sar_channels,
    scale_db,
    scale_ratio,
    scale_s2,
    scaling_constants,
    warn_filled_sar,
)


def test_rgb_band_constants_are_b04_b03_b02():
    assert S2_RGB_BANDS == (4, 3, 2)


def test_scale_s2_clips_and_divides():
    dn = np.array([0, 5000, 10000, 12000], dtype=np.uint16)
    np.testing.assert_allclose(scale_s2(dn), [0.0, 0.5, 1.0, 1.0])
    assert scale_s2(dn).dtype == np.float32


def test_scale_db_maps_clip_range_to_unit_interval():
    db = np.array([-40.0, -25.0, -12.5, 0.0, 5.0], dtype=np.float32)
    np.testing.assert_allclose(scale_db(db), [0.0, 0.0, 0.5, 1.0, 1.0])
    assert (S1_DB_MIN, S1_DB_MAX) == (-25.0, 0.0)


def test_ratio_channel_uses_its_own_range():
    span = SAR_RATIO_DB_MAX - SAR_RATIO_DB_MIN
    mid = SAR_RATIO_DB_MIN + span / 2
    values = np.array([SAR_RATIO_DB_MIN - 3, SAR_RATIO_DB_MIN, mid, SAR_RATIO_DB_MAX + 1])
    np.testing.assert_allclose(scale_ratio(values), [0.0, 0.0, 0.5, 1.0], atol=1e-6)


def test_sar_channels_vv_vh_ratio():
    vv = np.full((2, 2), -10.0, np.float32)
    vh = np.full((2, 2), -20.0, np.float32)
    out = sar_channels(np.stack([vv, vh]))
    assert out.shape == (3, 2, 2) and out.dtype == np.float32
    np.testing.assert_allclose(out[0], 1 - 10 / 25)
    np.testing.assert_allclose(out[1], 1 - 20 / 25)
    expected_ratio = (10.0 - SAR_RATIO_DB_MIN) / (SAR_RATIO_DB_MAX - SAR_RATIO_DB_MIN)
    np.testing.assert_allclose(out[2], expected_ratio, rtol=1e-6)


def test_fill_policy_replaces_and_counts():
    arr = np.array([[np.nan, np.inf], [-np.inf, -7.0]], dtype=np.float32)
    fixed, count = fix_sar_nonfinite(arr, "fill", "x.tif")
    assert count == 3
    np.testing.assert_array_equal(fixed, [[-25.0, 0.0], [-25.0, -7.0]])


def test_reject_policy_names_file():
    arr = np.array([np.nan, 1.0], dtype=np.float32)
    with pytest.raises(DataError, match=r"some/sar\.tif.*NaN"):
        fix_sar_nonfinite(arr, "reject", "some/sar.tif")
    fixed, count = fix_sar_nonfinite(np.zeros(2, np.float32), "reject", "ok.tif")
    assert count == 0


def test_warn_filled_sar_names_files():
    with pytest.warns(UserWarning, match=r"a\.tif \(3\)"):
        warn_filled_sar({"a.tif": 3, "b.tif": 0})


def test_standardisation_requires_three_positive_values():
    with pytest.raises(ValueError):
        Standardisation(
            opt_mean=[0.0, 0.0], opt_std=[1, 1, 1], sar_mean=[0, 0, 0], sar_std=[1, 1, 1]
        )
    with pytest.raises(ValueError):
        Standardisation(
            opt_mean=[0, 0, 0], opt_std=[1, 0, 1], sar_mean=[0, 0, 0], sar_std=[1, 1, 1]
        )
    with pytest.raises(TypeError):
        Standardisation()  # type: ignore[call-arg]  # no silent defaults


def test_standardisation_round_trip_and_apply():
    std = Standardisation(
        opt_mean=[0.1, 0.2, 0.3], opt_std=[0.5, 0.5, 0.5], sar_mean=[0, 0, 0], sar_std=[2, 2, 2]
    )
    again = Standardisation.from_dict(json.loads(json.dumps(std.to_dict())))
    assert again == std
    image = np.ones((3, 2, 2), np.float32)
    np.testing.assert_allclose(std.apply_opt(image)[:, 0, 0], [1.8, 1.6, 1.4], rtol=1e-6)
    np.testing.assert_allclose(std.apply_sar(image), 0.5)


def test_channel_mean_std_matches_numpy():
    rng = np.random.default_rng(0)
    images = [
        rng.normal(loc=[[[1.0]], [[2.0]], [[3.0]]], scale=0.5, size=(3, 8, 8)) for _ in range(5)
    ]
    mean, std = channel_mean_std(torch.from_numpy(im) for im in images)
    stacked = np.stack(images)
    np.testing.assert_allclose(mean, stacked.mean(axis=(0, 2, 3)), rtol=1e-9)
    np.testing.assert_allclose(std, stacked.std(axis=(0, 2, 3)), rtol=1e-9)
    with pytest.raises(ValueError):
        channel_mean_std([])


def test_compute_standardisation_from_samples():
    samples = [
        {"image_opt": torch.full((3, 4, 4), float(i)), "image_sar": torch.full((3, 4, 4), 2.0)}
        for i in range(4)
    ]
    result = compute_standardisation(samples)
    np.testing.assert_allclose(result.opt_mean, [1.5] * 3)
    np.testing.assert_allclose(result.opt_std, [math.sqrt(1.25)] * 3)
    np.testing.assert_allclose(result.sar_std, [1e-6] * 3)  # constant channel floored


def test_scaling_constants_json_serialisable():
    constants = scaling_constants()
    assert json.loads(json.dumps(constants)) == constants
    assert constants["optical"]["band_names"] == ["B04", "B03", "B02"]
