"""The rule that turns two sets of seeds into a verdict on a relation claim.

A relation claim says `metric(model) <= metric(baseline) + tolerance` (errors: lower is better). With
n_a and n_b seeds, means m_a, m_b and standard deviations s_a, s_b, the difference of the means
d = m_a - m_b has the standard error se = sqrt(s_a^2 / n_a + s_b^2 / n_b), and the claim's margin is
tolerance - d (positive: the claim holds by that much). With K = 2 standard errors:

- "holds"          margin >  K * se   (the data show the claim beyond the seeds' spread)
- "does not hold"  margin < -K * se   (the data contradict it beyond the spread)
- "inconclusive"   otherwise, and always when either side has fewer than 2 seeds (no spread known)

The same rule serves the smoke evidence and the paper profile's relation verdicts (dgc/stages/compare.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

K_STANDARD_ERRORS = 2.0
MIN_SEEDS = 2
OUTCOMES = ("holds", "does not hold", "inconclusive")


@dataclass(frozen=True)
class Sample:
    """Mean, standard deviation (over seeds, n - 1 denominator) and number of seeds of one metric."""

    mean: float
    std: float
    n: int


@dataclass(frozen=True)
class RelationVerdict:
    outcome: str  # one of OUTCOMES
    delta: float  # mean(model) - mean(baseline)
    margin: float  # tolerance - delta: how far inside the claim the means are
    standard_error: float | None  # of delta; None with fewer than MIN_SEEDS seeds on a side
    why: str


def standard_error(a: Sample, b: Sample) -> float | None:
    """Of the difference of the two means, sqrt(s_a^2/n_a + s_b^2/n_b); None with fewer than
    MIN_SEEDS seeds on a side (no spread known)."""
    if min(a.n, b.n) < MIN_SEEDS:
        return None
    return math.sqrt(a.std ** 2 / a.n + b.std ** 2 / b.n)


def judge_relation(model: Sample, baseline: Sample, tolerance: float,
                   k: float = K_STANDARD_ERRORS) -> RelationVerdict:
    """The verdict on `model <= baseline + tolerance` by the rule of this module's docstring."""
    delta = model.mean - baseline.mean
    margin = tolerance - delta
    se = standard_error(model, baseline)
    if se is None:
        return RelationVerdict("inconclusive", delta, margin, None,
                               f"{min(model.n, baseline.n)} seed(s) on a side: no spread to judge by")
    if margin > k * se:
        outcome, cmp = "holds", ">"
    elif margin < -k * se:
        outcome, cmp = "does not hold", "<"
    else:
        return RelationVerdict("inconclusive", delta, margin, se,
                               f"margin {margin:+.2f} within {k:g} standard errors ({k * se:.2f})")
    bound = k * se if outcome == "holds" else -k * se
    return RelationVerdict(outcome, delta, margin, se,
                           f"margin {margin:+.2f} {cmp} {bound:+.2f} ({k:g} standard errors)")
