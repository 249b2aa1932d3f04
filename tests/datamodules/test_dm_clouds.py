import numpy as np
import pytest
from PIL import Image

from datamodules.clouds import (
    CLOUD_MASK_THRESHOLD,
    CloudConfig,
    CloudPaster,
    cloud_fraction,
    load_mask_folder,
    paste_cloud,
    read_mask_file,
    simulated_mask,
)
from datamodules.errors import DataError

TILE = 64
N_TILES = 400


def ground(seed=0):
    rng = np.random.default_rng(seed)
    return (0.05 + 0.05 * rng.random((3, TILE, TILE))).astype(np.float32)


def test_share_and_coverage_statistics():
    paster = CloudPaster(CloudConfig(seed=7))
    fractions = [paster(ground(), f"tile_{i}")[1] for i in range(N_TILES)]
    clouded = [f for f in fractions if f > 0]
    assert abs(len(clouded) / N_TILES - 0.5) < 0.07
    assert abs(np.mean(clouded) - 0.5) < 0.04
    assert min(clouded) >= 0.25 and max(clouded) <= 0.75  # 0.5 +/- jitter 0.2 (+ rounding)


def test_configurable_share_and_coverage():
    paster = CloudPaster(CloudConfig(cloudy_share=0.2, coverage=0.3, coverage_jitter=0.0))
    fractions = [paster(ground(), f"t{i}")[1] for i in range(N_TILES)]
    clouded = [f for f in fractions if f > 0]
    assert abs(len(clouded) / N_TILES - 0.2) < 0.06
    np.testing.assert_allclose(clouded, 0.3, atol=0.01)


def test_thin_share_ratio():
    paster = CloudPaster(CloudConfig())
    plans = [paster.plan(f"t{i}") for i in range(N_TILES)]
    kinds = [p.kind for p in plans if p.clouded]
    assert abs(kinds.count("thin") / len(kinds) - 0.5) < 0.1


def test_no_clouds_when_share_zero():
    rgb = ground()
    out, fraction = CloudPaster(CloudConfig(cloudy_share=0.0))(rgb, "x")
    assert fraction == 0.0
    np.testing.assert_array_equal(out, rgb)


def test_simulated_mask_hits_coverage_and_has_soft_edges():
    rng = np.random.default_rng(0)
    for coverage in (0.1, 0.5, 0.9):
        mask = simulated_mask(rng, TILE, coverage, CloudConfig())
        assert abs(cloud_fraction(mask) - coverage) < 2 / TILE**2 + 1e-9
        assert mask.min() >= 0 and mask.max() <= 1
    soft = simulated_mask(rng, TILE, 0.5, CloudConfig())
    assert ((soft > 0.05) & (soft < 0.95)).mean() > 0.01  # a soft transition band
    hard = simulated_mask(rng, TILE, 0.5, CloudConfig(edge_softness=0.0))
    assert set(np.unique(hard)) <= {0.0, 1.0}


def test_thick_is_bright_and_flat_thin_keeps_ground_texture():
    mask = np.ones((TILE, TILE), np.float32)
    rgb, other = ground(1), ground(2)
    config = CloudConfig()

    def paste(image, kind):
        return paste_cloud(image, mask, kind, np.random.default_rng(0), config)

    thick, thin = paste(rgb, "thick"), paste(rgb, "thin")
    assert 0.4 * 0.97 - 0.1 <= thick.mean() <= 0.9 + 0.1
    assert thick.std() < 0.1  # low texture
    assert thick.mean() > thin.mean() > rgb.mean()
    # same cloud over another ground: thick hides the ground, thin lets it through
    np.testing.assert_allclose(paste(other, "thick"), thick, atol=1e-6)
    ground_share = (paste(other, "thin") - thin) / (other - rgb)
    assert (
        1 - config.thin_opacity_max - 1e-3
        <= ground_share.mean()
        <= 1 - config.thin_opacity_min + 1e-3
    )
    assert ground_share.std() < 1e-3


def test_paste_only_under_mask_and_shadow_darkens_beside():
    rgb = ground(2)
    mask = np.zeros((TILE, TILE), np.float32)
    mask[20:40, 20:40] = 1.0
    config = CloudConfig(shadow=True, shadow_strength=0.5, shadow_offset=6)
    out = paste_cloud(rgb, mask, "thick", np.random.default_rng(0), config)
    assert out[:, 20:40, 20:40].mean() > 0.35
    outside = mask == 0
    assert np.all(out[:, outside] <= rgb[:, outside] + 1e-6)
    assert (out[:, outside] < rgb[:, outside] - 1e-6).any()  # some shadow
    no_shadow = paste_cloud(rgb, mask, "thick", np.random.default_rng(0), CloudConfig())
    np.testing.assert_array_equal(no_shadow[:, outside], rgb[:, outside])


