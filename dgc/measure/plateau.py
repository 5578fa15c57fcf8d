"""Has a run finished learning? The plateau criterion the evaluate stage applies to every seed: the last
quarter of the epochs raised the best test top-1 by at most PLATEAU_POINTS (under 4 epochs: never)."""

from __future__ import annotations

from typing import Sequence

PLATEAU_POINTS = 1.0
WINDOW = 4  # the last 1/WINDOW of the epochs


def late_gain(test_top1: Sequence[float]) -> float | None:
    """best(all) - best(before the last quarter) of a per-epoch test top-1 curve; None under 4 epochs."""
    n = len(test_top1)
    if n < WINDOW:
        return None
    head = n - n // WINDOW  # the epochs before the last quarter
    return max(test_top1) - max(test_top1[:head])


def plateaued(test_top1: Sequence[float], points: float = PLATEAU_POINTS) -> bool:
    gain = late_gain(test_top1)
    return gain is not None and gain <= points + 1e-9


def plateau_of_seeds(curves: Sequence[Sequence[float]]) -> tuple[dict, list[float | None]]:
    """The evaluate stage's `plateau` metrics of a model's seeds (the largest late gain; plateaued only
    if every seed is) and each seed's late gain."""
    gains = [late_gain(curve) for curve in curves]
    known = [g for g in gains if g is not None]
    return ({"late_gain": max(known, default=None), "plateaued": int(all(plateaued(c) for c in curves)),
             "points": PLATEAU_POINTS}, gains)
