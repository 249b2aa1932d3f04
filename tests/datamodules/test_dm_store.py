"""Packed tile stores (``datamodules.store``): samples served from a store equal decoded ones.

Covers the three datamodules with ``store=True`` against ``store=False``, the cloud layers
against the previous pasting formula, invalidation (stale inputs, other settings), corruption
(rebuilt with a warning), read-only data roots, unwritable store folders, ``sample_key`` and
that a second setup decodes no GeoTIFF.
"""

import json
import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

import datamodules.clouds as clouds_module
from datamodules import (
    CloudConfig,
    CloudPaster,
    CloudyPairsDataModule,
    Sen12msCloudDataModule,
    SourceScenesDataModule,
    Standardisation,
)
from datamodules.clouds import (
    CLOUD_TEXTURE_AMPLITUDE,
    CLOUD_TINT,
    NO_CLOUDS,
    StoredCloudLayers,
    _shift,
    blend,
    fractal_field,
    paste_cloud,
    simulated_mask,
    stored_cloud_layers,
)
from datamodules.paired import DecodedTiles, StoredTiles
from datamodules.store import (
    STORE_DIR_ENV,
    PackedStore,
    StoreInvalid,
    content_key,
    default_store_dir,
    open_or_build,
)
from datamodules.tiles import PairReader

CLOUDS = CloudConfig(cloudy_share=0.5, seed=11)
MEAN = [0.4, 0.45, 0.5]
STD = [0.2, 0.25, 0.3]


# --- helpers ------------------------------------------------------------------------------
def sen12ms_dm(fixture, store_dir, **kwargs):
    kwargs.setdefault("labels_file", fixture.labels_file)
    kwargs.setdefault("standardisation", Standardisation.identity())
    kwargs.setdefault("clouds", CLOUDS)
    kwargs.setdefault("tile_size", 16)
    kwargs.setdefault("labelled_per_class", 2)
    return Sen12msCloudDataModule(
        root=str(fixture.root), classes=fixture.classes, store_dir=str(store_dir), **kwargs
    )


def pairs_dm(fixture, store_dir, **kwargs):
    kwargs.setdefault("tile_size", 16)
    kwargs.setdefault("labelled_per_class", 2)
    return CloudyPairsDataModule(
        root=str(fixture.root),
        classes=fixture.classes,
        standardisation=Standardisation.identity(),
        store_dir=str(store_dir),
        **kwargs,
    )


def source_dm(fixture, store_dir, **kwargs):
    kwargs.setdefault("image_size", 24)
    kwargs.setdefault("augment", False)
    return SourceScenesDataModule(
        str(fixture.root), mean=MEAN, std=STD, store_dir=str(store_dir), **kwargs
    )


def samples(dm, subsets=("train", "test")):
    out = {}
    for subset in subsets:
        dataset = dm.subset_dataset(subset)
        for i in range(len(dataset)):
            sample = dataset[i]
            assert sample["id"] not in out
            out[sample["id"]] = sample
    return out


def assert_same_samples(got, expected):
    assert list(got) == list(expected)  # same ids, same order
    for tile_id, want in expected.items():
        have = got[tile_id]
        assert set(have) == set(want)
        assert have["id"] == want["id"] == tile_id
        for key in ("image_opt", "image_sar"):
            if key in want:
                assert have[key].dtype == want[key].dtype
                np.testing.assert_array_equal(have[key].numpy(), want[key].numpy(), err_msg=key)
        assert have["label"].item() == want["label"].item()
        if "cloud_fraction" in want:
            a, b = have["cloud_fraction"].item(), want["cloud_fraction"].item()
            assert (math.isnan(a) and math.isnan(b)) or a == b, (tile_id, a, b)


def store_folders(store_dir, name):
    return {p.name for p in Path(store_dir).glob(f"{name}-*") if p.is_dir()}


def only_store(store_dir, name):
    (folder,) = store_folders(store_dir, name)
    return Path(store_dir) / folder


def file_snapshot(root):
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in Path(root).rglob("*")
    }


