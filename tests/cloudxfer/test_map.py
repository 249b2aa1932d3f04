"""``cloudxfer map``: scene-scale class maps from sliding windows, on tiny generated scenes."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.io import DatasetReader

from cloudxfer.cli import main as cloudxfer_main
from cloudxfer.mapping import cli as map_cli
from cloudxfer.mapping.cli import main
from cloudxfer.mapping.predictor import FallbackPolicy, MapModel, WindowClassifier
from cloudxfer.mapping.windows import StripAccumulator, window_offsets
from cloudxfer.stages import AuxiliaryDistillation
from cloudxfer.stages.target import TargetDistillation
from datamodules import Sen12msCloudDataModule
from datamodules.clouds import NO_CLOUDS
from datamodules.normalisation import Standardisation, scaling_constants

CLASSES = ["Barren", "Dense Forests", "Water"]
CRS = "EPSG:32632"
TRANSFORM = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0)
STANDARDISATION = Standardisation(
    opt_mean=[0.2338, 0.2473, 0.2602],
    opt_std=[0.1921, 0.1881, 0.1848],
    sar_mean=[0.4855, 0.2245, 0.4610],
    sar_std=[0.2096, 0.1765, 0.1339],
)
HEAD_GAIN = 20.0
"""Scales the random head so the tiny untrained models' classes depend on their input."""


def normalisation() -> dict[str, Any]:
    """What a Sen12msCloudDataModule without pasted clouds records in its checkpoints."""
    constants = scaling_constants()
    constants["sar"]["sar_nan"] = "fill"
    return {
        "dataset": "sen12ms_cloud",
        **constants,
        "standardisation": STANDARDISATION.to_dict(),
        "tile_size": 64,
        "tiling": "center",
        "clouds": asdict(NO_CLOUDS),
    }


