"""The plateau criterion (dgc/plateau.py) on constructed curves."""

import pytest

from dgc.plateau import last_third_gain, plateaued


def test_a_rising_curve_has_not_finished_learning():
    curve = [10, 20, 30, 40, 50, 60, 70, 80, 90]
    assert last_third_gain(curve) == pytest.approx(90 - 60)
    assert not plateaued(curve)


def test_a_flat_end_passes_whatever_its_last_epochs_do():
    curve = [50, 80, 90, 95.0, 95.5, 94.0, 95.2, 95.9, 93.0]
    assert last_third_gain(curve) == pytest.approx(0.4)
    assert plateaued(curve)


def test_exactly_one_point_passes_more_fails():
    assert plateaued([90, 90, 91.0])
    assert not plateaued([90, 90, 91.01])


def test_the_last_third_is_rounded_down_to_whole_epochs():
    # 10 epochs: the last third is the last 3; the first 7 set the earlier best (95)
    curve = [10, 20, 30, 40, 50, 60, 95, 95.5, 96.5, 96]
    assert last_third_gain(curve) == pytest.approx(1.5)


def test_fewer_than_three_epochs_never_pass():
    assert last_third_gain([90, 95]) is None and not plateaued([90, 95])
