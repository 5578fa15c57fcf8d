"""The plateau criterion (dgc/measure/plateau.py) on constructed curves."""

import pytest

from dgc.measure.plateau import late_gain, plateaued


def test_a_rising_curve_has_not_finished_learning():
    curve = [10, 20, 30, 40, 50, 60, 70, 80]
    assert late_gain(curve) == pytest.approx(80 - 60)
    assert not plateaued(curve)


def test_a_flat_end_passes_whatever_its_last_epochs_do():
    curve = [50, 80, 90, 95.0, 95.5, 94.0, 95.9, 93.0]
    assert late_gain(curve) == pytest.approx(0.4)
    assert plateaued(curve)


def test_exactly_one_point_passes_more_fails():
    assert plateaued([90, 90, 90, 91.0])
    assert not plateaued([90, 90, 90, 91.01])


def test_the_last_quarter_is_rounded_down_to_whole_epochs():
    # 10 epochs: the last quarter is the last 2; the first 8 set the earlier best (95.5)
    curve = [10, 20, 30, 40, 50, 60, 95, 95.5, 96.5, 96]
    assert late_gain(curve) == pytest.approx(1.0)


def test_the_default_runs_dense_seed_0_passes_and_a_30_epoch_dgc_run_does_not():
    # measured curves (test top-1 per epoch): densenet86 seed 0 of the default profile, epochs 26-45,
    # flat at the end after the cosine schedule's late gain; densenet86_dgc at 30 epochs, still rising
    dense = [96.7] * 25 + [96.7, 97.5, 95.6, 97.2, 98.6, 99.2, 98.6, 98.6, 98.9, 98.9, 99.2, 99.4, 99.7,
                           99.7, 99.7, 99.4, 99.7, 99.7, 99.7, 99.7]
    assert late_gain(dense) == pytest.approx(0.5) and plateaued(dense)
    dgc30 = [13.3, 31.1, 46.7, 28.1, 61.4, 72.5, 85.0, 89.7, 82.8, 76.9, 84.2, 61.1, 83.1, 92.5, 84.4, 91.9,
             85.3, 76.1, 90.6, 84.4, 90.0, 79.2, 91.9, 94.7, 95.0, 95.0, 95.0, 94.7, 95.0, 95.3]
    assert late_gain(dgc30) == pytest.approx(95.3 - 92.5) and not plateaued(dgc30)


def test_fewer_than_four_epochs_never_pass():
    assert late_gain([90, 95, 95]) is None and not plateaued([90, 95, 95])