def flip_middle(path, count=16):
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    for i in range(middle, middle + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path):
    size = path.stat().st_size
    with path.open("r+b") as handle:
        handle.truncate(size - size // 3)


def garbage_manifest(path):
    path.write_text("{this is not json")


CORRUPTIONS = {
    "flip_opt": ("opt.npy", flip_middle),
    "truncate_sar": ("sar.npy", truncate),
    "garbage_manifest": ("manifest.json", garbage_manifest),
}


# --- 1. equality store on / off ------------------------------------------------------------
@pytest.mark.parametrize("tiling", ["grid", "center"])
def test_sen12ms_store_samples_equal_decoded(make_sen12ms, tmp_path, tiling):
    fixture = make_sen12ms(patches_per_class=5, patch_size=32)
    store = tmp_path / "store"
    stored_dm = sen12ms_dm(fixture, store, tiling=tiling, store=True)
    stored = samples(stored_dm)
    assert isinstance(stored_dm._source, StoredTiles)
    assert isinstance(stored_dm._layers, StoredCloudLayers)
    assert len(stored) == 15 * (4 if tiling == "grid" else 1)
    fractions = [s["cloud_fraction"].item() for s in stored.values()]
    assert any(f == 0.0 for f in fractions) and any(f > 0.0 for f in fractions)  # some clouds
    for cache in (True, False):
        decoded_dm = sen12ms_dm(
            fixture, tmp_path / "unused", tiling=tiling, store=False, cache=cache
        )
        decoded = samples(decoded_dm)
        assert isinstance(decoded_dm._source, DecodedTiles)
        assert (decoded_dm._source.cache is None) == (not cache)
        assert_same_samples(stored, decoded)
    assert not (tmp_path / "unused").exists()  # store=False writes no store
    # A second store-backed datamodule (store opened, not built) serves the same samples.
    assert_same_samples(samples(sen12ms_dm(fixture, store, tiling=tiling)), stored)


@pytest.mark.parametrize("masks", ["uint8", None])
@pytest.mark.parametrize("tiling", ["grid", "center"])
def test_cloudy_pairs_store_samples_equal_decoded(make_cloudy_pairs, tmp_path, tiling, masks):
    fixture = make_cloudy_pairs(pairs_per_class=5, size=32, masks=masks)
    store = tmp_path / "store"
    stored_dm = pairs_dm(fixture, store, tiling=tiling)
    stored = samples(stored_dm)
    assert isinstance(stored_dm._source, StoredTiles)
    fractions = np.array([s["cloud_fraction"].item() for s in stored.values()])
    if masks is None:
        assert np.isnan(fractions).all()
    else:
        assert not np.isnan(fractions).any() and len(set(fractions.tolist())) > 2
        if tiling == "center":  # the centre crop of a left-to-right cut mask
            for tile_id, sample in stored.items():
                cut = round(fixture.fractions[tile_id] * 32)
                want = min(max(cut - 8, 0), 16) / 16
                assert sample["cloud_fraction"].item() == pytest.approx(want)
    for cache in (True, False):
        decoded = samples(
            pairs_dm(fixture, tmp_path / "unused", tiling=tiling, store=False, cache=cache)
        )
        assert_same_samples(stored, decoded)


def test_source_scenes_store_samples_equal_decoded(make_image_folder, tmp_path):
    fixture = make_image_folder(images_per_class=4, size=32)
    store = tmp_path / "store"
    stored_dm = source_dm(fixture, store)
    stored = samples(stored_dm, ("train", "val"))
    assert stored_dm._stored is not None
    assert len(stored) == 12 and next(iter(stored.values()))["image_opt"].shape == (3, 24, 24)
    for check_images in (True, False):
        decoded_dm = source_dm(fixture, tmp_path / "unused", store=False, check_images=check_images)
        assert_same_samples(stored, samples(decoded_dm, ("train", "val")))
    # The val split is never augmented: equal even with augment on.
    val = samples(source_dm(fixture, store, augment=True), ("val",))
    assert_same_samples(val, samples(source_dm(fixture, store, store=False), ("val",)))


@pytest.mark.parametrize("kind", ["source", "sen12ms"])
@pytest.mark.parametrize("spelling", ["symlink", "relative"])
def test_store_shared_by_two_spellings_of_one_root(
    make_image_folder, make_sen12ms, tmp_path, monkeypatch, spelling, kind
):
    """Same files give the same store key, so the store must serve any spelling of the root."""
    store = tmp_path / "store"
    if kind == "source":
        fixture = make_image_folder(images_per_class=3, size=32)
        subsets, name = ("val",), "source_scenes"

        def make(root):
            return SourceScenesDataModule(
                str(root), mean=MEAN, std=STD, image_size=24, augment=False, store_dir=str(store)
            )
    else:
        fixture = make_sen12ms(patches_per_class=3, patch_size=32)
        subsets, name = ("train", "test"), "sen12ms_cloud"

        def make(root):
            return Sen12msCloudDataModule(
                str(root),
                fixture.classes,
                Standardisation.identity(),
                clouds=CLOUDS,
                tile_size=16,
                labelled_per_class=1,
                store_dir=str(store),
            )

    first = samples(make(fixture.root), subsets)
    if spelling == "symlink":
        root = tmp_path / "link_to_data"
        root.symlink_to(fixture.root, target_is_directory=True)
    else:  # e.g. the same config run from another working directory
        monkeypatch.chdir(fixture.root.parent)
        root = Path(fixture.root.name)
    assert_same_samples(samples(make(root), subsets), first)
    assert len(store_folders(store, name)) == 1  # the store was shared, not rebuilt


# --- 2. cloud pasting equals the previous formula -----------------------------------------
def old_paste_cloud(rgb, mask, kind, rng, config):
    """The pasting formula before cloud layers (reference implementation)."""
    size = mask.shape[0]
    brightness = rng.uniform(config.thick_reflectance_min, config.thick_reflectance_max)
    texture = CLOUD_TEXTURE_AMPLITUDE * fractal_field(rng, size, octaves=3)
    tint = np.asarray(CLOUD_TINT, np.float32)[:, None, None]
    radiance = np.clip((brightness + texture)[None] * tint, 0.0, 1.0)
    if kind == "thick":
        alpha = mask
    else:
        alpha = mask * rng.uniform(config.thin_opacity_min, config.thin_opacity_max)
    out = rgb * (1.0 - alpha[None]) + radiance * alpha[None]
    if config.shadow and kind == "thick" and config.shadow_offset > 0:
        angle = rng.uniform(0, 2 * np.pi)
        dy = int(round(config.shadow_offset * np.sin(angle)))
        dx = int(round(config.shadow_offset * np.cos(angle)))
        shifted = _shift(mask, dy, dx)
        out = out * (1.0 - config.shadow_strength * shifted * (1.0 - mask))[None]
    return np.clip(out, 0.0, 1.0).astype(np.float32)


@pytest.mark.parametrize(
    ("kind", "shadow"), [("thin", False), ("thick", False), ("thick", True), ("thin", True)]
)
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_paste_cloud_equals_previous_formula(kind, shadow, seed):
    config = CloudConfig(shadow=shadow, shadow_offset=3, shadow_strength=0.6)
    size = 24
    data_rng = np.random.default_rng(100 + seed)
    rgb = data_rng.uniform(0.0, 1.0, (3, size, size)).astype(np.float32)
    mask = simulated_mask(data_rng, size, 0.5, config)
    assert 0.0 < mask.mean() < 1.0
    new = paste_cloud(rgb, mask, kind, np.random.default_rng(seed), config)
    old = old_paste_cloud(rgb, mask, kind, np.random.default_rng(seed), config)
    assert new.dtype == np.float32 and new.shape == rgb.shape
    np.testing.assert_allclose(new, old, rtol=0, atol=1e-6)
    assert np.abs(new - rgb).max() > 0.05  # the cloud changed the tile


def test_paster_equals_stored_layers(tmp_path, monkeypatch):
    config = CloudConfig(cloudy_share=0.6, seed=5, shadow=True)
    paster = CloudPaster(config)
    ids = [f"ROIs1158_spring_s2_1_p{i}" for i in range(20)]
    size = 16
    layers = stored_cloud_layers(paster, ids, size, tmp_path / "store")
    rgb = np.random.default_rng(0).uniform(0, 1, (3, size, size)).astype(np.float32)
    clear = 0
    for tile_id in ids:
        pasted, fraction = paster(rgb, tile_id)
        layer = layers.layer(tile_id, size)
        plan = paster.plan(tile_id)
        if layer is None:
            clear += 1
            assert not plan.clouded
            assert fraction == 0.0
            np.testing.assert_array_equal(pasted, rgb)
            continue
        assert plan.clouded
        np.testing.assert_array_equal(pasted, blend(rgb, layer))
        assert layer.fraction == pytest.approx(fraction, abs=1e-7)
        assert np.float32(layer.fraction) == np.float32(fraction)
        assert fraction > 0.0
    assert 0 < clear < len(ids)
    # Reopened (not rebuilt): same layers.
    calls = []
    original = CloudPaster.layer

    def counting(self, tile_id, size):
        calls.append(tile_id)
        return original(self, tile_id, size)

    monkeypatch.setattr(CloudPaster, "layer", counting)
    again = stored_cloud_layers(paster, ids, size, tmp_path / "store")
    assert calls == []
    for tile_id in ids:
        a, b = layers.layer(tile_id, size), again.layer(tile_id, size)
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a.keep, b.keep)
            np.testing.assert_array_equal(a.add, b.add)


