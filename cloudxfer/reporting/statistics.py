"""Statistics for the result tables: uncertainty over seeds and paired comparisons.

Pure functions on plain numbers, so every figure a table prints can be checked by hand:

- :func:`summarize`: mean, sample std, standard error (std / sqrt(n)) and count over seeds.
- :func:`paired_t`: the Student t-interval and two-sided t-test of a mean paired difference
  over seeds (few seeds: few degrees of freedom, a wide interval).
- :func:`mcnemar_exact`: the exact (binomial) two-sided McNemar test of two classifiers scored
  on the same tiles, from their discordant counts.
- :func:`holm`: Holm's step-down adjustment of a list of p-values (family-wise error).
- :func:`verdict`: the sentence a comparison table prints, generated from those numbers.

The Student t distribution is computed here (regularised incomplete beta function by its
continued fraction, quantile by bisection) rather than by adding SciPy as a dependency for
one function; the tests check it against tabulated quantiles and closed forms.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "PairedEvidence",
    "Summary",
    "TInterval",
    "holm",
    "mcnemar_exact",
    "p_text",
    "paired_t",
    "regularized_beta",
    "student_t_sf",
    "summarize",
    "t_quantile",
    "verdict",
]


@dataclass(frozen=True)
class Summary:
    """Mean, sample std, standard error and count of values (std and se None below 2)."""

    mean: float
    std: float | None
    se: float | None
    n: int


def summarize(values: Sequence[float]) -> Summary | None:
    """Return the mean, sample std (n - 1), standard error and count; None for no values.

    With one value the spread is unknown, not zero: std and se are None.
    """
    n = len(values)
    if n == 0:
        return None
    mean = math.fsum(values) / n
    if n < 2:
        return Summary(mean, None, None, n)
    std = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    return Summary(mean, std, std / math.sqrt(n), n)


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz's method)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 1000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def regularized_beta(x: float, a: float, b: float) -> float:
    """Return the regularised incomplete beta function I_x(a, b) for 0 <= x <= 1, a, b > 0."""
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"x must lie in [0, 1], got {x}")
    if x in (0.0, 1.0):
        return x
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def student_t_sf(t: float, df: float) -> float:
    """Return P(T > t) for Student's t with ``df`` degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    tail = 0.5 * regularized_beta(df / (df + t * t), df / 2.0, 0.5)
    return tail if t >= 0 else 1.0 - tail


def t_quantile(p: float, df: float) -> float:
    """Return the ``p`` quantile of Student's t with ``df`` degrees of freedom (bisection)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    tail = 1.0 - p
    low, high = 0.0, 1.0
    while student_t_sf(high, df) > tail:
        low, high = high, 2.0 * high
    for _ in range(200):
        mid = 0.5 * (low + high)
        if student_t_sf(mid, df) > tail:
            low = mid
        else:
            high = mid
        if high - low <= 1e-13 * high:
            break
    return 0.5 * (low + high)


@dataclass(frozen=True)
class TInterval:
    """A mean paired difference over seeds with its Student t-interval and t-test."""

    mean: float
    low: float | None
    """Interval bounds (None with fewer than two differences: no spread to go on)."""
    high: float | None
    p: float | None
    """Two-sided p of the t-test of a zero mean difference (None below two differences, or
    when they are all equal: no spread, no t statistic)."""
    n: int
    t_crit: float | None
    """The t quantile the half-width is in standard errors (``df = n - 1``)."""


def paired_t(differences: Sequence[float], confidence: float = 0.95) -> TInterval:
    """Return the mean of paired differences with its t-interval and two-sided t-test p.

    The differences are one per seed (A minus B on the same seed), so seeds are the sample:
    with three seeds the interval has two degrees of freedom and is wide. Equal differences
    (zero spread) give a zero-width interval and no test (p None).

    Raises:
        ValueError: No differences.

    """
    summary = summarize(differences)
    if summary is None:
        raise ValueError("no paired differences")
    if summary.se is None:
        return TInterval(summary.mean, None, None, None, summary.n, None)
    df = summary.n - 1
    t_crit = t_quantile(0.5 + confidence / 2.0, df)
    half = t_crit * summary.se
    # equal differences: no spread, so no t statistic (the test is undefined, not p = 0)
    p = (
        None
        if summary.se == 0.0
        else min(1.0, 2.0 * student_t_sf(abs(summary.mean) / summary.se, df))
    )
    return TInterval(summary.mean, summary.mean - half, summary.mean + half, p, summary.n, t_crit)


def mcnemar_exact(b: int, c: int) -> float:
    """Return the exact two-sided McNemar p from the discordant counts ``b`` and ``c``.

    ``b`` tiles only the first classifier got right, ``c`` only the second. Under the null
    hypothesis (equal accuracy) b is Binomial(b + c, 1/2); the p-value doubles the smaller
    tail, capped at 1. Integer arithmetic keeps it exact for any test set size.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be non-negative, got {b} and {c}")
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(b, c) + 1))
    return min(1.0, 2 * tail / 2**n)


