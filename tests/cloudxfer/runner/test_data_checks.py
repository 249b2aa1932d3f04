"""The runner on a prepared data file: no data override, the right roles, checks before fits."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from cloudxfer.cli import main
from cloudxfer.runner.cli import check_data, classes_note, data_description
from cloudxfer.runner.cli import main as run_main
from cloudxfer.runner.plan import Setting, plan, profile_path
from tests.official_files import write_image_folder, write_sen12ms_release


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("world")
    release = write_sen12ms_release(base)
    data, subset = base / "sen12ms.yaml", base / "subset.yaml"
    for out, extra in ((data, []), (subset, ["--max-pairs", "30"])):
        args = ["prepare", "sen12ms", "--root", str(release.root), "--labels",
                str(release.labels), "--splits", str(release.splits), "--out", str(out),
                "--tile-size", "32", "--labelled-per-class", "2",
                "--drop-small-classes"]  # fmt: skip
        assert main([*args, *extra]) == 0
    nwpu = write_image_folder(base / "NWPU-RESISC45", ["airplane", "beach", "forest"], per_class=2)
    aid = write_image_folder(base / "AID", ["BareLand", "Beach", "Port"], per_class=2, size=64)
    return {"data": data, "subset": subset, "root": release.root, "nwpu": nwpu, "aid": aid}


def _commands(out: str) -> list[list[str]]:
    return [shlex.split(line) for line in out.splitlines() if line.startswith("python ")]


def test_a_table_runs_on_a_prepared_data_file_with_no_data_override(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--table", "table1", "--dataset", str(world["data"]), "--source-root",
            str(world["nwpu"]), "--profile", "smoke", "--out", str(tmp_path),
            "--print-commands"]  # fmt: skip
    assert run_main(args) == 0
    commands = _commands(capsys.readouterr().out)
    assert len(commands) > 20
    for command in commands:
        assert not any(
            a.startswith(("--data.", "--stage.", "--profile.data_root")) for a in command
        )
        data = [a for a in command if a.startswith("--data=")]
        assert data in ([], [f"--data={world['data']}"])
    assert sum(1 for c in commands if f"--data={world['data']}" in c) > 20


def test_tables_take_source_sets_of_their_role_only(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["run", "--dataset", str(world["data"]), "--profile", "smoke", "--out", str(tmp_path),
            "--print-commands"]  # fmt: skip
    assert main([*base, "--table", "table2", "--source-root", str(world["aid"])]) == 0
    capsys.readouterr()
    assert main([*base, "--table", "table1", "--source-root", str(world["aid"])]) == 2
    err = capsys.readouterr().err
    assert err == (f"cloudxfer: error: {world['aid']}: table1 takes a source set of the nwpu "
                   "role (NWPU-RESISC45); this folder plays the aid role\n")  # fmt: skip
    assert main([*base, "--table", "table3", "--source-root", str(world["nwpu"])]) == 2
    assert "table3 runs on real cloudy pairs (Hunan-style) data" in capsys.readouterr().err


def test_a_chain_on_unprepared_data_stops_before_any_training(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["chain", "--profile", "smoke", "--data-root", str(world["root"]),
                 "--source-root", str(world["nwpu"]), "--out", str(tmp_path / "c1")])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"cloudxfer: error: {world['root'] / 'labels.csv'}: labels file not found"
    )
    assert "`cloudxfer prepare`" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c1" / "runs").exists()


def test_the_simulators_standardisation_on_data_on_disk_is_a_warning(
    world: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "mine"
    (root).mkdir()
    (root / "labels.csv").write_text("patch,label\n")
    setting = Setting(profile_path("smoke"), "sen12ms_cloud",
                      overrides=(f"--profile.data_root={root}",
                                 f"--profile.source_root={world['nwpu']}"))  # fmt: skip
    check_data(plan(["source_finetune"], [0], setting))
    err = capsys.readouterr().err
    assert err.startswith("warning: sen12ms_cloud.yaml standardises with constants measured on ")
    assert f"`cloudxfer stats {setting.dataset} --data-root {root}`" in err


def test_prepared_data_enters_run_ids_by_its_content(
    world: dict[str, Path], tmp_path: Path
) -> None:
    def ids(data: Path) -> dict[str, str]:
        setting = Setting(profile_path("smoke"), data,
                          overrides=(f"--profile.source_root={world['nwpu']}",))  # fmt: skip
        return {r.method.name: r.run_id for r in plan(["target"], [0], setting)}

    full, subset = ids(world["data"]), ids(world["subset"])
    assert full["source_pretrain"] == subset["source_pretrain"]  # reads no target data
    assert all(full[m] != subset[m] for m in ("source_finetune", "aux_opt", "target"))
    assert ids(world["data"]) == full


def test_the_header_says_whose_classes_a_table_has(world: dict[str, Path]) -> None:
    note = classes_note("table1", world["data"])
    assert note is not None and note.startswith("the data file's ")
    assert "not the paper's" in note and "Forest" in note
    assert (
        classes_note("table1", profile_path("smoke").parents[1] / "data" / "sen12ms_cloud.yaml")
        is None
    )
    setting = Setting(profile_path("smoke"), world["data"],
                      overrides=(f"--profile.source_root={world['nwpu']}",))  # fmt: skip
    text = data_description(setting)
    assert text.startswith(
        f"data_root {world['root']} (data on disk; data file {world['data']}, content "
    )
    assert f"; source_root {world['nwpu']} (no simulation record: data on disk)" in text