# --- 3. stale stores and settings ----------------------------------------------------------
def test_rewritten_geotiff_gives_new_store_and_new_content(make_sen12ms, tmp_path, write_geotiff):
    fixture = make_sen12ms(patches_per_class=3, patch_size=32)
    store = tmp_path / "store"
    kwargs = {"tiling": "center", "clouds": NO_CLOUDS, "labelled_per_class": 1}
    first = sen12ms_dm(fixture, store, **kwargs)
    old = samples(first)
    before = store_folders(store, "sen12ms_cloud")
    assert before == {f"sen12ms_cloud-{first._tiles_key[:20]}"}
    patch = fixture.patches[0]
    path = fixture.s2_paths[patch]
    old_stat = path.stat()
    new_dn = np.full((13, 32, 32), 4321, np.uint16)
    write_geotiff(path, new_dn)
    if path.stat().st_mtime_ns == old_stat.st_mtime_ns:  # coarse clock: make the change visible
        os.utime(path, ns=(old_stat.st_atime_ns, old_stat.st_mtime_ns + 10**9))
    assert path.stat().st_size == old_stat.st_size  # same size: only the mtime tells

    second = sen12ms_dm(fixture, store, **kwargs)
    new = samples(second)
    np.testing.assert_allclose(new[patch]["image_opt"].numpy(), 0.4321, rtol=1e-6)
    assert not np.array_equal(new[patch]["image_opt"].numpy(), old[patch]["image_opt"].numpy())
    assert_same_samples(new, samples(sen12ms_dm(fixture, store, store=False, **kwargs)))
    after = store_folders(store, "sen12ms_cloud")
    assert len(after) == 2 and before < after
    assert f"sen12ms_cloud-{second._tiles_key[:20]}" in after - before


