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
