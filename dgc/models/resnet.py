"""ResNet-18 (He et al., 2016) with DGC in every 3x3 and downsample conv (the authors' "DyResNet-18": each
with its own BN-ReLU, then the block's BN; names as torchvision's and their checkpoints), and its baselines."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from dgc.models.convs import ConvFactory, check_stem, init_weights


class BasicBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, stride: int, conv3x3: ConvFactory,
                 downsample_conv: ConvFactory) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, 3, stride, 1)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(out_channels, out_channels, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(downsample_conv(in_channels, out_channels, 1, stride, 0),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet with basic blocks; `width` is the first stage's channel count (64 for ResNet-18)."""

    def __init__(self, num_classes: int, conv3x3: ConvFactory, downsample_conv: ConvFactory,
                 blocks: Sequence[int] = (2, 2, 2, 2), width: int = 64, stem: str = "imagenet") -> None:
        super().__init__()
        imagenet = check_stem(stem) == "imagenet"  # 7x7 stride-2 conv and max-pool, else a 3x3 stride-1 conv
        self.conv1 = nn.Conv2d(3, width, *((7, 2, 3) if imagenet else (3, 1, 1)), bias=False)
        self.maxpool = nn.MaxPool2d(3, 2, 1) if imagenet else nn.Identity()
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        channels = width
        for i, n_blocks in enumerate(blocks):
            out = width * 2 ** i
            layer = []
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                layer.append(BasicBlock(channels, out, stride, conv3x3, downsample_conv))
                channels = out
            self.add_module(f"layer{i + 1}", nn.Sequential(*layer))
        self.num_stages = len(blocks)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self.num_features = channels
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{i}")(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))  # (B, num_classes)
