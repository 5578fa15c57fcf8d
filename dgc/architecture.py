"""The `architecture` stage: FLOPs and parameters of the authors' configurations, no training needed.

For every (dataset, model) that a claim of claims/paper.yaml names, the model is built with its
registry defaults (the authors' configuration) for that dataset's classes and input size, and counted
with `dgc.flops.profile`. So the FLOPs and parameter claims get a verdict offline, in the smoke
profile too, and every claimed model's full-size cost is on record. Written to
reports/architecture.json, keyed "<dataset>-<model>".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dgc.compare import Claim
from dgc.config import NUM_CLASSES
from dgc.flops import profile
from dgc.models import create_model, model_arguments


def input_size_of(dataset: str, data_root: str | Path | None = None) -> tuple[int, int, int]:
    """(C, H, W) of a dataset's images: 224 for ImageNet, 32 for CIFAR, the stored size for digits
    (read from `data_root`/digits when given; `data.digits_size` may store them smaller)."""
    if dataset == "imagenet":
        return (3, 224, 224)
    if dataset == "digits" and data_root is not None:
        from dgc.data.cifar_format import image_size

        side = image_size(Path(data_root) / dataset, dataset)
        return (3, side, side)
    return (3, 32, 32)


def count_architectures(claims: list[Claim]) -> dict[str, dict[str, Any]]:
    """FLOPs and params of every (dataset, model) a claim names (its model or its baseline), built with
    the registry's defaults (the authors' configuration; the CIFAR stem on CIFAR-sized data)."""
    runs = sorted({(c.dataset, m) for c in claims for m in (c.model, c.versus) if m})
    out = {}
    for dataset, model_name in runs:
        stem = {"stem": "cifar"} if dataset != "imagenet" and "stem" in model_arguments(model_name) else {}
        model = create_model(model_name, NUM_CLASSES[dataset], **stem)
        size = input_size_of(dataset)
        out[f"{dataset}-{model_name}"] = {**profile(model, size), "input_size": size[-1]}
    return out
