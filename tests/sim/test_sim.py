"""Tests of the simulator: layouts on disk, physics sanity, reproducibility, CLI behaviour."""

from __future__ import annotations

import argparse
import csv
import hashlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from PIL import Image

from cloudxfer.sim import generate
from cloudxfer.sim.cli import build_parser, main
from cloudxfer.sim.generate import PatchPlan, plan_target, render_target
from cloudxfer.sim.record import describe_simulation, simulation_record
from cloudxfer.sim.sar import correlated_speckle
from cloudxfer.sim.scene import SEASONS, draw_scene
from cloudxfer.sim.schemes import AID_SOURCE, HUNAN, SEN12MS_CLOUD, SOURCE

STEM = re.compile(r"^(ROIs\d{4}_(spring|summer|fall|winter))_s2_(\d+)_p(\d+)$")


def _read(path: Path) -> tuple[np.ndarray, rasterio.profiles.Profile]:
    with rasterio.open(path) as src:
        return src.read(), src.profile


def _labels(root: Path) -> list[dict[str, str]]:
    with (root / "labels.csv").open() as f:
        return list(csv.DictReader(f))


def _hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def sen12ms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sen") / "set"
    assert main(["target", "--out", str(out), "--pairs", "40", "--seed", "3"]) == 0
    return out


@pytest.fixture(scope="module")
def hunan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hunan") / "set"
    args = ["target", "--out", str(out), "--pairs", "60", "--seed", "5", "--scheme", "hunan"]
    assert main(args) == 0
    return out


def test_sen12ms_layout_names_dtypes_and_georeference(sen12ms: Path) -> None:
    rows = _labels(sen12ms)
    assert len(rows) == 40
    assert {p.name for p in sen12ms.iterdir() if p.is_dir()} <= set(SEASONS)
    origins: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for row in rows:
        m = STEM.match(row["patch"])
        assert m, row["patch"]
        season, scene, patch = m.group(1), m.group(3), m.group(4)
        files = {
            kind: sen12ms / season / f"{kind}_{scene}" / f"{season}_{kind}_{scene}_p{patch}.tif"
            for kind in ("s1", "s2", "lc")
        }
        s1, p1 = _read(files["s1"])
        s2, p2 = _read(files["s2"])
        lc, p3 = _read(files["lc"])
        assert (s1.dtype, s1.shape) == (np.float32, (2, 64, 64))
        assert (s2.dtype, s2.shape) == (np.uint16, (13, 64, 64))
        assert (lc.dtype, lc.shape) == (np.uint16, (4, 64, 64))
        assert not np.isnan(s1).any()
        assert s2.max() <= 15000 and s2.min() >= 1
        assert set(np.unique(lc[0])) <= set(range(1, 18))
        for prof in (p1, p2, p3):
            epsg = prof["crs"].to_epsg()
            assert 32601 <= epsg <= 32660
            t = prof["transform"]
            assert (t.a, t.e, t.b, t.d) == (10.0, -10.0, 0.0, 0.0)
            assert prof["transform"] == p2["transform"]
        origins.setdefault((season, scene), []).append((t.c, t.f))
    # patches of one scene tile a grid: offsets are whole multiples of 640 m, no overlap
    for pts in origins.values():
        arr = np.array(pts)
        assert len({tuple(p) for p in pts}) == len(pts)
        assert np.allclose(np.mod(arr - arr[0], 640.0), 0.0)


def test_labels_classes_and_split_lists_consistent(sen12ms: Path) -> None:
    classes = (sen12ms / "classes.txt").read_text().splitlines()
    assert classes == SEN12MS_CLOUD.names
    rows = _labels(sen12ms)
    assert (sen12ms / "labels.csv").read_text().splitlines()[0] == "patch,label"
    assert {r["label"] for r in rows} <= set(classes)
    train = (sen12ms / "train_list.txt").read_text().splitlines()
    test = (sen12ms / "test_list.txt").read_text().splitlines()
    assert all(x.endswith(".tif") for x in train + test)
    assert not set(train) & set(test)
    assert {x[:-4] for x in train + test} == {r["patch"] for r in rows}
    assert len(train) == 32 and len(test) == 8


def test_class_counts_follow_scheme_with_floor() -> None:
    for scheme in (SEN12MS_CLOUD, HUNAN):
        plans = plan_target(1200, 0, scheme)
        counts = np.bincount([p.label for p in plans], minlength=len(scheme.classes))
        assert counts.sum() == 1200 and counts.min() >= 30
        assert np.abs(counts / 1200 - scheme.proportions()).max() < 0.01
        # every class has >= 20 patches in the 80 % train part
        train = np.bincount([p.label for p in plans if p.train], minlength=len(counts))
        assert train.min() >= 20
    assert SEN12MS_CLOUD.allocate(40, 30) == [4] * 10


