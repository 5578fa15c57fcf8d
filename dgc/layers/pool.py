"""The DenseNets' transition pooling: nn.AvgPool2d(2), run by a C++ kernel at CPU inference."""

from __future__ import annotations

import torch
from torch import nn

from dgc.kernels.cpu import avg_pool2, cpu_inference


class AvgPool2x2(nn.AvgPool2d):
    """nn.AvgPool2d(2) (same module type for hooks and FLOPs counting); at CPU inference on float32
    NCHW input it runs `dgc.kernels.cpu.avg_pool2` (benchmarks/cpu_kernels.py, 2-core CPU, batch 64,
    densenet86's first block: 2.6 ms against 16.0 ms for PyTorch's NCHW average pooling)."""

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and x.is_contiguous() and x.shape[2] >= 2 and x.shape[3] >= 2 and cpu_inference(x):
            return avg_pool2(x)
        return super().forward(x)
