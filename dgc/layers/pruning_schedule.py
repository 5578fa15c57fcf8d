"""The inactive-channel schedule of DGC: how many input channels each head prunes at progress p.

Pure functions, no state: the layer stores the result in a buffer, the trainer calls
`dgc.layers.set_progress(model, p)` every iteration.
"""

from __future__ import annotations

import math

# Pruning starts after the first twelfth of training and reaches its target at three quarters;
# in between the count grows linearly (slope 1.5 so that it reaches the target exactly at 3/4).
PRUNE_START = 1.0 / 12.0
PRUNE_END = 3.0 / 4.0


def check_progress(progress: float) -> float:
    """Return `progress` as a float, or raise ValueError when it is outside [0, 1]."""
    p = float(progress)
    if not (0.0 <= p <= 1.0) or math.isnan(p):
        raise ValueError(f"progress must be in [0, 1], got {progress!r}")
    return p


def check_gate_factor(gate_factor: float) -> float:
    """Return `gate_factor` as a float, or raise ValueError when it is outside (0, 1]."""
    g = float(gate_factor)
    if not (0.0 < g <= 1.0) or math.isnan(g):
        raise ValueError(f"gate_factor must be in (0, 1], got {gate_factor!r}")
    return g


def inactive_channels(in_channels: int, gate_factor: float, progress: float) -> int:
    """Number of input channels each head prunes at training progress `progress` in [0, 1].

    p <= 1/12: 0; 1/12 < p < 3/4: round(C_in * (1 - g) * 1.5 * (p - 1/12)); p >= 3/4: round(C_in * (1 - g)).
    `round` is Python's, as in the authors' code: a half goes to the even integer (4.5 -> 4), and the
    products are formed in the same order, so float error (10.4999... -> 10) matches theirs too.
    """
    p = check_progress(progress)
    g = check_gate_factor(gate_factor)
    target = in_channels * (1.0 - g)
    if p <= PRUNE_START:
        return 0
    if p >= PRUNE_END:
        return round(target)
    return round(target * 1.5 * (p - PRUNE_START))


def pruned_fraction(gate_factor: float, progress: float) -> float:
    """The schedule as a fraction of channels, unrounded: 0 up to p = 1/12, then
    (1 - g) * 1.5 * (p - 1/12), reaching 1 - g at p = 3/4. DGC-G's threshold follows it."""
    p = check_progress(progress)
    g = check_gate_factor(gate_factor)
    if p <= PRUNE_START:
        return 0.0
    return (1.0 - g) * min(1.0, 1.5 * (p - PRUNE_START))
