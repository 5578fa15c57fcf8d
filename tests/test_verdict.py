"""The verdict rule of relation claims (dgc/measure/verdict.py), on constructed samples, one per outcome."""

import math

import pytest

from dgc.measure.verdict import Sample, judge_relation


def test_holds_when_the_margin_clears_two_standard_errors():
    v = judge_relation(Sample(5.0, 0.2, 3), Sample(6.0, 0.2, 3), tolerance=0.0)
    assert v.outcome == "holds"
    assert v.delta == pytest.approx(-1.0) and v.margin == pytest.approx(1.0)
    assert v.standard_error == pytest.approx(math.sqrt(2 * 0.04 / 3))


def test_does_not_hold_when_the_baseline_wins_beyond_the_spread():
    v = judge_relation(Sample(6.0, 0.2, 5), Sample(5.0, 0.3, 4), tolerance=0.5)
    assert v.outcome == "does not hold" and v.margin == pytest.approx(-0.5)


def test_inconclusive_inside_the_spread_whichever_side_the_means_fall():
    assert judge_relation(Sample(5.0, 1.0, 3), Sample(5.5, 1.0, 3), 0.0).outcome == "inconclusive"
    assert judge_relation(Sample(5.5, 1.0, 3), Sample(5.0, 1.0, 3), 0.0).outcome == "inconclusive"


def test_one_seed_is_always_inconclusive_however_large_the_gap():
    v = judge_relation(Sample(50.0, 0.0, 1), Sample(5.0, 0.0, 3), 0.0)
    assert v.outcome == "inconclusive" and v.standard_error is None and "seed" in v.why


def test_the_tolerance_moves_the_bar():
    a, b = Sample(5.4, 0.05, 3), Sample(5.0, 0.05, 3)
    assert judge_relation(a, b, 0.0).outcome == "does not hold"
    assert judge_relation(a, b, 0.5).outcome == "holds"  # margin 0.1 > 2 s.e. (0.08)


def test_k_is_the_number_of_standard_errors():
    a, b = Sample(5.0, 0.3, 3), Sample(5.4, 0.3, 3)  # margin 0.4, s.e. 0.245
    assert judge_relation(a, b, 0.0, k=1.0).outcome == "holds"
    assert judge_relation(a, b, 0.0, k=2.0).outcome == "inconclusive"