def _render_class(scheme_name: str, label: int, n: int, cloudy: bool = False) -> list:
    scheme = {"sen12ms_cloud": SEN12MS_CLOUD, "hunan": HUNAN}[scheme_name]
    samples = []
    for i in range(n):
        scene = draw_scene(i, np.random.default_rng(100 + i), hunan=scheme_name == "hunan")
        plan = PatchPlan(index=1000 * label + i, label=label, scene=i, row=0, col=0, train=True)
        samples.append(render_target(plan, scheme.classes[label], scene, 7, 64, cloudy))
    return samples


def test_physical_sanity_of_spectra_and_backscatter() -> None:
    idx = {n: i for i, n in enumerate(SEN12MS_CLOUD.names)}
    s = {n: _render_class("sen12ms_cloud", idx[n], 8) for n in idx}

    def mean(name: str, band: int, kind: str = "s2") -> float:
        return float(np.mean([getattr(x, kind)[band].astype(np.float64).mean() for x in s[name]]))

    # vegetation: NIR well above red
    assert mean("Dense Forests", 7) > 2.0 * mean("Dense Forests", 3)
    assert mean("Herbaceous", 7) > 1.5 * mean("Herbaceous", 3)
    # water: dark NIR, darkest VV of all classes
    assert mean("Water", 7) < 1000
    vv = {n: mean(n, 0, "s1") for n in idx}
    assert min(vv, key=vv.__getitem__) == "Water"
    assert -25.0 < vv["Water"] < -15.0
    # built-up brighter in VV than grassland (double bounce)
    assert (vv["Residential"] + vv["Industrial"]) / 2 > vv["Herbaceous"] + 2.0
    # forest: volume scattering lifts VH above grassland
    assert mean("Dense Forests", 1, "s1") > mean("Herbaceous", 1, "s1")
    # bare land: SWIR above red above blue-ish rise
    assert mean("Barren", 11) > mean("Barren", 3)
    # cloud-free set: no cirrus signal in B10
    assert mean("Barren", 10) < 100
    # speckle: pixel-to-pixel VV spread of a homogeneous class is several dB
    assert np.mean([x.s1[0].std() for x in s["Herbaceous"]]) > 1.5


@pytest.mark.parametrize("enl", [4.0, 5.0])
def test_speckle_keeps_the_products_looks_and_is_correlated(enl: float) -> None:
    speckle = correlated_speckle((2, 256, 256), enl, np.random.default_rng(3))
    assert speckle.mean() == pytest.approx(1.0, abs=0.01)
    assert 1.0 / speckle.var() == pytest.approx(enl, rel=0.1)  # ENL per pixel is the scene's

    # a 20 m resolution cell on a 10 m grid: neighbours share part of their speckle, pixels
    # four apart almost none
    def corr(shift: int) -> float:
        a, b = speckle[0, :, :-shift].ravel(), speckle[0, :, shift:].ravel()
        return float(np.corrcoef(a, b)[0, 1])

    assert corr(1) > 0.3 and abs(corr(4)) < 0.1


def test_sar_nan_flag() -> None:
    plan = PatchPlan(index=1, label=0, scene=0, row=0, col=0, train=True)
    scene = draw_scene(0, np.random.default_rng(0))
    spec = SEN12MS_CLOUD.classes[0]
    clean = render_target(plan, spec, scene, 1, 64, cloudy=False)
    dirty = render_target(plan, spec, scene, 1, 64, cloudy=False, nan_fraction=0.05)
    assert not np.isnan(clean.s1).any()
    assert 0.01 < np.isnan(dirty.s1[0]).mean() < 0.1


def test_same_seed_identical_bytes_other_seed_differs(tmp_path: Path) -> None:
    a, b, c, d = (tmp_path / x for x in "abcd")
    base = ["target", "--pairs", "12", "--seed", "11"]
    assert main([*base, "--out", str(a)]) == 0
    assert main([*base, "--out", str(b)]) == 0
    assert main([*base, "--out", str(d), "--workers", "2"]) == 0
    assert main(["target", "--pairs", "12", "--seed", "12", "--out", str(c)]) == 0
    ha, hb, hc, hd = _hashes(a), _hashes(b), _hashes(c), _hashes(d)
    assert ha == hb
    assert ha == hd  # parallel generation is byte-identical too
    tifs = [k for k in ha if k.endswith(".tif")]
    assert tifs and all(ha[k] != hc.get(k) for k in tifs)


def test_a_simulated_folder_records_how_it_was_made(sen12ms: Path, hunan: Path) -> None:
    made = {"generator": "target", "patch_size": 64, "nan_fraction": 0.0}
    assert simulation_record(sen12ms) == {**made, "scheme": "sen12ms_cloud", "pairs": 40, "seed": 3}
    assert simulation_record(hunan) == {**made, "scheme": "hunan", "pairs": 60, "seed": 5}
    assert describe_simulation(simulation_record(hunan) or {}).startswith(
        "simulated (target: nan_fraction 0.0, pairs 60, patch_size 64, scheme hunan, seed 5)"
    )
    assert simulation_record(sen12ms / "ROIs1158_spring") is None  # no record: not simulated