def test_deterministic_per_tile_whatever_the_order():
    ids = [f"tile_{i}" for i in range(50)]
    a = CloudPaster(CloudConfig(seed=3))
    b = CloudPaster(CloudConfig(seed=3))
    forward = {i: a(ground(), i) for i in ids}
    backward = {i: b(ground(), i) for i in reversed(ids)}
    for i in ids:
        np.testing.assert_array_equal(forward[i][0], backward[i][0])
        assert forward[i][1] == backward[i][1]
    other = CloudPaster(CloudConfig(seed=4))
    assert any(other(ground(), i)[1] != forward[i][1] for i in ids)


def test_config_validation():
    with pytest.raises(ValueError):
        CloudConfig(cloudy_share=1.5)
    with pytest.raises(ValueError):
        CloudConfig(thick_reflectance_min=0.9, thick_reflectance_max=0.4)


def write_mask_folder(folder):
    folder.mkdir()
    stack = np.zeros((3, 80, 90, 1), np.uint8)
    stack[0, :, :45] = 1
    stack[1, :40] = 1
    np.save(folder / "stack.npy", stack)
    png = np.zeros((100, 100), np.uint8)
    png[:, :30] = 255
    Image.fromarray(png).save(folder / "m.png")
    np.save(folder / "prob.npy", np.full((50, 50), 0.7, np.float32))
    (folder / "README.md").write_text("ignored")


def test_load_mask_folder_formats(tmp_path):
    write_mask_folder(tmp_path / "masks")
    masks = load_mask_folder(tmp_path / "masks")
    assert len(masks) == 5  # png + prob + 3 stacked
    assert all(m.dtype == np.float32 and 0 <= m.min() and m.max() <= 1 for m in masks)
    assert masks[0].max() == 1.0  # png 255 -> 1


def test_real_masks_crop_or_resize_to_tile(tmp_path):
    write_mask_folder(tmp_path / "masks")
    paster = CloudPaster(CloudConfig(cloudy_share=1.0, masks_dir=str(tmp_path / "masks")))
    for size in (32, 128):  # crop (masks >= 32) and resize (masks < 128)
        rgb = (0.05 * np.ones((3, size, size))).astype(np.float32)
        for i in range(20):
            out, fraction = paster(rgb, f"t{i}")
            assert out.shape == (3, size, size)
            assert 0.0 <= fraction <= 1.0


@pytest.mark.parametrize(
    ("name", "writer", "pattern"),
    [
        ("bad.npy", lambda p: p.write_bytes(b"not numpy"), "cannot read"),
        ("bad.png", lambda p: p.write_bytes(b"\x89PNG broken"), "cannot read"),
        ("shape.npy", lambda p: np.save(p, np.zeros((2, 3, 4, 5), np.uint8)), "shape"),
        ("range.npy", lambda p: np.save(p, np.full((4, 4), 2.5, np.float32)), r"\[0, 1\]"),
        ("rgb.png", lambda p: Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(p), "shape"),
    ],
)
def test_bad_mask_files_name_the_file(tmp_path, name, writer, pattern):
    path = tmp_path / name
    writer(path)
    with pytest.raises(DataError, match=pattern) as info:
        read_mask_file(path)
    assert str(path) in str(info.value)
    with pytest.raises(DataError) as info:
        CloudPaster(CloudConfig(masks_dir=str(tmp_path)))
    assert str(path) in str(info.value)


def test_empty_or_missing_masks_folder(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_mask_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no cloud mask files"):
        load_mask_folder(tmp_path / "empty")


def test_real_s2cloudless_masks(shared_cloud_masks_dir):
    masks = read_mask_file(shared_cloud_masks_dir / "s2cloudless_clm.npy")
    assert masks.shape == (68, 101, 100)
    paster = CloudPaster(
        CloudConfig(cloudy_share=1.0, masks_dir=str(shared_cloud_masks_dir), seed=1)
    )
    rgb = ground(3)
    fractions = []
    for i in range(200):
        out, fraction = paster(rgb, f"real_{i}")
        mask = paster.mask(f"real_{i}", TILE, paster.plan(f"real_{i}").coverage)
        assert fraction == pytest.approx(cloud_fraction(mask))
        changed = np.abs(out - rgb).max(axis=0) > 1e-6
        assert not (changed & (mask == 0)).any()  # pixels change only under the mask
        if fraction > 0:
            assert out[:, mask >= CLOUD_MASK_THRESHOLD].mean() > rgb.mean()
        fractions.append(fraction)
    assert 0.3 < np.mean(fractions) < 0.7  # best-of-8 crops track the ~0.5 target
