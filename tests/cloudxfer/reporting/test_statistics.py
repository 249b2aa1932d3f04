"""The table statistics against hand-checkable values: closed forms, tables, worked examples."""

from __future__ import annotations

import math

import pytest

from cloudxfer.reporting.statistics import (
    PairedEvidence,
    holm,
    mcnemar_exact,
    paired_t,
    regularized_beta,
    student_t_sf,
    summarize,
    t_quantile,
    verdict,
)


def test_summarize_gives_mean_sample_std_standard_error_and_count() -> None:
    s = summarize([0.5, 0.6, 0.7])
    assert s is not None
    assert (s.mean, s.n) == (pytest.approx(0.6), 3)
    assert s.std == pytest.approx(0.1)  # sqrt((0.01 + 0 + 0.01) / 2)
    assert s.se == pytest.approx(0.1 / math.sqrt(3))
    one = summarize([0.4])
    assert one is not None and (one.mean, one.std, one.se, one.n) == (0.4, None, None, 1)
    assert summarize([]) is None


def test_incomplete_beta_and_t_tail_match_closed_forms() -> None:
    # integer a, b: I_x(a, b) = sum_{j=a}^{a+b-1} C(a+b-1, j) x^j (1-x)^(a+b-1-j)
    x = 0.3
    closed = sum(math.comb(4, j) * x**j * (1 - x) ** (4 - j) for j in range(2, 5))
    assert regularized_beta(x, 2, 3) == pytest.approx(closed, rel=1e-12)
    # df 1 is Cauchy: P(T > t) = 1/2 - atan(t)/pi; df 2: (1 - t / sqrt(2 + t^2)) / 2
    for t in (-1.5, 0.3, 2.0, 40.0):
        assert student_t_sf(t, 1) == pytest.approx(0.5 - math.atan(t) / math.pi, rel=1e-10)
        assert student_t_sf(t, 2) == pytest.approx(0.5 * (1 - t / math.sqrt(2 + t * t)), rel=1e-9)


@pytest.mark.parametrize(
    ("p", "df", "expected"),
    [  # Student t table (two-sided 95 % and 99 %)
        (0.975, 2, 4.303),
        (0.975, 3, 3.182),
        (0.975, 4, 2.776),
        (0.975, 30, 2.042),
        (0.995, 10, 3.169),
    ],
)
def test_t_quantile_matches_the_t_table(p: float, df: int, expected: float) -> None:
    assert t_quantile(p, df) == pytest.approx(expected, abs=5e-4)
    assert t_quantile(1 - p, df) == pytest.approx(-expected, abs=5e-4)


def test_t_quantile_matches_the_cauchy_closed_form() -> None:
    for p in (0.6, 0.975, 0.9995):
        assert t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-9)


def test_paired_t_interval_and_p_by_hand() -> None:
    # differences 3, 4, 5: mean 4, sd 1, se 1/sqrt(3); t = 4 sqrt(3), df 2
    r = paired_t([3.0, 4.0, 5.0])
    half = t_quantile(0.975, 2) / math.sqrt(3)
    assert (r.mean, r.n) == (4.0, 3)
    assert (r.low, r.high) == (pytest.approx(4 - half), pytest.approx(4 + half))
    t = 4 * math.sqrt(3)
    assert r.p == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-9)  # df-2 closed form
    # the interval contains 0 and the test does not reject when the seeds disagree
    wide = paired_t([3.0, -1.0, 5.0])
    assert wide.low is not None and wide.low < 0 < (wide.high or 0) and (wide.p or 0) > 0.05
    single = paired_t([2.5])
    assert (single.low, single.high, single.p) == (None, None, None)
    with pytest.raises(ValueError, match="no paired differences"):
        paired_t([])


def test_mcnemar_exact_is_the_doubled_binomial_tail() -> None:
    # b 1, c 5: n 6, P(X <= 1) = (1 + 6) / 64, doubled: 14/64
    assert mcnemar_exact(1, 5) == pytest.approx(14 / 64)
    assert mcnemar_exact(5, 1) == mcnemar_exact(1, 5)
    assert mcnemar_exact(0, 10) == pytest.approx(2 / 1024)
    assert mcnemar_exact(4, 4) == 1.0 and mcnemar_exact(0, 0) == 1.0
    # large counts stay exact (no float overflow): 300 discordant tiles
    b, c = 120, 180
    tail = sum(math.comb(300, k) for k in range(b + 1))
    assert mcnemar_exact(b, c) == pytest.approx(2 * tail / 2**300, rel=1e-12)
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def test_holm_worked_example() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]) == []


def _evidence(deltas: list[float], tile_p: float | None, seed_p: float | None) -> PairedEvidence:
    return PairedEvidence(tuple(deltas), paired_t(deltas), seed_p, tile_p)


def test_verdict_follows_the_numbers() -> None:
    strong = verdict("F2", "f_S", "OA", _evidence([5.0, 6.0, 7.0], 1e-4, 0.01))
    assert strong.startswith("F2 scores higher OA than f_S (+6.00 points; 95 % t-interval")
    assert "holds on the test tiles at every seed" in strong and "over the seeds" in strong
    assert "wide with 3 seeds" in strong
    # the same differences, tile tests not rejecting: the verdict flips
    weak = verdict("F2", "f_S", "OA", _evidence([5.0, 6.0, 7.0], 0.2, 0.01))
    assert "not distinguishable at this sample size" in weak
    assert "do not reject at every seed" in weak and "Holm-adjusted: 0.200" in weak
    # tiles reject at every seed, seeds do not: said apart
    tiles_only = verdict("F2", "f_S", "OA on cloudy tiles", _evidence([2.0, 9.0, 4.0], 0.01, 0.3))
    assert "on these test tiles at every seed" in tiles_only
    assert "over the seeds it is not distinguishable at this sample size" in tiles_only
    # lower, and seeds that disagree on the sign
    lower = verdict("A", "B", "OA", _evidence([-5.0, -6.0, -7.0], 1e-4, 0.01))
    assert lower.startswith("A scores lower OA than B")
    mixed = verdict("A", "B", "OA", _evidence([3.0, -2.0, 1.0], 1e-4, 0.9))
    assert "disagree on its sign (+3.00, -2.00, +1.00)" in mixed
    one_seed = verdict("A", "B", "OA", _evidence([4.0], 1e-3, None))
    assert "one seed: no interval over seeds" in one_seed
    assert verdict("A", "B", "OA", _evidence([0.0, 0.0], 1.0, 1.0)).endswith("no difference in it.")
    # equal differences at every seed: a zero-width interval, said so, not "wide"
    assert paired_t([-1.0, -1.0, -1.0]).p is None  # no spread: no t statistic
    flat = verdict("A", "B", "OA", _evidence([-1.0, -1.0, -1.0], 1.0, None))
    assert "[-1.00, -1.00]: the seeds' differences are equal" in flat and "wide" not in flat
    assert "t-test" not in flat
    assert "not distinguishable at this sample size" in flat
