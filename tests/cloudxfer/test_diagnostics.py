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


def test_converged_once_flat_and_annealed() -> None:
    curve = [2.0, 1.2, 0.9, 0.8, 0.79, 0.795, 0.80, 0.791, 0.792, 0.793]
    record = convergence(curve, lr_share=0.01)
    assert record["met"] and record["flattened"] and record["schedule_finished"]
    assert record["window"] == 2 and record["relative_change"] == pytest.approx(
        abs((0.792 + 0.793) / 2 - (0.80 + 0.791) / 2) / ((0.80 + 0.791) / 2), rel=1e-4
    )
    assert record["best_epoch"] == 4 and record["best_loss"] == pytest.approx(0.79)
    assert record["final_loss"] == pytest.approx(0.793) and record["epochs"] == 10


def test_a_flat_curve_at_full_learning_rate_proves_nothing() -> None:
    curve = [2.0, 1.2, 0.8, 0.8, 0.8, 0.8]
    assert not convergence(curve, lr_share=0.9)["met"]
    assert not convergence(curve)["met"]  # learning rate not recorded: not finished
    assert convergence(curve, lr_share=0.2)["met"]  # at the bound: finished


def test_a_falling_curve_has_not_converged() -> None:
    record = convergence([2.0, 1.8, 1.6, 1.4, 1.2, 1.0, 0.9, 0.8, 0.7, 0.6], lr_share=0.0)
    assert not record["met"] and not record["flattened"] and record["best_epoch"] == 9


def test_too_few_epochs_cannot_be_judged() -> None:
    record = convergence([1.0, 0.9, 0.9], lr_share=0.0)  # a window of 2 needs 4 epochs
    assert not record["met"] and record["relative_change"] is None


def test_empty_and_non_finite_curves() -> None:
    assert not convergence([])["met"] and convergence([])["best_epoch"] is None
    record = convergence([math.nan, 1.0, 1.0, 1.0, 1.0], lr_share=0.0)  # non-finite: not epochs
    assert record["epochs"] == 4 and record["best_epoch"] == 0 and record["met"]


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
