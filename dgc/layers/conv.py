"""The plain layers: the baselines of a DGC layer (`BNReLUConv2d` has `DGCConv2d`'s interface; grouped and
shuffled it is the static group conv of DGC's cost at g = 1/groups) and the DenseNets' pooling."""

from __future__ import annotations

import torch
from torch import nn

from dgc.layers.dispatch import Execution, Executions


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Group-major channels -> interleaved: channel j*G + i <- group i, channel j."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def _check_groups(in_channels: int, out_channels: int, groups: int) -> None:
    if in_channels % groups or out_channels % groups:
        raise ValueError(f"groups={groups} must divide in_channels={in_channels} and out_channels={out_channels}")


def _plain(layer: BNReLUConv2d, x: torch.Tensor) -> torch.Tensor:
    out = layer.conv(layer.relu(layer.norm(x)))
    return channel_shuffle(out, layer.conv.groups) if layer.shuffle else out


class BNReLUConv2d(nn.Module):
    """BatchNorm2d -> ReLU -> Conv2d (no bias), optionally grouped and channel-shuffled."""

    executions = Executions(Execution("plain", _plain))

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 dilation: int | tuple[int, int] = 1, groups: int = 1, shuffle: bool = False) -> None:
        super().__init__()
        _check_groups(in_channels, out_channels, groups)
        self.norm = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation,
                              groups=groups, bias=False)
        self.shuffle = shuffle and groups > 1
        self.execution = "auto"  # or the name of a row of `executions`

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.executions.choose(self, x, self.execution).run(self, x)


class ShuffledGroupConv2d(nn.Conv2d):
    """A grouped Conv2d (no bias) whose output channels are interleaved like DGC's heads."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 groups: int = 4) -> None:
        _check_groups(in_channels, out_channels, groups)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(super().forward(x), self.groups)


def _plain_pool(layer: AvgPool2x2, x: torch.Tensor) -> torch.Tensor:
    return nn.AvgPool2d.forward(layer, x)


class AvgPool2x2(nn.AvgPool2d):
    """nn.AvgPool2d(2) (the same type for hooks and FLOPs), run by its table's execution: PyTorch's, or
    at CPU inference a C++ kernel where a model's layers were given it (dgc/kernels/cpu_layers.py)."""

    executions = Executions(Execution("plain", _plain_pool))

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.executions.choose(self, x).run(self, x)
