"""The training record's pieces: epoch means, the convergence criterion, pseudo-label quality."""

from __future__ import annotations

import math

import pytest
import torch

from cloudxfer.diagnostics import EpochMeans, convergence, teacher_diagnostics


def test_epoch_means_weight_batches_by_size_and_reset() -> None:
    means = EpochMeans()
    means.add({"loss": torch.tensor(1.0), "kept": 0.5}, n=3)
    means.add({"loss": torch.tensor(3.0), "kept": 1.0}, n=1)
    assert means.compute() == pytest.approx({"loss": 1.5, "kept": 0.625})
    assert means.compute() == {}  # a new epoch starts empty


def test_epoch_means_reduce_sums_over_ranks() -> None:
    means = EpochMeans()
    means.add({"loss": 2.0}, n=2)
    # A second rank with the same sums: totals double, the mean stays.
    assert means.compute(lambda totals: 2 * totals) == pytest.approx({"loss": 2.0})


def test_flat_tail_meets_the_criterion() -> None:
    curve = [2.0, 1.2, 0.9, 0.8, 0.79, 0.789, 0.788, 0.788, 0.787, 0.787]
    record = convergence(curve)
    assert record["met"] and record["window_epochs"] == 2 and record["epochs"] == 10
    before, last = (0.788 + 0.788) / 2, (0.787 + 0.787) / 2
    assert record["relative_drop"] == pytest.approx((before - last) / before, abs=1e-6)


def test_falling_tail_does_not_meet_it() -> None:
    record = convergence([2.0, 1.8, 1.6, 1.4, 1.2, 1.0, 0.9, 0.8, 0.7, 0.6])
    assert not record["met"]
    assert record["relative_drop"] == pytest.approx((0.85 - 0.65) / 0.85)


def test_windows_average_out_a_noisy_last_epoch() -> None:
    # Still falling on average; a single noisy last epoch must not look like a plateau.
    curve = [3.0, 2.5, 2.2, 2.0, 1.8, 1.6, 1.5, 1.4, 1.1, 1.45]
    assert not convergence(curve)["met"]
    # Flat on average although the last two epochs differ by 10 %.
    assert convergence([3.0, 2.0, 1.5, 1.2, 1.0, 1.0, 1.05, 0.95, 1.0, 1.0])["met"]


def test_a_rising_tail_has_stopped_improving() -> None:
    assert convergence([1.0, 0.8, 0.7, 0.72, 0.75, 0.8])["met"]


def test_window_is_a_fifth_of_the_epochs_and_needs_twice_that() -> None:
    assert convergence([1.0] * 20)["window_epochs"] == 4
    short = convergence([1.0, 0.9, 0.8])
    assert not short["met"] and short["relative_drop"] is None
    assert not convergence([])["met"]
    assert not convergence([math.nan, 1.0, 1.0, 1.0])["met"]  # non-finite values are not epochs


def test_teacher_diagnostics_split_cloudy_and_clear() -> None:
    labels = torch.tensor([0, 1, 2, 0, -1])
    fraction = torch.tensor([0.0, 0.6, 0.5, 0.0, 0.2])
    a = torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 0, 2]), 3).float()
    b = torch.nn.functional.one_hot(torch.tensor([0, 0, 2, 1, 2]), 3).float()
    record = teacher_diagnostics({"opt": a, "sar": b}, labels, fraction)
    assert record["tiles"] == {"all": 4, "cloudy": 2, "clear": 2}
    assert record["teacher_oa"]["opt"] == {"all": 0.75, "cloudy": 0.5, "clear": 1.0}
    assert record["teacher_oa"]["sar"] == {"all": 0.5, "cloudy": 0.5, "clear": 0.5}
    assert record["teacher_agreement"] == {"opt~sar": 0.4}  # all five tiles, labels unused


def test_teacher_diagnostics_without_cloudy_tiles_say_none() -> None:
    logits = {"source": torch.eye(2)}
    record = teacher_diagnostics(logits, torch.tensor([0, 1]), torch.tensor([0.0, 0.0]))
    assert record["teacher_oa"]["source"] == {"all": 1.0, "cloudy": None, "clear": 1.0}
    assert record["teacher_agreement"] == {}
