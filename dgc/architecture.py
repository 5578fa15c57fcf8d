"""The `architecture` stage: FLOPs and parameters of the authors' configurations, no training needed.

For every (dataset, model) that an architecture claim of claims/paper.yaml names, the model is built
with its registry defaults (the authors' configuration) for that dataset's classes and input size,
and counted with `dgc.flops.profile`. So the FLOPs and parameter claims get a verdict offline, in the
smoke profile too. Written to reports/architecture.json, keyed "<dataset>-<model>".
"""

from __future__ import annotations

from typing import Any

from dgc.compare import Claim
from dgc.config import NUM_CLASSES
from dgc.flops import profile
from dgc.models import create_model


def input_size_of(dataset: str) -> tuple[int, int, int]:
    return (3, 224, 224) if dataset == "imagenet" else (3, 32, 32)


def count_architectures(claims: list[Claim]) -> dict[str, dict[str, Any]]:
    runs = sorted({(c.dataset, c.model) for c in claims if c.kind == "architecture"})
    out = {}
    for dataset, model_name in runs:
        model = create_model(model_name, NUM_CLASSES[dataset])
        size = input_size_of(dataset)
        out[f"{dataset}-{model_name}"] = {**profile(model, size), "input_size": size[-1]}
    return out