def holm(p_values: Sequence[float]) -> list[float]:
    """Return Holm's step-down adjusted p-values, in the input order.

    The i-th smallest of m p-values is multiplied by m - i + 1 (i from 1), made monotone
    non-decreasing in that order and capped at 1; rejecting where the adjusted p is below
    alpha controls the family-wise error rate at alpha.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


@dataclass(frozen=True)
class PairedEvidence:
    """What a verdict on "A vs B" rests on (differences in points, p-values Holm-adjusted)."""

    deltas: tuple[float, ...]
    """A minus B per seed, in percentage points."""
    interval: TInterval
    """The t-interval of the mean difference over the seeds (in points)."""
    seed_p: float | None
    """Holm-adjusted p of the t-test over seeds (None: fewer than two seeds, or no spread)."""
    tile_p: float | None
    """Holm-adjusted p of the tile tests: the largest per-seed McNemar p (None: no test)."""


def p_text(p: float) -> str:
    """Format a p-value: three decimals, or scientific notation below 0.001."""
    if p == 0.0:
        return "0"
    return f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def verdict(a: str, b: str, what: str, evidence: PairedEvidence, alpha: float = 0.05) -> str:
    """Return the sentence a comparison prints, from its numbers alone.

    "A is higher than B" needs the tile tests to reject at every seed with the same sign
    (Holm-adjusted); "over the seeds too" further needs the t-test over seeds to reject. A
    difference that fails the tile tests is "not distinguishable at this sample size".

    Args:
        a: The first arm's name.
        b: The second arm's name.
        what: The measure and tiles, e.g. "OA on cloudy tiles".
        evidence: The per-seed differences, the t-interval and the adjusted p-values.
        alpha: The family-wise significance level the adjusted p-values are held to.

    """
    deltas = evidence.deltas
    interval = evidence.interval
    n = len(deltas)
    seeds = f"{n} seed" + ("" if n == 1 else "s")
    mean = f"{interval.mean:+.2f} points"
    if all(d == 0 for d in deltas):
        return f"{a} and {b} score the same {what} at every seed ({seeds}): no difference in it."
    if interval.low is not None and interval.high is not None:
        spread = f"95 % t-interval over the {seeds} [{interval.low:+.2f}, {interval.high:+.2f}]"
        if interval.high == interval.low:
            spread += ": the seeds' differences are equal, so the interval has no width"
        elif n <= 5:
            spread += f", wide with {seeds}"
    else:
        spread = "one seed: no interval over seeds, so another seed may differ"
    same_sign = all(d > 0 for d in deltas) or all(d < 0 for d in deltas)
    direction = "higher" if interval.mean > 0 else "lower"
    tiles_reject = evidence.tile_p is not None and evidence.tile_p < alpha and same_sign
    seeds_reject = evidence.seed_p is not None and evidence.seed_p < alpha
    tile_text = (
        "no tile test" if evidence.tile_p is None
        else f"McNemar per seed, largest p Holm-adjusted: {p_text(evidence.tile_p)}"
    )  # fmt: skip
    seed_text = (
        "" if evidence.seed_p is None
        else f"; t-test over seeds, Holm-adjusted p = {p_text(evidence.seed_p)}"
    )  # fmt: skip
    if tiles_reject and seeds_reject:
        return (
            f"{a} scores {direction} {what} than {b} ({mean}; {spread}): the difference holds "
            f"on the test tiles at every seed ({tile_text}) and over the seeds{seed_text}."
        )
    if tiles_reject:
        return (
            f"{a} scores {direction} {what} than {b} on these test tiles at every seed "
            f"({mean}; {tile_text}), but over the seeds it is not distinguishable at this "
            f"sample size ({spread}{seed_text})."
        )
    if not same_sign:
        why = "the seeds disagree on its sign (" + ", ".join(f"{d:+.2f}" for d in deltas) + ")"
    else:
        why = f"the tile tests do not reject at every seed at alpha {alpha:g} ({tile_text})"
    return (
        f"{a} vs {b}, {what}: not distinguishable at this sample size "
        f"({mean}; {spread}{seed_text}); {why}."
    )
