"""Small, pure statistics for the reports: no scipy, so the kernel stays light and the maths is readable.

The A/B verdicts must match what a reviewer can recompute by hand, so the
z-test is the textbook pooled two-proportion test with a two-sided p-value
from the complementary error function. The trend fits are ordinary least
squares, exact on an exactly linear series, which is what the capacity tests
rely on.

A report may call a series rising or falling only when the change is beyond its
week-to-week noise: `trend` gives the least-squares slope with its 95 %
confidence interval (Student's t on n - 2 degrees of freedom, from the table
below, so scipy is not needed), and the direction is "flat" whenever the
interval holds zero. Eight noisy weeks whose last one rose are "flat", not
"falling (-0.024 pp/week)".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


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


# Two-sided 95 % critical values of Student's t by degrees of freedom (any statistics textbook's table).
T_95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
        11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
        20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064, 25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048,
        29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}
Z_95 = 1.960


def t_critical_95(df: int) -> float:
    """t for a two-sided 95 % interval; between table rows the smaller df's value (the wider, safer one)."""
    if df < 1:
        return math.inf
    return T_95[max(k for k in T_95 if k <= df)] if df <= 120 else Z_95


@dataclass(frozen=True)
class Trend:
    """A least-squares slope and its 95 % confidence interval, per unit of x."""

    slope: float
    low: float
    high: float
    points: int

    @property
    def direction(self) -> str:
        """rising / falling only when the whole interval lies on one side of zero, else flat."""
        if self.low > 0:
            return "rising"
        if self.high < 0:
            return "falling"
        return "flat"

    def describe(self, scale: float = 1.0, unit: str = "", digits: int = 3) -> str:
        """`flat (+0.012 pp/week, 95 % CI -0.031 to +0.055)`: the verdict, the slope and the interval."""
        def fmt(value: float) -> str:
            return f"{value * scale:+.{digits}f}"

        if math.isinf(self.low) or math.isinf(self.high):
            return (f"{self.direction} ({fmt(self.slope)}{unit}; {self.points} points are too few to tell "
                    "a trend from noise)")
        return f"{self.direction} ({fmt(self.slope)}{unit}, 95 % CI {fmt(self.low)} to {fmt(self.high)})"


def trend(xs: Sequence[float], ys: Sequence[float]) -> Trend:
    """The slope of ys over xs with a 95 % interval from the residual spread (n - 2 degrees of freedom).

    Fewer than three points leave no degree of freedom to measure noise: the
    interval is infinite and the trend flat. A perfectly straight line has no
    noise: the interval is the slope itself.
    """
    slope, intercept = linear_fit(xs, ys)
    n = len(xs)
    mean_x = sum(xs) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    if n < 3 or sxx == 0:
        return Trend(slope, -math.inf, math.inf, n)
    residual = sum((y - (intercept + slope * x)) ** 2 for x, y in zip(xs, ys, strict=True))
    half = t_critical_95(n - 2) * math.sqrt(residual / (n - 2) / sxx)
    return Trend(slope, slope - half, slope + half, n)


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
