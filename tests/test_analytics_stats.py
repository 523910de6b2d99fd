"""The pure statistics behind the A/B verdicts and the capacity trends, against hand-computed values."""

from __future__ import annotations

import math

import pytest

from ccops.analytics.abtests import metric_for
from ccops.analytics.capacity import projected_added
from ccops.analytics.stats import lift, linear_fit, pct_change, safe_ratio, t_critical_95, trend, two_proportion_z_test


def test_z_test_matches_the_hand_computed_case():
    # pooled p = 450/2000 = 0.225; se = sqrt(0.225 * 0.775 * (2/1000)) = 0.0186748...
    z, p = two_proportion_z_test(200, 1000, 250, 1000)
    se = math.sqrt(0.225 * 0.775 * 0.002)
    assert se == pytest.approx(0.018674849, abs=1e-9)
    assert z == pytest.approx(0.05 / se, rel=1e-12)
    assert z == pytest.approx(2.6774, abs=5e-5)
    assert p == pytest.approx(0.0074196, abs=1e-7)
    # the direction flips with the arms, the p-value does not
    z2, p2 = two_proportion_z_test(250, 1000, 200, 1000)
    assert z2 == pytest.approx(-z) and p2 == pytest.approx(p)


def test_z_test_edge_cases():
    assert all(math.isnan(v) for v in two_proportion_z_test(0, 0, 5, 100)), "no trials: no test"
    assert two_proportion_z_test(0, 100, 0, 100) == (0.0, 1.0), "no spread: no evidence"
    assert two_proportion_z_test(100, 100, 50, 50) == (0.0, 1.0)
    assert two_proportion_z_test(10, 100, 10, 100) == (0.0, 1.0)
    with pytest.raises(ValueError):
        two_proportion_z_test(120, 100, 5, 100)


def test_lift_and_ratios():
    assert lift(0.25, 0.20) == pytest.approx(0.25)
    assert lift(0.15, 0.20) == pytest.approx(-0.25)
    assert math.isnan(lift(0.1, 0.0))
    assert math.isnan(safe_ratio(5, 0)) and safe_ratio(3, 4) == 0.75
    assert pct_change(150, 100) == pytest.approx(50.0)
    assert math.isnan(pct_change(5, 0))


def test_linear_fit_is_exact_on_a_line_and_flat_on_one_x():
    slope, intercept = linear_fit([0, 1, 2, 3, 4], [10, 12, 14, 16, 18])
    assert (slope, intercept) == (2.0, 10.0)
    assert linear_fit([3, 3], [1, 5]) == (0.0, 3.0)


def test_projection_sums_future_days_and_never_goes_negative():
    # rate 10 + x on days 91..180
    assert projected_added(1.0, 10.0, 91, 90) == sum(10 + x for x in range(91, 181))
    # a falling line stops at zero instead of deleting rows
    assert projected_added(-1.0, 5.0, 0, 10) == 5 + 4 + 3 + 2 + 1


def test_metric_follows_the_variable_being_tested():
    assert metric_for("cta_offer") == "conversion_count"
    assert metric_for("Discount size") == "conversion_count"
    assert metric_for("link_position") == "clicks"
    assert metric_for("hook_style") == "engagement_count"
    assert metric_for(None) == "engagement_count"


# ---- trends: rising or falling only beyond the week-to-week noise ----------------------------------

WEEKS = [float(x) for x in range(-7, 1)]  # eight weeks, the latest at 0


def hand_interval(xs: list[float], ys: list[float]) -> tuple[float, float, float]:
    """Slope and 95 % interval computed independently: numpy's least squares, t from the textbook table (df 6)."""
    import numpy as np

    design = np.vstack([np.ones(len(xs)), xs]).T
    (intercept, slope), residual, *_ = np.linalg.lstsq(design, np.array(ys), rcond=None)
    se = math.sqrt(float(residual[0]) / (len(xs) - 2) / sum((x - sum(xs) / len(xs)) ** 2 for x in xs))
    return float(slope), float(slope) - 2.447 * se, float(slope) + 2.447 * se


def test_noisy_flat_series_is_flat():
    ys = [0.050, 0.046, 0.053, 0.047, 0.052, 0.045, 0.051, 0.049]
    fit = trend(WEEKS, ys)
    slope, low, high = hand_interval(WEEKS, ys)
    assert (fit.slope, fit.low, fit.high) == pytest.approx((slope, low, high), rel=1e-9)
    assert low < 0 < high and fit.direction == "flat"
    assert fit.describe(100, " pp/week").startswith("flat (")


def test_clear_rise_is_rising_with_its_interval():
    ys = [0.040, 0.042, 0.045, 0.046, 0.049, 0.051, 0.053, 0.056]
    fit = trend(WEEKS, ys)
    slope, low, high = hand_interval(WEEKS, ys)
    assert fit.low == pytest.approx(low) and low > 0
    assert fit.direction == "rising"
    assert fit.describe(100, " pp/week") == (f"rising ({slope * 100:+.3f} pp/week, 95 % CI {low * 100:+.3f} "
                                             f"to {high * 100:+.3f})")
    assert trend(WEEKS, [-y for y in ys]).direction == "falling"


def test_last_week_up_but_overall_flat_is_not_falling():
    # the case: the least-squares slope is slightly negative while the latest week rose
    ys = [0.0500, 0.0520, 0.0480, 0.0510, 0.0470, 0.0500, 0.0460, 0.0490]
    fit = trend(WEEKS, ys)
    assert fit.slope < 0 and ys[-1] > ys[-2], "the old rule said 'falling' here"
    assert fit.direction == "flat"
    assert "95 % CI" in fit.describe(100, " pp/week")


def test_too_few_points_and_a_straight_line():
    assert trend([0.0, 1.0], [0.02, 0.05]).direction == "flat", "two weeks cannot show noise"
    assert "too few" in trend([0.0, 1.0], [0.02, 0.05]).describe(100, " pp/week")
    exact = trend([0.0, 1.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0])
    assert (exact.low, exact.slope, exact.high) == pytest.approx((1.0, 1.0, 1.0)) and exact.direction == "rising"
    assert t_critical_95(35) == 2.042 and t_critical_95(500) == 1.960
