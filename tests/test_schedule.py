import pytest

from dgc.layers import inactive_channels


def test_schedule_matches_the_authors_for_16_channels_at_gate_quarter():
    ps = [0, 1 / 12, 0.25, 0.5, 0.75, 1]
    assert [inactive_channels(16, 0.25, p) for p in ps] == [0, 0, 3, 8, 12, 12]


def test_schedule_is_monotone_and_reaches_the_target():
    counts = [inactive_channels(352, 0.25, i / 1000) for i in range(1001)]
    assert counts == sorted(counts)
    assert counts[-1] == 264  # 352 * 0.75
    # Nothing before p = 1/12; the count leaves 0 once 264 * 1.5 * (p - 1/12) reaches 0.5.
    assert set(counts[:85]) == {0} and counts[85] == 1  # 396 * (0.085 - 1/12) = 0.66


def test_gate_factor_one_never_prunes():
    assert {inactive_channels(64, 1.0, i / 10) for i in range(11)} == {0}


@pytest.mark.parametrize("p", [-0.01, 1.01, float("nan")])
def test_progress_outside_unit_interval_is_rejected(p):
    with pytest.raises(ValueError, match="progress"):
        inactive_channels(16, 0.25, p)


@pytest.mark.parametrize("g", [0.0, -0.5, 1.5])
def test_gate_factor_outside_half_open_interval_is_rejected(g):
    with pytest.raises(ValueError, match="gate_factor"):
        inactive_channels(16, g, 0.5)


def test_halves_round_to_even_as_in_the_authors_code():
    # C_in 16, g 0.25: 18 * (p - 1/12) is exactly 4.5 at p = 110/330 and 10.4999... at 220/330.
    assert inactive_channels(16, 0.25, 110 / 330) == 4  # half-up would give 5
    assert inactive_channels(16, 0.25, 220 / 330) == 10  # 10.499999999999998 -> 10
    assert inactive_channels(16, 0.25, 0.5) == 8  # 7.5 -> 8 (even)
    assert inactive_channels(6, 0.25, 1.0) == 4  # target 4.5 -> 4
    assert inactive_channels(14, 0.25, 1.0) == 10  # target 10.5 -> 10
    assert inactive_channels(10, 0.25, 1.0) == 8  # target 7.5 -> 8


def test_rounding_departs_from_half_up_at_two_steps_of_a_15_epoch_digits_run():
    # 15 epochs x 22 steps of the smoke profile: this project's earlier half-up rounding (with an
    # epsilon against float error) and the authors' Python `round` differ at 2 of 330 steps.
    import math

    steps = 15 * 22
    ours = [inactive_channels(16, 0.25, i / steps) for i in range(steps)]
    half_up = [0 if i / steps <= 1 / 12 else min(12, math.floor(12 * 1.5 * (i / steps - 1 / 12) + 0.5 + 1e-9))
               for i in range(steps)]
    assert [i for i in range(steps) if ours[i] != half_up[i]] == [110, 220]
