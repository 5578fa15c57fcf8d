"""Conv factories: what a model puts where the paper puts a DGC layer.

A factory is called as `factory(in_channels, out_channels, kernel_size, stride, padding)` and returns a
module; models take factories as arguments so that the DGC network, its dense baseline and its static
group-conv baseline are the same code.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

from torch import nn

from dgc.layers import BNReLUConv2d, DGCConv2d, ShuffledGroupConv2d

ConvFactory = Callable[..., nn.Module]


def dgc(heads: int, gate_factor: float, squeeze_rate: int, preact: bool = True,
        selection: str = "head") -> ConvFactory:
    """DGC layer, with its own BN-ReLU pre-activation (the authors' layer) or without (preact=False);
    head-wise selection (DGC) or one model-wide threshold (selection='global', DGC-G)."""
    return partial(DGCConv2d, heads=heads, gate_factor=gate_factor, squeeze_rate=squeeze_rate,
                   preact=preact, selection=selection)


def preact(groups: int = 1) -> ConvFactory:
    """BN-ReLU-Conv, dense (groups 1) or a shuffled static group conv: DGC's baselines in DenseNet."""
    return partial(BNReLUConv2d, groups=groups, shuffle=groups > 1)


def plain(in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
          padding: int = 0) -> nn.Module:
    """A bare Conv2d without bias: the dense ResNet convolution."""
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)


def grouped(groups: int) -> ConvFactory:
    """A bare shuffled group Conv2d: the static group-conv ResNet baseline."""
    return partial(ShuffledGroupConv2d, groups=groups)
