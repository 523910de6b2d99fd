"""Small, pure statistics for the reports: no scipy, so the kernel stays light and the maths is readable.

The A/B verdicts must match what a reviewer can recompute by hand, so the
z-test is the textbook pooled two-proportion test with a two-sided p-value
from the complementary error function. The trend fits are ordinary least
squares, exact on an exactly linear series, which is what the capacity tests
rely on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def two_proportion_z_test(successes_a: int, n_a: int, successes_b: int, n_b: int) -> tuple[float, float]:
    """(z, two-sided p) for "rate B differs from rate A", pooled standard error.

    z is positive when B's rate is higher. An arm without trials cannot be
    tested: (nan, nan). When both arms sit at 0 % or 100 % there is no spread
    and no evidence of a difference: (0.0, 1.0). Successes outside 0..n are
    bad data, not a result, so they raise ValueError.
    """
    if n_a <= 0 or n_b <= 0:
        return math.nan, math.nan
    for successes, n in ((successes_a, n_a), (successes_b, n_b)):
        if successes < 0 or successes > n:
            raise ValueError(f"successes must lie in 0..{n}, got {successes}")
    rate_a, rate_b = successes_a / n_a, successes_b / n_b
    pooled = (successes_a + successes_b) / (n_a + n_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if spread == 0:
        return 0.0, 1.0
    z = (rate_b - rate_a) / spread
    return z, math.erfc(abs(z) / math.sqrt(2))


def lift(rate: float, control_rate: float) -> float:
    """Relative change against the control ((rate - control) / control); nan when the control rate is 0."""
    if control_rate is None or rate is None or control_rate == 0 or math.isnan(control_rate) or math.isnan(rate):
        return math.nan
    return (rate - control_rate) / control_rate


def linear_fit(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """(slope, intercept) of the least-squares line; a flat line through the mean when xs do not vary."""
    n = len(xs)
    if n != len(ys) or n == 0:
        raise ValueError("linear_fit needs as many ys as xs, and at least one point")
    mean_x = sum(xs) / n
    mean_y = sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if sxx == 0:
        return 0.0, mean_y
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx
    return slope, mean_y - slope * mean_x


def safe_ratio(numerator: float | None, denominator: float | None) -> float:
    """numerator / denominator, nan when the denominator is 0 or missing (a rate of nothing is unknown, not 0)."""
    if numerator is None or denominator is None:
        return math.nan
    try:
        if denominator == 0 or math.isnan(float(denominator)) or math.isnan(float(numerator)):
            return math.nan
    except (TypeError, ValueError):
        return math.nan
    return float(numerator) / float(denominator)


def pct_change(new: float | None, old: float | None) -> float:
    """Change in percent of the old value; nan when there is no old value to compare with."""
    ratio = safe_ratio(None if new is None or old is None else new - old, old)
    return ratio * 100 if not math.isnan(ratio) else math.nan
