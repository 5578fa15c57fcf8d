"""What the model families share: conv factories, `factory(in_channels, out_channels, kernel_size, stride,
padding)`, what a model puts where the paper puts a DGC layer (so a DGC network and its baselines are the
same code); the stem choice; weight initialisation."""

from __future__ import annotations

from functools import partial
from typing import Callable

from torch import nn

from dgc.layers import BNReLUConv2d, DGCConv2d, SaliencyGenerator, ShuffledGroupConv2d

ConvFactory = Callable[..., nn.Module]
STEMS = ("cifar", "imagenet")


def dgc(heads: int, gate_factor: float, squeeze_rate: int, preact: bool = True,
        selection: str = "head") -> ConvFactory:
    """DGC layers, with or without their own BN-ReLU (`preact`), head-wise or DGC-G (`selection='global'`)."""
    return partial(DGCConv2d, heads=heads, gate_factor=gate_factor, squeeze_rate=squeeze_rate,
                   preact=preact, selection=selection)


def preact(groups: int = 1) -> ConvFactory:
    """BN-ReLU-Conv, dense (groups 1) or a shuffled static group conv: DGC's baselines in DenseNet."""
    return partial(BNReLUConv2d, groups=groups, shuffle=groups > 1)


# A bare Conv2d without bias: the dense ResNet and MobileNetV2 convolution.
plain: ConvFactory = partial(nn.Conv2d, bias=False)


def grouped(groups: int) -> ConvFactory:
    """A bare shuffled group Conv2d: the static group-conv ResNet baseline."""
    return partial(ShuffledGroupConv2d, groups=groups)


def check_stem(stem: str) -> str:
    """'cifar' (3x3 stride-1 stem, no max-pool) or 'imagenet' (the authors' ImageNet stem)."""
    if stem not in STEMS:
        raise ValueError(f"stem must be one of {', '.join(STEMS)}; got {stem!r}")
    return stem


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal convs (fan_out), BN to identity, zero Linear biases; the DGC heads and saliency
    generators initialise themselves (they hold no nn.Conv2d; their Linears are skipped)."""
    gate_linears = {id(m) for g in model.modules() if isinstance(g, SaliencyGenerator) for m in g.modules()}
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and id(m) not in gate_linears and m.bias is not None:
            nn.init.zeros_(m.bias)