def test_other_settings_give_other_stores(make_sen12ms, tmp_path):
    fixture = make_sen12ms(patches_per_class=3, patch_size=32)
    store = tmp_path / "store"
    base = {"labelled_per_class": 1}
    seen = set()
    for settings in (
        {"tiling": "center", "tile_size": 16},
        {"tiling": "grid", "tile_size": 16},
        {"tiling": "grid", "tile_size": 8},
    ):
        dm = sen12ms_dm(fixture, store, **base, **settings)
        dm.setup()
        folders = store_folders(store, "sen12ms_cloud")
        assert len(folders) == len(seen) + 1, settings
        seen = folders
        assert all(s["image_opt"].shape[-1] == settings["tile_size"] for s in samples(dm).values())
    # Another cloud seed: new cloud layers, but the tile store is reused.
    clouds_before = store_folders(store, "clouds")
    dm = sen12ms_dm(fixture, store, **base, tiling="grid", tile_size=8, clouds=CloudConfig(seed=99))
    dm.setup()
    assert store_folders(store, "sen12ms_cloud") == seen
    assert len(store_folders(store, "clouds")) == len(clouds_before) + 1


def test_content_key_depends_on_kind_settings_and_files(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"123")
    b.write_bytes(b"456")
    key = content_key("k", {"x": 1}, [a, b])
    assert key == content_key("k", {"x": 1}, [a, b]) and len(key) == 64
    assert key != content_key("other", {"x": 1}, [a, b])
    assert key != content_key("k", {"x": 2}, [a, b])
    assert key != content_key("k", {"x": 1}, [a])
    a.write_bytes(b"1234")  # size change
    assert key != content_key("k", {"x": 1}, [a, b])


