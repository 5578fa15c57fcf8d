"""Has a run finished learning? The plateau criterion the evaluate stage applies to every seed.

A run has reached its plateau when the last third of its epochs raised its best test top-1 by at
most PLATEAU_POINTS points: best(all epochs) - best(first two thirds) <= 1.0. A curve still rising
at the end fails it (its best is in the last third and above the earlier best by more than a point);
a curve that flattened passes whatever its last epochs do. (The simpler "the last third's best is
within a point of the run's best" passes every rising curve, whose best is in its last third.) A run
of fewer than 3 epochs has no last third and never passes.
"""

from __future__ import annotations

from typing import Sequence

PLATEAU_POINTS = 1.0


def last_third_gain(test_top1: Sequence[float]) -> float | None:
    """best(all) - best(first two thirds) of a per-epoch test top-1 curve; None under 3 epochs."""
    n = len(test_top1)
    if n < 3:
        return None
    head = n - n // 3  # the epochs before the last third
    return max(test_top1) - max(test_top1[:head])


def plateaued(test_top1: Sequence[float], points: float = PLATEAU_POINTS) -> bool:
    gain = last_third_gain(test_top1)
    return gain is not None and gain <= points + 1e-9
