"""Plain pre-activation convolutions: the dense and static-group baselines of a DGC layer.

`BNReLUConv2d` has the same interface and the same BatchNorm-ReLU pre-activation as `DGCConv2d`,
so a model can swap one for the other. With `groups > 1` and `shuffle=True` it is the static group
convolution of the same cost as DGC at g = 1/groups, with the output channels interleaved the same
way DGC interleaves its heads (a channel shuffle). Its forward is the plain one; a kernel may add a
faster execution to a model's layers by the same mechanism as DGC's (dgc/layers/dispatch.py;
dgc/kernels/cpu_layers.py does at CPU inference).
"""

from __future__ import annotations

import torch
from torch import nn

from dgc.layers.dispatch import Execution, Executions


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Group-major channels -> interleaved: channel j*G + i <- group i, channel j."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


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
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} "
                             f"and out_channels={out_channels}")
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
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in_channels={in_channels} "
                             f"and out_channels={out_channels}")
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, groups=groups,
                         bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(super().forward(x), self.groups)
