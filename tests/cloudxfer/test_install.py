"""A non-editable install carries the configs: the runner finds them outside the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_a_wheel_install_finds_its_configs(tmp_path: Path) -> None:
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    subprocess.run([*build, str(REPO), "-w", str(wheels)], check=True, cwd=tmp_path)
    (wheel,) = wheels.glob("cloudxfer-*.whl")
    install = [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site)]
    subprocess.run([*install, str(wheel)], check=True)
    env = {**os.environ, "PYTHONPATH": str(site)}
    probe = (
        "from cloudxfer.runner.plan import EXPERIMENTS, profile_path; print(EXPERIMENTS); "
        "print(profile_path('quick').is_file())"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    where, found = out.stdout.split()
    assert Path(where).is_relative_to(site) and found == "True"
    # the runner plans a whole table from the installed configs alone
    run = [sys.executable, "-m", "cloudxfer", "run", "--table", "table1", "--out", "t"]
    listed = subprocess.run(
        [*run, "--print-commands"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed.stderr
    assert f"{site}/cloudxfer/experiments/methods/target.yaml" in listed.stdout
