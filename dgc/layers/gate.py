"""The saliency generator of one DGC head (Su et al., ECCV 2020, Sec. 3.1): on the pooled input,
Linear(C -> C/s, no bias) -> ReLU -> Linear(C/s -> C, bias 1.0) -> ReLU, a saliency >= 0 per channel."""

from __future__ import annotations

import torch
from torch import nn


def hidden_channels(in_channels: int, squeeze_rate: int) -> int:
    """Width of the gate's hidden layer: C/s, with s halved when C < 80 (the authors' rule)."""
    rate = squeeze_rate if in_channels >= 80 else max(1, squeeze_rate // 2)
    return max(1, in_channels // rate)


class SaliencyGenerator(nn.Module):
    """Per-head channel saliency: (B, C) pooled features -> (B, C) saliencies >= 0."""

    def __init__(self, in_channels: int, squeeze_rate: int = 16) -> None:
        super().__init__()
        hidden = hidden_channels(in_channels, squeeze_rate)
        self.fc1 = nn.Linear(in_channels, hidden, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, in_channels, bias=True)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_normal_(self.fc1.weight)
        nn.init.kaiming_normal_(self.fc2.weight)
        # Bias 1.0: at initialisation every channel looks salient, so early pruning is not random.
        nn.init.constant_(self.fc2.bias, 1.0)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc2(self.relu(self.fc1(pooled))))  # (B, C)
