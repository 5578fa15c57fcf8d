"""Learning-rate schedule of the authors' recipe: cosine decay per iteration, no warm-up."""

from __future__ import annotations

import math


def cosine_lr(base_lr: float, step: int, total_steps: int) -> float:
    """lr at iteration `step` of `total_steps`: base_lr * (1 + cos(pi * step / total)) / 2."""
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
