"""The rule that turns two sets of seeds into a verdict on a relation claim `model <= baseline + tolerance`
(the compare stage's relation verdicts and smoke evidence). With seeds' means m_a, m_b, standard deviations
s_a, s_b and counts n_a, n_b: d = m_a - m_b has the standard error se = sqrt(s_a^2 / n_a + s_b^2 / n_b) and
margin = tolerance - d. With K = 2: "holds" when margin > K * se, "does not hold" when margin < -K * se,
else (and with under 2 seeds a side) "inconclusive".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

K_STANDARD_ERRORS = 2.0
MIN_SEEDS = 2


@dataclass(frozen=True)
class Sample:
    """Mean, standard deviation (over seeds, n - 1 denominator) and number of seeds of one metric."""

    mean: float
    std: float
    n: int


@dataclass(frozen=True)
class RelationVerdict:
    """The verdict on a relation claim, with the numbers behind it."""

    outcome: str  # "holds", "does not hold" or "inconclusive"
    delta: float  # mean(model) - mean(baseline)
    margin: float  # tolerance - delta: how far inside the claim the means are
    standard_error: float | None  # of delta; None with fewer than MIN_SEEDS seeds on a side
    why: str


def standard_error(a: Sample, b: Sample) -> float | None:
    """Of the difference of the two means; None with fewer than MIN_SEEDS seeds on a side."""
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
        outcome, why = "holds", f"margin {margin:+.2f} > {k * se:+.2f} ({k:g} standard errors)"
    elif margin < -k * se:
        outcome, why = "does not hold", f"margin {margin:+.2f} < {-k * se:+.2f} ({k:g} standard errors)"
    else:
        outcome, why = "inconclusive", f"margin {margin:+.2f} within {k:g} standard errors ({k * se:.2f})"
    return RelationVerdict(outcome, delta, margin, se, why)
