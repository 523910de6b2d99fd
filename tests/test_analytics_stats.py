"""The pure statistics behind the A/B verdicts and the capacity trends, against hand-computed values."""

from __future__ import annotations

import math

import pytest

from ccops.analytics.abtests import metric_for
from ccops.analytics.capacity import projected_added
from ccops.analytics.stats import lift, linear_fit, pct_change, safe_ratio, two_proportion_z_test


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
