"""``synth scene``: one large simulated S1/S2 scene pair with a known class layout."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from cloudxfer.sim.cli import main
from cloudxfer.sim.large_scene import CELL
from cloudxfer.sim.schemes import SEN12MS_CLOUD

SIZE = 160  # not a multiple of the 64 px cell: the last cells are cut


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scene") / "s"
    assert main(["scene", "--out", str(out), "--size", str(SIZE), "--seed", "4"]) == 0
    return out


def _read(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as src:
        return src.read(), {**src.profile, "tags": src.tags()}


def test_scene_pair_mask_and_truth_share_one_grid(scene: Path) -> None:
    s2, p2 = _read(scene / "s2.tif")
    s1, p1 = _read(scene / "s1.tif")
    clouds, pc = _read(scene / "clouds.tif")
    truth, pt = _read(scene / "truth.tif")
    assert (s2.shape, s2.dtype) == ((13, SIZE, SIZE), np.uint16)
    assert (s1.shape, s1.dtype) == ((2, SIZE, SIZE), np.float32)
    assert clouds.shape == truth.shape == (1, SIZE, SIZE)
    for p in (p1, pc, pt):
        assert (p["crs"], p["transform"]) == (p2["crs"], p2["transform"])
    assert p2["tiled"] and p2["compress"] == "deflate"
    assert np.isfinite(s1).all() and -40 < s1.mean() < 5
    assert json.loads(pt["tags"]["class_names"]) == SEN12MS_CLOUD.names
    assert (scene / "classes.txt").read_text().split("\n")[:-1] == SEN12MS_CLOUD.names


def test_truth_is_one_class_per_cell_and_clouds_are_bright(scene: Path) -> None:
    truth = _read(scene / "truth.tif")[0][0]
    for top in range(0, SIZE, CELL):
        for left in range(0, SIZE, CELL):
            assert len(np.unique(truth[top : top + CELL, left : left + CELL])) == 1
    assert truth.max() < len(SEN12MS_CLOUD.names) and len(np.unique(truth)) > 1
    info = json.loads((scene / "scene.json").read_text())
    assert sum(info["pixels_per_class"].values()) == SIZE * SIZE
    clouds = _read(scene / "clouds.tif")[0][0].astype(bool)
    assert 0.05 < clouds.mean() < 0.7
    blue = _read(scene / "s2.tif")[0][1].astype(float)  # B02
    assert blue[clouds].mean() > 2 * blue[~clouds].mean()


def test_same_seed_same_scene_other_seed_another(scene: Path, tmp_path: Path) -> None:
    again, other = tmp_path / "again", tmp_path / "other"
    assert main(["scene", "--out", str(again), "--size", str(SIZE), "--seed", "4"]) == 0
    assert main(["scene", "--out", str(other), "--size", str(SIZE), "--seed", "5"]) == 0
    for name in ("s2.tif", "s1.tif", "clouds.tif", "truth.tif"):
        np.testing.assert_array_equal(_read(scene / name)[0], _read(again / name)[0])
    assert not np.array_equal(_read(scene / "s2.tif")[0], _read(other / "s2.tif")[0])


def test_bad_sizes_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scene", "--out", str(tmp_path / "x"), "--size", "32"]) == 2
    assert "--size must be >= 64" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
