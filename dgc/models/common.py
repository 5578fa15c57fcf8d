"""Helpers shared by the model families: the stem choice and weight initialisation."""

from __future__ import annotations

from torch import nn

STEMS = ("cifar", "imagenet")


def check_stem(stem: str) -> str:
    """'cifar' (3x3 stride-1 stem, no max-pool) or 'imagenet' (the authors' ImageNet stem)."""
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {', '.join(STEMS)}; got {stem!r}")
    return stem


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal convs (fan_out), BN to identity, zero Linear biases.

    DGC heads and saliency generators initialise themselves (their fc2 bias is 1.0) and are skipped:
    they hold no nn.Conv2d and their Linear layers are excluded below.
    """
    from dgc.layers import SaliencyGenerator

    gate_linears = {id(m) for g in model.modules() if isinstance(g, SaliencyGenerator)
                    for m in g.modules()}
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and id(m) not in gate_linears and m.bias is not None:
            nn.init.zeros_(m.bias)