def _save(module: Any, path: Path) -> Path:
    with torch.no_grad():
        module.model.head.weight.mul_(HEAD_GAIN)
    torch.save({"state_dict": module.state_dict(), "cloudxfer": module.stage_metadata()}, path)
    return path


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Untrained ResNet-10 checkpoints: F2 target, F1 SAR and F1 optical auxiliaries."""
    out = tmp_path_factory.mktemp("ckpts")
    torch.manual_seed(0)
    common = {"backbone": "resnet10", "class_names": CLASSES, "normalisation": normalisation()}
    target = TargetDistillation(
        teacher_opt="-", teacher_sar="-", teacher_source="-", **common
    ).eval()
    files = {"target": _save(target, out / "target.ckpt")}
    for modality in ("sar", "opt"):
        aux = AuxiliaryDistillation(teacher="-", modality=modality, **common).eval()
        files[f"aux_{modality}"] = _save(aux, out / f"aux_{modality}.ckpt")
    return files


def _write(path: Path, array: np.ndarray, **profile: Any) -> Path:
    settings = {"crs": CRS, "transform": TRANSFORM, **profile}
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=array.shape[2],
        height=array.shape[1],
        count=array.shape[0],
        dtype=str(array.dtype),
        **settings,
    ) as dst:
        dst.write(array)
    return path


def write_scene(
    folder: Path, height: int, width: int, seed: int = 0, **profile: Any
) -> tuple[Path, Path]:
    """A scene pair of three land 'classes' in vertical bands (DN and dB levels differ)."""
    rng = np.random.default_rng(seed)
    level = (np.arange(width) * 3 // width)[None, None, :]  # 0, 1, 2 across the scene
    s2 = (
        600
        + 900 * level
        + 40 * np.arange(13)[:, None, None]
        + rng.integers(0, 300, (13, height, width))
    )
    vv = -6.0 - 4.0 * level[0] + rng.normal(0.0, 1.0, (height, width))
    s1 = np.stack([vv, vv - 6.0 - level[0]]).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    opt = _write(folder / "s2.tif", s2.astype(np.uint16), **profile)
    sar = _write(folder / "s1.tif", s1, **profile)
    return opt, sar


def run_map(ckpt: Path, opt: Path | None, sar: Path, out: Path, *extra: str) -> int:
    args = ["--ckpt", str(ckpt), "--sar", str(sar), "--out", str(out), "--quiet", *extra]
    return main(args + (["--opt", str(opt)] if opt is not None else []))


def read_map(path: Path) -> tuple[np.ndarray, DatasetReader]:
    with rasterio.open(path) as src:
        return src.read(), src


# --- the window grid ----------------------------------------------------------------------


def test_windows_step_by_stride_and_the_last_sits_flush_with_the_border() -> None:
    assert window_offsets(200, 64, 32) == [0, 32, 64, 96, 128, 136]
    assert window_offsets(256, 64, 64) == [0, 64, 128, 192]
    assert window_offsets(64, 64, 32) == [0]
    for length, stride in ((200, 32), (1000, 48), (65, 64)):
        covered = np.zeros(length, int)
        for start in window_offsets(length, 64, stride):
            covered[start : start + 64] += 1
        assert covered.min() >= 1
    with pytest.raises(ValueError, match="stride"):
        window_offsets(200, 64, 65)
    with pytest.raises(ValueError, match="smaller than the window"):
        window_offsets(50, 64, 32)


def test_strip_accumulator_averages_overlaps_and_hands_rows_out_in_order() -> None:
    acc = StripAccumulator(width=8, classes=2, size=4)
    acc.add(0, np.array([1.0, 0.0]))
    acc.add(4, np.array([0.0, 1.0]))
    first = acc.finish(2)  # the next strip starts 2 rows down: rows 0-1 are final
    acc.add(0, np.array([0.0, 1.0]))
    acc.add(4, np.array([0.0, 1.0]))
    last = acc.finish(None)
    assert (first.top, last.top) == (0, 2)
    assert first.sums.shape == (2, 2, 8) and last.sums.shape == (2, 4, 8)
    np.testing.assert_array_equal(first.weights, 1.0)
    np.testing.assert_array_equal(last.weights[:2], 2.0)  # rows 2-3: both strips
    np.testing.assert_array_equal(last.weights[2:], 1.0)
    np.testing.assert_array_equal(last.sums[:, :2, 0], [[1.0, 1.0], [1.0, 1.0]])


# --- the map ------------------------------------------------------------------------------


def test_map_keeps_crs_and_transform_and_writes_classes_confidence_metadata_and_preview(
    ckpts: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    opt, sar = write_scene(tmp_path / "scene", 150, 200)
    out = tmp_path / "maps" / "map.tif"
    assert cloudxfer_main(["map", "--ckpt", str(ckpts["target"]), "--opt", str(opt),
                           "--sar", str(sar), "--out", str(out), "--quiet"]) == 0  # fmt: skip
    assert "wrote" in capsys.readouterr().out
    with rasterio.open(out) as src:
        data = src.read()
        assert (src.crs, src.transform, src.width, src.height) == (CRS, TRANSFORM, 200, 150)
        assert src.dtypes == ("uint8", "uint8") and src.nodata == 255
        assert src.profile["tiled"] and src.profile["compress"] == "deflate"
        assert json.loads(src.tags()["class_names"]) == CLASSES
        assert src.colormap(1)[2][:3] == (40, 100, 220)  # Water is blue
    assert data[0].max() < len(CLASSES)  # every pixel covered: no nodata anywhere
    assert 0 < data[1].min() and data[1].max() <= 100
    assert len(np.unique(data[0])) > 1
    assert (tmp_path / "maps" / "map.png").stat().st_size > 1000
    assert sorted(p.name for p in out.parent.iterdir()) == ["map.png", "map.tif"]  # no temp


def test_stride_64_stitches_exactly_the_tile_level_predictions(
    ckpts: dict[str, Path], make_sen12ms: Callable[..., Any], tmp_path: Path
) -> None:
    """A scene made of 4 x 4 known tiles maps, tile by tile, to what ``predict`` gives."""
    fixture = make_sen12ms(patches_per_class=6)  # 18 tiles, 16 used
    dm = Sen12msCloudDataModule(
        root=str(fixture.root),
        classes=fixture.classes,
        standardisation=STANDARDISATION,
        clouds=NO_CLOUDS,
        labels_file=fixture.labels_file,
        labelled_per_class=1,
        val_fraction=0.0,
        store=False,
    )
    dm.setup("fit")
    tiles = [ds[i] for ds in map(dm.subset_dataset, ("train", "test")) for i in range(len(ds))]
    samples = tiles[:16]
    # tile-level predictions: the stage's own predict_step on the datamodule's samples
    model = MapModel.load(ckpts["target"], frozenset({"target"}), "opt+sar")
    stage = TargetDistillation(
        teacher_opt="-", teacher_sar="-", teacher_source="-", backbone="resnet10",
        class_names=CLASSES, normalisation=normalisation(),
    )  # fmt: skip
    stage.model = model.model
    batch = {
        "image_opt": torch.stack([s["image_opt"] for s in samples]),
        "image_sar": torch.stack([s["image_sar"] for s in samples]),
        "id": [s["id"] for s in samples],
    }
    with torch.no_grad():
        rows = stage.predict_step(batch, 0)
    assert len({r["pred"] for r in rows}) > 1  # the check below can tell tiles apart
    s2 = np.zeros((13, 256, 256), np.uint16)
    s1 = np.zeros((2, 256, 256), np.float32)
    for k, s in enumerate(samples):
        r, c = divmod(k, 4)
        with rasterio.open(fixture.s2_paths[s["id"]]) as src:
            s2[:, 64 * r : 64 * r + 64, 64 * c : 64 * c + 64] = src.read()
        with rasterio.open(fixture.s1_paths[s["id"]]) as src:
            s1[:, 64 * r : 64 * r + 64, 64 * c : 64 * c + 64] = src.read()
    opt = _write(tmp_path / "s2.tif", s2, tiled=True, blockxsize=128, blockysize=128)
    sar = _write(tmp_path / "s1.tif", s1)
    assert run_map(ckpts["target"], opt, sar, tmp_path / "map.tif", "--stride", "64") == 0
    data, _ = read_map(tmp_path / "map.tif")
    for k, row in enumerate(rows):
        r, c = divmod(k, 4)
        tile = data[:, 64 * r : 64 * r + 64, 64 * c : 64 * c + 64]
        assert (tile[0] == row["pred"]).all(), f"tile {k}"
        assert np.abs(tile[1].astype(int) - round(100 * row["confidence"])).max() <= 1


def test_nodata_of_either_input_and_nan_sar_stay_nodata(
    ckpts: dict[str, Path], tmp_path: Path
) -> None:
    opt, sar = write_scene(tmp_path, 128, 192, nodata=None)
    with rasterio.open(opt, "r+") as dst:
        dst.nodata = 0
        s2 = dst.read()
        s2[:, :20, :30] = 0  # optical nodata in the top-left corner
        dst.write(s2)
    with rasterio.open(sar, "r+") as dst:
        s1 = dst.read()
        s1[:, 100:, 150:] = np.nan  # NaN SAR in the bottom-right corner
        dst.write(s1)
    assert run_map(ckpts["target"], opt, sar, tmp_path / "map.tif") == 0
    data, _ = read_map(tmp_path / "map.tif")
    nodata = np.zeros((128, 192), bool)
    nodata[:20, :30] = True
    nodata[100:, 150:] = True
    np.testing.assert_array_equal(data[0] == 255, nodata)
    np.testing.assert_array_equal(data[1] == 255, nodata)


def test_non_finite_optical_is_nodata_like_the_files_nodata_value(
    ckpts: dict[str, Path], tmp_path: Path
) -> None:
    opt, sar = write_scene(tmp_path, 128, 192)
    with rasterio.open(opt) as src:
        s2 = src.read().astype(np.float32)
    s2[:, :20, :30] = 0.0  # the file's nodata value, top-left
    s2[3, 100:, 150:] = np.inf  # one band of R, G, B is enough
    s2[2, :10, 170:] = -np.inf
    s2[1, 60:70, 90:100] = np.nan
    opt = _write(tmp_path / "s2_float.tif", s2, nodata=0.0)
    assert run_map(ckpts["target"], opt, sar, tmp_path / "map.tif") == 0
    data, _ = read_map(tmp_path / "map.tif")
    nodata = np.zeros((128, 192), bool)
    for rows, cols in ((slice(None, 20), slice(None, 30)), (slice(100, None), slice(150, None))):
        nodata[rows, cols] = True
    nodata[:10, 170:] = True
    nodata[60:70, 90:100] = True
    np.testing.assert_array_equal(data[0] == 255, nodata)
    np.testing.assert_array_equal(data[1] == 255, nodata)


def test_reads_are_windowed_never_the_whole_scene(
    ckpts: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opt, sar = write_scene(tmp_path, 320, 256, tiled=True, blockxsize=64, blockysize=64)
    reads: list[tuple[str, Any]] = []
    original = DatasetReader.read

    def spy(self: DatasetReader, *args: Any, **kwargs: Any) -> Any:
        reads.append((self.name, kwargs.get("window")))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(DatasetReader, "read", spy)
    assert run_map(ckpts["target"], opt, sar, tmp_path / "map.tif", "--no-preview") == 0
    inputs = [(name, w) for name, w in reads if name in (str(opt), str(sar))]
    assert {name for name, _ in inputs} == {str(opt), str(sar)}
    for _, window in inputs:
        assert window is not None and window.height * window.width < 320 * 256
        assert window.row_off % 64 == 0  # block-aligned starts of the 64-row blocks


def test_mismatched_twins_are_refused_naming_both_files_and_what_differs(
    ckpts: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    opt, _ = write_scene(tmp_path / "a", 128, 128)
    shifted = Affine(10.0, 0.0, 500640.0, 0.0, -10.0, 5000000.0)
    _, sar = write_scene(tmp_path / "b", 128, 160, transform=shifted, crs="EPSG:32633")
    out = tmp_path / "out" / "map.tif"
    assert run_map(ckpts["target"], opt, sar, out) == 2
    err = capsys.readouterr().err
    assert str(opt) in err and str(sar) in err
    assert "CRS" in err and "transform" in err and "size 128x128 vs 160x128" in err
    assert not out.parent.exists() or not any(out.parent.iterdir())


@pytest.mark.parametrize(
    ("shift", "accepted"),
    [(1e-7, True), (5e-5, False), (10.0, False)],
    ids=["float-noise", "beyond-1e-6-of-the-smaller-pixel-side", "one-pixel"],
)
def test_twin_transforms_agree_within_a_millionth_of_the_smaller_pixel_side(
    ckpts: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    shift: float,
    accepted: bool,
) -> None:
    # 10 m pixels along x, 200 m along y: the tolerance is 1e-6 of the smaller side (1e-5 m),
    # so a 5e-5 m shift, which 1e-6 of the larger side (2e-4 m) would forgive, still counts.
    grid = Affine(10.0, 0.0, 500000.0, 0.0, -200.0, 5000000.0)
    opt, _ = write_scene(tmp_path / "a", 128, 128, transform=grid)
    moved = Affine(10.0 + 1e-9, 0.0, 500000.0 + shift, 0.0, -200.0, 5000000.0 - shift)
    _, sar = write_scene(tmp_path / "b", 128, 128, transform=moved)
    out = tmp_path / "out" / "map.tif"
    code = run_map(ckpts["target"], opt, sar, out, "--no-preview")
    err = capsys.readouterr().err
    if accepted:
        assert code == 0 and out.is_file(), err
        return
    assert code == 2 and not out.exists()
    assert str(opt) in err and str(sar) in err and "not co-registered twins" in err
    assert "transform (10.0, 0.0, 500000.0" in err and "CRS" not in err and "size" not in err


def test_bad_inputs_are_refused_with_the_file_named_and_nothing_written(
    ckpts: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    opt, sar = write_scene(tmp_path, 128, 128)
    out = tmp_path / "map.tif"
    assert run_map(ckpts["aux_sar"], opt, sar, out) == 2  # an F1 checkpoint, not F2
    assert f"{ckpts['aux_sar']}: checkpoint is from stage 'auxiliary'" in capsys.readouterr().err
    assert run_map(ckpts["target"], tmp_path / "missing.tif", sar, out) == 2
    assert "missing.tif: optical file not found" in capsys.readouterr().err
    three = _write(tmp_path / "s2_rgb.tif", np.ones((3, 128, 128), np.uint16))
    assert run_map(ckpts["target"], three, sar, out) == 2
    assert "s2_rgb.tif: optical has 3 band(s)" in capsys.readouterr().err
    assert run_map(ckpts["target"], None, sar, out) == 2  # no optical and no fallback
    assert "--opt is required" in capsys.readouterr().err
    assert not out.exists()


def test_a_failure_while_mapping_leaves_no_file_behind(
    ckpts: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opt, sar = write_scene(tmp_path / "scene", 320, 128)
    calls = {"n": 0}
    original = WindowClassifier.__call__

    def failing(self: WindowClassifier, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise ValueError("simulated failure half way")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(WindowClassifier, "__call__", failing)
    out = tmp_path / "maps" / "map.tif"
    assert run_map(ckpts["target"], opt, sar, out, "--stride", "64", "--batch-size", "1") == 2
    assert calls["n"] == 3 and not any((tmp_path / "maps").iterdir())


def test_map_prints_its_oa_against_a_truth_raster(
    ckpts: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    opt, sar = write_scene(tmp_path, 128, 192)
    assert run_map(ckpts["target"], opt, sar, tmp_path / "map.tif", "--no-preview") == 0
    data, _ = read_map(tmp_path / "map.tif")
    # a truth numbering the classes in reverse order, one class per map pixel but a corner
    truth = (len(CLASSES) - 1 - data[0]).astype(np.uint8)
    truth[:64, :64] = (truth[:64, :64] + 1) % len(CLASSES)
    path = _write(tmp_path / "truth.tif", truth[None])
    with rasterio.open(path, "r+") as dst:
        dst.update_tags(class_names=json.dumps(CLASSES[::-1]))
    assert map_cli.score_map(tmp_path / "map.tif", path).oa == pytest.approx(
        1 - 64 * 64 / (128 * 192)
    )
    args = ["--truth", str(path), "--overwrite", "--no-preview"]
    assert run_map(ckpts["target"], opt, sar, tmp_path / "map.tif", *args) == 0
    assert (
        f"OA against {path}: {100 * (1 - 64 * 64 / (128 * 192)):.2f} %" in capsys.readouterr().out
    )


# --- missing or fully clouded optical -----------------------------------------------------


def _mask(folder: Path, height: int, width: int, clouded_cols: int) -> Path:
    mask = np.zeros((1, height, width), np.uint8)
    mask[:, :, :clouded_cols] = 1
    return _write(folder / "clouds.tif", mask)


def _tile_classes(data: np.ndarray) -> np.ndarray:
    return data[0][::64, ::64]


def test_sar_auxiliary_fallback_takes_the_sar_models_classes_where_clouded(
    ckpts: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    opt, sar = write_scene(tmp_path, 128, 256)
    mask = _mask(tmp_path, 128, 256, clouded_cols=128)  # left half fully clouded
    args = ["--stride", "64", "--mask", str(mask), "--no-preview"]
    assert run_map(ckpts["target"], opt, sar, tmp_path / "plain.tif", *args) == 0
    fallback = ["--fallback", "sar_auxiliary", "--sar-ckpt", str(ckpts["aux_sar"])]
    assert run_map(ckpts["target"], opt, sar, tmp_path / "fb.tif", *args, *fallback) == 0
    assert "4 by the sar_auxiliary fallback" in capsys.readouterr().out
    plain, fb = read_map(tmp_path / "plain.tif")[0], read_map(tmp_path / "fb.tif")[0]
    np.testing.assert_array_equal(fb[:, :, 128:], plain[:, :, 128:])  # clear: the target
    aux = MapModel.load(ckpts["aux_sar"], frozenset({"auxiliary"}), "sar", CLASSES)
    with rasterio.open(sar) as src:
        s1 = src.read()
    windows = np.stack([s1[:, r : r + 64, c : c + 64] for r in (0, 64) for c in (0, 64)])
    policy = FallbackPolicy("sar_auxiliary", 0.9, str(ckpts["aux_sar"]))
    target = MapModel.load(ckpts["target"], frozenset({"target"}), "opt+sar")
    preds = WindowClassifier(target, policy, aux)(
        None, windows, np.zeros((4, 64, 64), bool), np.ones((4, 64, 64), bool)
    )
    assert preds.fallback.all()
    expected = preds.probs.argmax(axis=1).reshape(2, 2)
    np.testing.assert_array_equal(_tile_classes(fb)[:, :2], expected)


def test_cloud_optical_fallback_ignores_the_optical_under_full_cloud(
    ckpts: dict[str, Path], tmp_path: Path
) -> None:
    opt_a, sar = write_scene(tmp_path / "a", 128, 256, seed=1)
    opt_b, _ = write_scene(tmp_path / "b", 128, 256, seed=2)
    with rasterio.open(opt_b, "r+") as dst:
        dst.write(np.full((13, 128, 256), 9000, np.uint16))  # bright everywhere: another image
    mask = _mask(tmp_path, 128, 256, clouded_cols=256)  # fully clouded scene
    args = ["--stride", "64", "--mask", str(mask), "--no-preview", "--fallback", "cloud_optical"]
    assert run_map(ckpts["target"], opt_a, sar, tmp_path / "a.tif", *args) == 0
    assert run_map(ckpts["target"], opt_b, sar, tmp_path / "b.tif", *args) == 0
    # missing optical altogether: the same thick cloud stands in for it
    assert run_map(ckpts["target"], None, sar, tmp_path / "none.tif", *args) == 0
    a, b = read_map(tmp_path / "a.tif")[0], read_map(tmp_path / "b.tif")[0]
    none = read_map(tmp_path / "none.tif")[0]
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, none)
    # without the fallback the optical content matters
    plain = ["--stride", "64", "--mask", str(mask), "--no-preview"]
    assert run_map(ckpts["target"], opt_a, sar, tmp_path / "pa.tif", *plain) == 0
    assert run_map(ckpts["target"], opt_b, sar, tmp_path / "pb.tif", *plain) == 0
    pa, pb = read_map(tmp_path / "pa.tif")[0], read_map(tmp_path / "pb.tif")[0]
    assert not np.array_equal(pa[1], pb[1])


def test_sar_auxiliary_fallback_needs_a_sar_auxiliary_of_the_same_classes(
    ckpts: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    opt, sar = write_scene(tmp_path, 128, 128)
    out = tmp_path / "map.tif"
    assert run_map(ckpts["target"], opt, sar, out, "--fallback", "sar_auxiliary") == 2
    assert "needs the F1 SAR auxiliary" in capsys.readouterr().err
    args = ["--fallback", "sar_auxiliary", "--sar-ckpt", str(ckpts["aux_opt"])]
    assert run_map(ckpts["target"], opt, sar, out, *args) == 2
    assert "modality is 'opt', expected 'sar'" in capsys.readouterr().err
    assert not out.exists()
