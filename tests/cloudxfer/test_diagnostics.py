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


def test_converged_once_the_lowest_loss_is_patience_epochs_old() -> None:
    curve = [2.0, 1.2, 0.9, 0.8, 0.79, 0.795, 0.80, 0.791, 0.792, 0.793]
    record = convergence(curve, patience=5)
    assert record["met"] and record["best_epoch"] == 4 and record["epochs_since_best"] == 5
    assert record["best_loss"] == pytest.approx(0.79) and record["epochs"] == 10
    assert not convergence(curve, patience=6)["met"]


def test_a_falling_curve_has_not_converged() -> None:
    record = convergence([2.0, 1.8, 1.6, 1.4, 1.2, 1.0, 0.9, 0.8, 0.7, 0.6])
    assert not record["met"] and record["best_epoch"] == 9 and record["epochs_since_best"] == 0


def test_a_noisy_curve_is_judged_by_its_lowest_epoch() -> None:
    # One lucky low epoch that later epochs never beat: the curve stopped improving there.
    curve = [3.0, 2.5, 1.1, 1.45, 1.4, 1.3, 1.35, 1.2, 1.25]
    assert convergence(curve, patience=5)["met"]
    # A later, lower epoch restarts the count.
    assert not convergence([*curve, 1.05], patience=5)["met"]


def test_a_rising_tail_has_stopped_improving() -> None:
    assert convergence([1.0, 0.8, 0.7, 0.72, 0.75, 0.8], patience=3)["met"]


def test_empty_and_non_finite_curves() -> None:
    assert not convergence([])["met"] and convergence([])["best_epoch"] is None
    record = convergence([math.nan, 1.0, 1.0, 1.0], patience=2)  # non-finite: not epochs
    assert record["epochs"] == 3 and record["best_epoch"] == 0 and record["met"]


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
