"""DGC's inactive-channel schedule: how many input channels each head prunes at training progress p."""

from __future__ import annotations

# Pruning starts after the first twelfth of training and grows linearly (slope 1.5) to its target at 3/4.
PRUNE_START = 1.0 / 12.0
PRUNE_END = 3.0 / 4.0


def check_progress(progress: float) -> float:
    """Return `progress` as a float, or raise ValueError when it is outside [0, 1]."""
    p = float(progress)
    if not 0.0 <= p <= 1.0:  # NaN too
        raise ValueError(f"progress must be in [0, 1], got {progress!r}")
    return p


def check_gate_factor(gate_factor: float) -> float:
    """Return `gate_factor` as a float, or raise ValueError when it is outside (0, 1]."""
    g = float(gate_factor)
    if not 0.0 < g <= 1.0:  # NaN too
        raise ValueError(f"gate_factor must be in (0, 1], got {gate_factor!r}")
    return g


def inactive_channels(in_channels: int, gate_factor: float, progress: float) -> int:
    """Input channels each head prunes at progress p: 0 up to 1/12, round(C_in * (1 - g) * 1.5 * (p - 1/12)),
    round(C_in * (1 - g)) from 3/4. Python's round and the authors' product order: their float error too."""
    p = check_progress(progress)
    g = check_gate_factor(gate_factor)
    target = in_channels * (1.0 - g)
    if p <= PRUNE_START:
        return 0
    if p >= PRUNE_END:
        return round(target)
    return round(target * 1.5 * (p - PRUNE_START))


def pruned_fraction(gate_factor: float, progress: float) -> float:
    """The schedule as an unrounded fraction, (1 - g) * min(1, 1.5 * (p - 1/12)): DGC-G's threshold follows it."""
    p = check_progress(progress)
    g = check_gate_factor(gate_factor)
    if p <= PRUNE_START:
        return 0.0
    return (1.0 - g) * min(1.0, 1.5 * (p - PRUNE_START))