def test_default_store_dir(monkeypatch, tmp_path):
    monkeypatch.setenv(STORE_DIR_ENV, str(tmp_path / "env"))
    assert default_store_dir() == tmp_path / "env"
    monkeypatch.delenv(STORE_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_store_dir() == tmp_path / "xdg" / "cloudxfer" / "store"


def test_store_dir_none_uses_environment(make_cloudy_pairs, tmp_path, monkeypatch):
    fixture = make_cloudy_pairs(pairs_per_class=3, size=16)
    monkeypatch.setenv(STORE_DIR_ENV, str(tmp_path / "from_env"))
    dm = CloudyPairsDataModule(
        str(fixture.root),
        fixture.classes,
        Standardisation.identity(),
        tile_size=16,
        labelled_per_class=1,
    )
    dm.setup()
    assert len(store_folders(tmp_path / "from_env", "cloudy_pairs")) == 1


def test_filled_sar_still_reported_when_served_from_store(make_sen12ms, tmp_path, write_geotiff):
    fixture = make_sen12ms(patches_per_class=3, patch_size=32)
    patch = fixture.patches[1]
    sar = np.full((2, 32, 32), -12.0, np.float32)
    sar[0, 16:20, 16:19] = np.nan  # 12 values, inside the centre tile
    write_geotiff(fixture.s1_paths[patch], sar)
    store = tmp_path / "store"
    kwargs = {"labelled_per_class": 1, "tiling": "center"}
    for _ in range(2):  # built, then opened: the same warning both times
        dm = sen12ms_dm(fixture, store, **kwargs)
        with pytest.warns(UserWarning, match=r"replaced 12 NaN/inf SAR value\(s\) in 1 file"):
            dm.setup()
        assert isinstance(dm._source, StoredTiles)
    with pytest.warns(UserWarning, match="replaced 12"):
        decoded = samples(sen12ms_dm(fixture, store, store=False, **kwargs))
    stored = samples(dm)
    assert np.isfinite(stored[patch]["image_sar"].numpy()).all()
    assert_same_samples(stored, decoded)


# --- 4. corruption ---------------------------------------------------------------------------
@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_corrupt_tile_store_is_rebuilt_with_warning(make_sen12ms, tmp_path, corruption):
    fixture = make_sen12ms(patches_per_class=3, patch_size=32)
    store = tmp_path / "store"
    kwargs = {"tiling": "grid", "labelled_per_class": 1}
    first = sen12ms_dm(fixture, store, **kwargs)
    first.setup()
    folder = only_store(store, "sen12ms_cloud")
    name, corrupt = CORRUPTIONS[corruption]
    corrupt(folder / name)
    with pytest.raises(StoreInvalid):
        PackedStore.open(folder, first._tiles_key)
    dm = sen12ms_dm(fixture, store, **kwargs)
    with pytest.warns(UserWarning, match="rebuilding"):
        dm.setup()
    assert isinstance(dm._source, StoredTiles)
    assert_same_samples(samples(dm), samples(sen12ms_dm(fixture, store, store=False, **kwargs)))
    assert only_store(store, "sen12ms_cloud") == folder  # rebuilt in place, nothing left over
    assert not [p for p in store.iterdir() if p.name.startswith(".")]
    PackedStore.open(folder, first._tiles_key)  # valid again


def test_corrupt_cloud_store_is_rebuilt_with_warning(make_sen12ms, tmp_path):
    fixture = make_sen12ms(patches_per_class=3, patch_size=32)
    store = tmp_path / "store"
    kwargs = {"tiling": "grid", "labelled_per_class": 1}
    sen12ms_dm(fixture, store, **kwargs).setup()
    flip_middle(only_store(store, "clouds") / "add.npy")
    dm = sen12ms_dm(fixture, store, **kwargs)
    with pytest.warns(UserWarning, match="rebuilding"):
        dm.setup()
    assert isinstance(dm._layers, StoredCloudLayers)
    assert_same_samples(samples(dm), samples(sen12ms_dm(fixture, store, store=False, **kwargs)))


def small_arrays():
    rng = np.random.default_rng(0)
    return {
        "opt": rng.uniform(0, 1, (6, 3, 16, 16)).astype(np.float32),
        "sar": rng.uniform(0, 1, (6, 3, 16, 16)).astype(np.float32),
        "mask_fraction": np.linspace(0, 1, 6, dtype=np.float32),
    }


def build_small(tmp_path, key="k" * 64):
    arrays = small_arrays()
    store = open_or_build(tmp_path / "store", "unit", key, lambda: (arrays, {"n": 6}))
    return store, arrays


def test_packed_store_round_trip(tmp_path):
    store, arrays = build_small(tmp_path)
    assert store.path == tmp_path / "store" / f"unit-{'k' * 20}"
    assert store.meta == {"n": 6}
    for name, array in arrays.items():
        assert isinstance(store.arrays[name], np.memmap)
        assert not store.arrays[name].flags.writeable
        np.testing.assert_array_equal(store.arrays[name], array)
    manifest = json.loads((store.path / "manifest.json").read_text())
    assert manifest["key"] == "k" * 64 and set(manifest["arrays"]) == set(arrays)


@pytest.mark.parametrize(
    "corruption",
    [
        "missing_folder",
        "missing_manifest",
        "other_key",
        "other_format",
        "flip_opt",
        "truncate_sar",
        "grow_sar",
        "missing_array",
        "shape_in_manifest",
        "garbage_manifest",
        "manifest_list",
        "manifest_missing_arrays",
        "manifest_arrays_list",
    ],
)
def test_packed_store_open_rejects(tmp_path, corruption):
    store, _ = build_small(tmp_path)
    folder, key = store.path, store.key
    manifest_path = folder / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del store
    if corruption == "missing_folder":
        folder = tmp_path / "nowhere"
    elif corruption == "missing_manifest":
        manifest_path.unlink()
    elif corruption == "other_key":
        key = "x" * 64
    elif corruption == "other_format":
        manifest["format"] += 1
        manifest_path.write_text(json.dumps(manifest))
    elif corruption == "flip_opt":
        flip_middle(folder / "opt.npy")
    elif corruption == "truncate_sar":
        truncate(folder / "sar.npy")
    elif corruption == "grow_sar":
        with (folder / "sar.npy").open("ab") as handle:
            handle.write(b"\0" * 64)
    elif corruption == "missing_array":
        (folder / "mask_fraction.npy").unlink()
    elif corruption == "shape_in_manifest":
        manifest["arrays"]["opt"]["shape"] = [3, 6, 16, 16]
        manifest_path.write_text(json.dumps(manifest))
    elif corruption == "garbage_manifest":
        garbage_manifest(manifest_path)
    elif corruption == "manifest_list":
        manifest_path.write_text("[1, 2, 3]")
    elif corruption == "manifest_missing_arrays":
        del manifest["arrays"]
        manifest_path.write_text(json.dumps(manifest))
    elif corruption == "manifest_arrays_list":
        manifest["arrays"] = list(manifest["arrays"].values())
        manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(StoreInvalid):
        PackedStore.open(folder, key)


def test_open_or_build_builds_only_when_needed(tmp_path):
    arrays = small_arrays()
    calls = []

    def build():
        calls.append(1)
        return arrays, {"n": 6}

    key = "a" * 64
    store_dir = tmp_path / "store"
    first = open_or_build(store_dir, "unit", key, build)
    assert len(calls) == 1
    second = open_or_build(store_dir, "unit", key, build)
    assert len(calls) == 1 and second.path == first.path
    np.testing.assert_array_equal(second.arrays["opt"], arrays["opt"])
    for name, corrupt in CORRUPTIONS.values():
        corrupt(first.path / name)
        with pytest.warns(UserWarning, match="rebuilding"):
            rebuilt = open_or_build(store_dir, "unit", key, build)
        np.testing.assert_array_equal(rebuilt.arrays["sar"], arrays["sar"])
        open_or_build(store_dir, "unit", key, build)  # valid again: no build
    assert len(calls) == 1 + len(CORRUPTIONS)
    open_or_build(store_dir, "unit", "b" * 64, build)  # another key: another store
    assert len(calls) == 2 + len(CORRUPTIONS)
    assert {p.name for p in store_dir.iterdir()} == {f"unit-{'a' * 20}", f"unit-{'b' * 20}"}


def test_open_or_build_failed_build_leaves_nothing(tmp_path):
    def build():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        open_or_build(tmp_path / "store", "unit", "c" * 64, build)
    assert not (tmp_path / "store").exists() or not list((tmp_path / "store").iterdir())


# --- 5. read-only data root ------------------------------------------------------------------
def set_tree_writable(root, writable):
    paths = [root, *Path(root).rglob("*")]
    for path in sorted(paths, key=lambda p: len(p.parts), reverse=not writable):
        mode = path.stat().st_mode
        if writable:
            path.chmod(mode | stat.S_IWUSR)
        else:
            path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def dataset_and_factory(kind, make_sen12ms, make_cloudy_pairs, make_image_folder):
    """A tiny dataset of ``kind``, ``make(store_dir, **kwargs)`` and the subsets to compare."""
    if kind == "sen12ms":
        fixture = make_sen12ms(patches_per_class=3, patch_size=32)

        def make(store_dir, **kwargs):
            return sen12ms_dm(fixture, store_dir, labelled_per_class=1, **kwargs)

        return fixture, make, ("train", "test")
    if kind == "cloudy_pairs":
        fixture = make_cloudy_pairs(pairs_per_class=3, size=16)

        def make(store_dir, **kwargs):
            return pairs_dm(fixture, store_dir, labelled_per_class=1, **kwargs)

        return fixture, make, ("train", "test")
    fixture = make_image_folder(images_per_class=3, size=32)

    def make(store_dir, **kwargs):
        return source_dm(fixture, store_dir, **kwargs)

    return fixture, make, ("train", "val")


@pytest.mark.parametrize("kind", ["sen12ms", "cloudy_pairs", "source"])
def test_read_only_root(kind, make_sen12ms, make_cloudy_pairs, make_image_folder, tmp_path):
    fixture, make, subsets = dataset_and_factory(
        kind, make_sen12ms, make_cloudy_pairs, make_image_folder
    )
    store = tmp_path / "store"
    root = fixture.root
    before = file_snapshot(root)
    set_tree_writable(root, False)
    try:
        read_only = not os.access(root, os.W_OK)
        if os.geteuid() != 0:
            assert read_only  # chmod worked: the root really is read-only
        stored = samples(make(store), subsets)
        assert len(list(store.iterdir())) >= 1
        stored_again = samples(make(store), subsets)  # opened, not rebuilt
        decoded = samples(make(tmp_path / "unused", store=False), subsets)
    finally:
        set_tree_writable(root, True)
    assert_same_samples(stored, decoded)
    assert_same_samples(stored_again, decoded)
    # Nothing written (or touched) inside the data root. As root, chmod cannot make the tree
    # read-only (read_only is False): this no-write check is then what remains of the test.
    assert file_snapshot(root) == before


# --- 6. unwritable store_dir -------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["sen12ms", "cloudy_pairs", "source"])
def test_unwritable_store_dir_falls_back(
    kind, make_sen12ms, make_cloudy_pairs, make_image_folder, tmp_path
):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    bad = blocker / "store"
    _, make, subsets = dataset_and_factory(kind, make_sen12ms, make_cloudy_pairs, make_image_folder)
    dm = make(bad)
    with pytest.warns(UserWarning, match="cannot write"):
        dm.setup()
    if kind == "source":
        assert dm._stored is None
    else:
        assert isinstance(dm._source, DecodedTiles)
    assert blocker.is_file() and blocker.read_text() == "not a folder"
    assert_same_samples(
        samples(dm, subsets), samples(make(tmp_path / "unused", store=False), subsets)
    )


# --- 7. sample_key -------------------------------------------------------------------------------
def test_sample_key(make_sen12ms, tmp_path):
    fixture = make_sen12ms(patches_per_class=3, patch_size=32)
    store = tmp_path / "store"
    kwargs = {"labelled_per_class": 1, "tiling": "grid"}
    key = sen12ms_dm(fixture, store, **kwargs).sample_key("test")
    assert len(key) == 64
    assert sen12ms_dm(fixture, store, **kwargs).sample_key("test") == key
    # The samples do not depend on where they come from: neither does the key.
    assert sen12ms_dm(fixture, store, store=False, **kwargs).sample_key("test") == key
    other_seed = CloudConfig(cloudy_share=CLOUDS.cloudy_share, seed=CLOUDS.seed + 1)
    assert sen12ms_dm(fixture, store, clouds=other_seed, **kwargs).sample_key("test") != key
    other_std = Standardisation([0.1, 0.2, 0.3], [1.0, 1.0, 1.0], [0.0] * 3, [1.0] * 3)
    assert sen12ms_dm(fixture, store, standardisation=other_std, **kwargs).sample_key("test") != key
    dm = sen12ms_dm(fixture, store, **kwargs)
    assert dm.sample_key("train") != key
    assert dm.sample_key("labelled") != dm.sample_key("unlabelled")
    assert sen12ms_dm(fixture, store, split_seed=3, **kwargs).sample_key("test") != key


# --- 8. a second setup decodes nothing -----------------------------------------------------------
def test_second_setup_reads_no_geotiff_and_computes_no_cloud(make_sen12ms, tmp_path, monkeypatch):
    fixture = make_sen12ms(patches_per_class=3, patch_size=32)
    store = tmp_path / "store"
    kwargs = {"labelled_per_class": 1, "tiling": "grid"}
    expected = samples(sen12ms_dm(fixture, store, **kwargs))

    def forbidden(*args, **kwargs):
        raise AssertionError("a GeoTIFF was decoded although the store exists")

    monkeypatch.setattr(PairReader, "read_patch", forbidden)
    monkeypatch.setattr(clouds_module.CloudPaster, "layer", forbidden)
    for cache in (True, False):
        dm = sen12ms_dm(fixture, store, cache=cache, **kwargs)
        dm.setup()
        assert_same_samples(samples(dm), expected)
        batch = next(iter(dm.test_dataloader()))
        assert isinstance(batch["image_opt"], torch.Tensor)
    # The check is live: without a store, the reader is needed.
    with pytest.raises(AssertionError, match="decoded"):
        sen12ms_dm(fixture, store, store=False, **kwargs).setup()


def test_second_setup_cloudy_pairs_reads_no_geotiff(make_cloudy_pairs, tmp_path, monkeypatch):
    fixture = make_cloudy_pairs(pairs_per_class=3, size=32)
    store = tmp_path / "store"
    expected = samples(pairs_dm(fixture, store, labelled_per_class=1))
    monkeypatch.setattr(
        PairReader, "read_patch", lambda *a, **k: pytest.fail("GeoTIFF decoded with a store")
    )
    assert_same_samples(samples(pairs_dm(fixture, store, labelled_per_class=1)), expected)
