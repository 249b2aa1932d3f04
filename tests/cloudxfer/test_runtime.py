"""configure_threads: intra-op threads + DataLoader workers never exceed the available cores;
configure_matmul_precision: TF32 matmuls for CUDA runs only."""

from __future__ import annotations

import os

import pytest
import torch

import cloudxfer.runtime as runtime
from cloudxfer.runtime import available_cores, configure_matmul_precision, configure_threads


@pytest.fixture(autouse=True)
def restore_threads(monkeypatch):
    """Give torch its thread count and the environment their values back after each test."""
    threads = torch.get_num_threads()
    # monkeypatch restores these variables (or their absence) on teardown, whatever we set.
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(name, os.environ.get(name, "sentinel"))
        monkeypatch.delenv(name)
    yield
    torch.set_num_threads(threads)


def assert_configured(count: int) -> None:
    assert torch.get_num_threads() == count
    assert os.environ["OMP_NUM_THREADS"] == str(count)
    assert os.environ["MKL_NUM_THREADS"] == str(count)


def test_available_cores_is_the_affinity_set() -> None:
    cores = available_cores()
    assert isinstance(cores, int) and cores >= 1
    if hasattr(os, "sched_getaffinity"):
        assert cores == len(os.sched_getaffinity(0))
    assert cores <= (os.cpu_count() or cores)


def test_available_cores_falls_back_to_cpu_count(monkeypatch) -> None:
    def no_affinity(pid: int) -> set[int]:
        raise OSError("not supported")

    monkeypatch.setattr(os, "sched_getaffinity", no_affinity, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 7)
    assert available_cores() == 7
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert available_cores() == 1


def test_wanted_threads_capped_by_cores() -> None:
    expected = min(2, available_cores())
    assert configure_threads(2, 0) == expected
    assert_configured(expected)
    assert configure_threads(1, 0) == 1
    assert_configured(1)


def test_none_takes_every_core() -> None:
    torch.set_num_threads(1)
    cores = available_cores()
    assert configure_threads(None, 0) == cores
    assert_configured(cores)


def test_workers_use_up_all_cores_still_one_thread() -> None:
    cores = available_cores()
    for workers in (cores, cores + 3):
        assert configure_threads(None, workers) == 1
        assert_configured(1)
        assert configure_threads(4, workers) == 1
        assert_configured(1)


@pytest.mark.parametrize(
    ("cores", "threads", "workers", "expected"),
    [
        (8, None, 0, 8),
        (8, None, 3, 5),
        (8, 2, 3, 2),
        (8, 6, 3, 5),
        (8, 16, 0, 8),
        (4, None, 4, 1),
        (4, 3, 10, 1),
        (1, None, 0, 1),
    ],
)
def test_budget_is_cores_minus_workers(monkeypatch, cores, threads, workers, expected) -> None:
    monkeypatch.setattr(runtime, "available_cores", lambda: cores)
    assert configure_threads(threads, workers) == expected
    assert_configured(expected)


@pytest.mark.parametrize(
    ("threads", "workers", "message"),
    [(0, 0, "threads must be >= 1"), (-2, 0, "threads must be >= 1"), (1, -1, "num_workers")],
)
def test_invalid_arguments_raise_and_change_nothing(threads, workers, message) -> None:
    torch.set_num_threads(1)
    with pytest.raises(ValueError, match=message):
        configure_threads(threads, workers)
    assert torch.get_num_threads() == 1
    assert "OMP_NUM_THREADS" not in os.environ
    assert "MKL_NUM_THREADS" not in os.environ


@pytest.fixture
def restore_matmul_precision():
    """Give torch its float32 matmul precision back after the test."""
    precision = torch.get_float32_matmul_precision()
    yield
    torch.set_float32_matmul_precision(precision)


@pytest.mark.usefixtures("restore_matmul_precision")
def test_matmul_precision_is_set_for_cuda_runs_only() -> None:
    torch.set_float32_matmul_precision("highest")
    assert configure_matmul_precision("high", cuda=False) is False  # a CPU run: untouched
    assert torch.get_float32_matmul_precision() == "highest"
    assert configure_matmul_precision(None, cuda=True) is False  # null: torch's default kept
    assert torch.get_float32_matmul_precision() == "highest"
    assert configure_matmul_precision("high", cuda=True) is True
    assert torch.get_float32_matmul_precision() == "high"
    with pytest.raises(ValueError, match="matmul_precision must be .* got 'tf32'"):
        configure_matmul_precision("tf32", cuda=True)
