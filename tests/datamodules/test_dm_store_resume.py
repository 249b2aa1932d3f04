"""A packed store streams chunk by chunk, and a build killed mid-way resumes where it stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import datamodules.paired as paired
from datamodules import Sen12msCloudDataModule, Standardisation
from datamodules.clouds import NO_CLOUDS
from datamodules.errors import DataError
from datamodules.faults import KILL_AT_ENV
from datamodules.tiles import PairReader

REPO = Path(__file__).resolve().parents[2]
SCRIPT = """
import sys
sys.path.insert(0, {repo!r})
import datamodules.paired as paired
paired.STORE_CHUNK = 5
from datamodules import Sen12msCloudDataModule, Standardisation
from datamodules.clouds import NO_CLOUDS
Sen12msCloudDataModule(
    root={root!r}, classes={classes!r}, standardisation=Standardisation.identity(),
    store_dir={store!r}, tile_size=16, tiling="grid", labelled_per_class=2, clouds=NO_CLOUDS,
).setup()
"""


def _dm(fixture, store_dir: Path, **kwargs: object) -> Sen12msCloudDataModule:  # type: ignore[no-untyped-def]
    return Sen12msCloudDataModule(
        root=str(fixture.root), classes=fixture.classes, standardisation=Standardisation.identity(),
        store_dir=str(store_dir), tile_size=16, tiling="grid", labelled_per_class=2,
        clouds=NO_CLOUDS, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


def test_a_store_build_killed_mid_way_resumes_where_it_stopped(
    make_sen12ms, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    fixture = make_sen12ms(patches_per_class=8, patch_size=32)  # 24 patches, 4 tiles each
    store = tmp_path / "store"
    script = SCRIPT.format(repo=str(REPO), root=str(fixture.root), classes=fixture.classes,
                           store=str(store))  # fmt: skip
    env = {**os.environ, KILL_AT_ENV: "store:checkpoint:3", "PYTHONWARNINGS": "ignore"}
    killed = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    (partial,) = [p for p in store.iterdir() if p.name.endswith(".partial")]
    assert json.loads((partial / "progress.json").read_text())["patches"] == 15
    reads: list[str] = []
    read_patch = PairReader.read_patch

    def counted(self: PairReader, ref, window=None):  # type: ignore[no-untyped-def]
        reads.append(ref.patch)
        return read_patch(self, ref, window)

    monkeypatch.setattr(paired, "STORE_CHUNK", 5)
    monkeypatch.setattr(PairReader, "read_patch", counted)
    resumed = _dm(fixture, store)
    resumed.setup()
    assert len(reads) == 24 - 15  # only the patches after the last checkpoint
    assert not [p for p in store.iterdir() if p.name.startswith(".")]  # partial and lock gone
    direct = _dm(fixture, store, store=False)
    for subset in ("train", "test"):
        got, want = resumed.subset_dataset(subset), direct.subset_dataset(subset)
        assert [t.id for t in got.tiles] == [t.id for t in want.tiles]
        for i in range(len(want)):
            for key in ("image_opt", "image_sar"):
                np.testing.assert_array_equal(got[i][key].numpy(), want[i][key].numpy())


def test_a_build_that_meets_bad_data_leaves_nothing_behind(make_sen12ms, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    fixture = make_sen12ms(patches_per_class=3, patch_size=32)
    broken = sorted(fixture.s1_paths.values())[-1]
    broken.write_bytes(broken.read_bytes()[:200])  # a truncated SAR patch, read last
    store = tmp_path / "store"
    with pytest.raises(DataError, match="cannot read SAR patch as GeoTIFF"):
        _dm(fixture, store).setup()
    assert not list(store.iterdir())  # no partial store, no lock file
