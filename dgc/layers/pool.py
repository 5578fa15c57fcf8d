"""The DenseNets' transition pooling: nn.AvgPool2d(2), whose execution a kernel may replace."""

from __future__ import annotations

import torch
from torch import nn

from dgc.layers.dispatch import Execution, Executions


def _plain(layer: AvgPool2x2, x: torch.Tensor) -> torch.Tensor:
    return nn.AvgPool2d.forward(layer, x)


class AvgPool2x2(nn.AvgPool2d):
    """nn.AvgPool2d(2) (same module type for hooks and FLOPs counting), run by the execution its table
    picks (dgc/layers/dispatch.py): PyTorch's, or at CPU inference a C++ kernel where a model's layers
    were given it (dgc/kernels/cpu_layers.py)."""

    executions = Executions(Execution("plain", _plain))

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.executions.choose(self, x).run(self, x)