def test_hunan_layout_masks_and_cloud_share(hunan: Path) -> None:
    rows = _labels(hunan)
    assert (hunan / "labels.csv").read_text().splitlines()[0] == "id,label"
    assert (hunan / "classes.txt").read_text().splitlines() == HUNAN.names
    clouded, brighter = [], []
    for row in rows:
        opt, po = _read(hunan / "opt" / f"{row['id']}.tif")
        sar, _ = _read(hunan / "sar" / f"{row['id']}.tif")
        mask, _ = _read(hunan / "masks" / f"{row['id']}.tif")
        assert (opt.dtype, opt.shape) == (np.uint16, (13, 64, 64))
        assert (sar.dtype, sar.shape) == (np.float32, (2, 64, 64))
        assert (mask.dtype, mask.shape) == (np.uint8, (1, 64, 64))
        assert set(np.unique(mask)) <= {0, 1}
        assert po["crs"].to_epsg() == 32649
        clouded.append(bool(mask.any()))
        m = mask[0].astype(bool)
        if 0.1 < m.mean() < 0.9:
            brighter.append(opt[1][m].mean() > opt[1][~m].mean())
    assert 0.5 < np.mean(clouded) < 0.88
    assert np.mean(brighter) > 0.8  # cloud is brighter than the ground it hides


def test_source_image_folder(tmp_path: Path) -> None:
    out = tmp_path / "src"
    args = ["source", "--out", str(out), "--per-class", "3", "--seed", "1", "--size", "40"]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(SOURCE.names)
    assert (simulation_record(out) or {})["role"] == "nwpu"  # beside the class folders
    assert len(SOURCE.names) >= 16
    for name in SOURCE.names:
        files = sorted(p.name for p in (out / name).iterdir())
        assert files == [f"{name}_{i}.png" for i in range(3)]
        img = Image.open(out / name / files[0])
        assert img.mode == "RGB" and img.size == (40, 40)
        arr = np.asarray(img)
        assert arr.std() > 2.0  # not a flat image


def test_aid_role_has_its_own_classes_and_images(tmp_path: Path) -> None:
    out = tmp_path / "aid"
    args = ["source", "--out", str(out), "--per-class", "2", "--seed", "1", "--size", "40"]
    assert main([*args, "--role", "aid"]) == 0
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == sorted(AID_SOURCE.names)
    assert (simulation_record(out) or {})["role"] == "aid"
    assert set(AID_SOURCE.names).isdisjoint(SOURCE.names)  # another data set's class names
    # the same layout (forest) in both roles: another random stream, other pixels
    aid = np.asarray(Image.open(out / "Forest" / "Forest_0.png"))
    nwpu = generate.render_source(SOURCE.classes[SOURCE.names.index("forest")], 1, 7, 0, 40)
    assert aid.shape == nwpu.shape and not np.array_equal(aid, nwpu)


def test_refuses_non_empty_out_and_leaves_it_alone(tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["target", "--out", str(out), "--pairs", "5"]) == 2
    assert (out / "keep.txt").read_text() == "mine"
    assert main(["target", "--out", str(out), "--pairs", "5", "--overwrite"]) == 0
    assert not (out / "keep.txt").exists() and (out / "labels.csv").exists()


def test_crash_leaves_nothing_half_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = {"n": 0}
    original = generate.render_target

    def flaky(*args: object, **kwargs: object) -> generate.TargetSample:
        calls["n"] += 1
        if calls["n"] > 3:
            raise RuntimeError("boom")
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(generate, "render_target", flaky)
    out = tmp_path / "never"
    with pytest.raises(RuntimeError):
        main(["target", "--out", str(out), "--pairs", "8"])
    assert list(tmp_path.iterdir()) == []


def test_patch_size_256_and_cli_summary(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "big"
    assert main(["target", "--out", str(out), "--pairs", "2", "--patch-size", "256"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("wrote 2 sen12ms_cloud pairs") and "Barren=" in line
    row = _labels(out)[0]
    m = STEM.match(row["patch"])
    assert m
    s2, _ = _read(out / m.group(1) / f"s2_{m.group(3)}" / f"{row['patch']}.tif")
    assert s2.shape == (13, 256, 256)


def test_python_dash_m_entry_point(tmp_path: Path) -> None:
    out = tmp_path / "m"
    cmd = [sys.executable, "-m", "cloudxfer.sim", "target", "--out", str(out), "--pairs", "3"]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    assert len(_labels(out)) == 3
    bad = subprocess.run([*cmd[:3], "nonsense"], capture_output=True, text=True, check=False)
    assert bad.returncode != 0


@pytest.mark.parametrize("command", ["target", "source", "scene"])
def test_every_synth_option_has_help_and_shows_its_default(command: str) -> None:
    sub = next(
        action
        for action in build_parser()._actions  # argparse keeps no public list of subparsers
        if isinstance(action, argparse._SubParsersAction)
    ).choices[command]
    options = [a for a in sub._actions if a.option_strings and a.dest != "help"]
    assert options
    for option in options:
        assert option.help and len(option.help) > 5, option.option_strings
    text = sub.format_help()
    assert "(default: 0)" in text  # --seed: defaults are printed
