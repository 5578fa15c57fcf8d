"""The `architecture` stage: FLOPs and parameters of the authors' configurations for every (dataset, model) a
claim names, no training needed (so those claims get a verdict offline); reports/architecture.json.
"""

from __future__ import annotations

from typing import Any

from dgc.config import NUM_CLASSES, input_size_of
from dgc.measure.claims import Claim
from dgc.measure.flops import count_flops
from dgc.models import create_model, model_arguments


def count_architectures(claims: list[Claim]) -> dict[str, dict[str, Any]]:
    """FLOPs and params of every (dataset, model) a claim names (its model or its baseline), built with
    the registry's defaults (the authors' configuration; the CIFAR stem on CIFAR-sized data)."""
    runs = sorted({(c.dataset, m) for c in claims for m in (c.model, c.versus) if m})
    out = {}
    for dataset, model_name in runs:
        stem = {"stem": "cifar"} if dataset != "imagenet" and "stem" in model_arguments(model_name) else {}
        model = create_model(model_name, NUM_CLASSES[dataset], **stem)
        size = input_size_of(dataset)
        out[f"{dataset}-{model_name}"] = {**count_flops(model, size), "input_size": size[-1]}
    return out
