"""Report arithmetic against hand-computed values."""

import math

import pytest

from campaigns.stats import proportion, rate_ratio_lift, wilson_interval


def test_wilson_interval_matches_the_hand_computed_case():
    # 10 of 100, z = 1.96: centre = (0.1 + 1.96²/200) / (1 + 1.96²/100) = 0.119208 / 1.038416 = 0.114798,
    # half width = 1.96 * sqrt(0.1*0.9/100 + 1.96²/40000) / 1.038416 = 1.96 * 0.031560 / 1.038416 = 0.059569.
    low, high = wilson_interval(10, 100, z=1.96)
    assert low == pytest.approx(0.055229, abs=1e-5)
    assert high == pytest.approx(0.174367, abs=1e-5)


def test_wilson_interval_at_the_edges_stays_inside_zero_one():
    assert wilson_interval(0, 50)[0] == 0.0
    assert 0 < wilson_interval(0, 50)[1] < 0.1
    assert wilson_interval(50, 50)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(5, 4)


def test_proportion_without_trials_has_no_rate():
    empty = proportion(0, 0)
    assert empty.rate is None and empty.low is None
    assert proportion(3, 12).rate == 0.25


def test_lift_uses_the_katz_log_interval():
    # Visual 30/200 = 0.15, control 20/200 = 0.10: ratio 1.5, lift +50 %.
    # SE of ln(ratio) = sqrt(1/30 - 1/200 + 1/20 - 1/200) = sqrt(0.0733333) = 0.270801;
    # ln 1.5 = 0.405465; bounds exp(0.405465 ∓ 1.96 * 0.270801) = exp(-0.125305) = 0.882235 and
    # exp(0.936235) = 2.550363.
    lift = rate_ratio_lift(30, 200, 20, 200, z=1.96)
    assert lift.ratio == pytest.approx(1.5)
    assert lift.lift == pytest.approx(0.5)
    assert lift.low == pytest.approx(0.882235 - 1, abs=1e-5)
    assert lift.high == pytest.approx(2.550363 - 1, abs=1e-5)
    assert not lift.significant  # the interval contains 0
    assert math.log(1 + lift.high) - math.log(1.5) == pytest.approx(math.log(1.5) - math.log(1 + lift.low))


def test_lift_is_significant_when_the_interval_excludes_zero():
    lift = rate_ratio_lift(120, 1000, 60, 1000)
    assert lift.lift == pytest.approx(1.0)
    assert lift.significant and lift.low > 0


def test_lift_is_undefined_without_successes():
    assert rate_ratio_lift(0, 100, 5, 100) is None
    assert rate_ratio_lift(5, 100, 0, 100) is None
    assert rate_ratio_lift(5, 0, 5, 100) is None
