"""DenseNet-86 / CondenseNet-74 (Huang et al., CVPR 2018) with DGC (the authors' "DyDenseNet"), and its
baselines: a dense layer is a 1x1 conv C -> 4k (DGC's place), then BN-ReLU-3x3 4-group conv 4k -> k,
concatenated; transitions are 2x2 average pooling; module names follow the authors' checkpoints."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dgc.layers import AvgPool2x2, BNReLUConv2d
from dgc.layers.executions import channels_last
from dgc.models.convs import ConvFactory, check_stem, init_weights


class DenseLayer(nn.Module):
    def __init__(self, in_channels: int, growth: int, conv1x1: ConvFactory) -> None:
        super().__init__()
        self.conv_1 = conv1x1(in_channels, 4 * growth, 1, 1, 0)
        self.conv_2 = BNReLUConv2d(4 * growth, growth, 3, padding=1, groups=4)

    def new_features(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's `growth` new channels for input x (B, C, h, w)."""
        return self.conv_2(self.conv_1(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.new_features(x)], dim=1)  # (B, C + k, h, w)


class DenseBlock(nn.Sequential):
    """Dense layers, each appending its `growth` new channels to its input. With autograd on (or compiling)
    each concatenates; without, the layers write into slices of one preallocated buffer: the same values
    without the O(n^2) copies (the largest item of densenet86_dgc's CPU inference with the C++ kernels)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            return super().forward(x)
        b, c, h, w = x.shape
        total = c + sum(layer.conv_2.conv.out_channels for layer in self)
        buffer = torch.empty((b, total, h, w), dtype=x.dtype, device=x.device,
                             memory_format=torch.channels_last if channels_last(x) else torch.contiguous_format)
        buffer[:, :c].copy_(x)
        for layer in self:
            new = layer.new_features(buffer[:, :c])
            buffer[:, c:c + new.shape[1]].copy_(new)
            c += new.shape[1]
        return buffer


class DenseNet(nn.Module):
    """Dense blocks of `depth[i]` layers with growth `growth[i]`, 2x2 average pooling between blocks."""

    def __init__(self, num_classes: int, conv1x1: ConvFactory, growth: Sequence[int],
                 depth: Sequence[int], stem: str = "cifar") -> None:
        super().__init__()
        if len(growth) != len(depth):
            raise ValueError(f"growth {tuple(growth)} and depth {tuple(depth)} must have the same length")
        stride = 1 if check_stem(stem) == "cifar" else 2
        channels = 2 * growth[0]
        self.features = nn.Sequential()
        self.features.add_module("init_conv", nn.Conv2d(3, channels, 3, stride, 1, bias=False))
        for i, (n_layers, k) in enumerate(zip(depth, growth), start=1):
            block = DenseBlock()
            for j in range(1, n_layers + 1):
                block.add_module(f"denselayer_{j}", DenseLayer(channels, k, conv1x1))
                channels += k
            self.features.add_module(f"denseblock_{i}", block)
            if i < len(depth):
                self.features.add_module(f"transition_{i}", AvgPool2x2())
        self.bn_last = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(channels, num_classes)
        self.num_features = channels
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu(self.bn_last(self.features(x))))  # (B, C, 1, 1)
        return self.classifier(torch.flatten(x, 1))  # (B, num_classes)
