"""MobileNetV2 (Sandler et al., CVPR 2018) with DGC in both 1x1 convs of every block (`preact=False`: the
block's BN follows each conv, so the gates see its raw input), and its baselines. g = 0.5 (`count_flops`):
the 1x1 convs are 83.4% / 80.8% (CIFAR / ImageNet) of the dense FLOPs, g 0.5 leaves 61.9% / 61.3%, the
mild side of the paper's models for a compact network; the gates add 3.6% / 1.7% FLOPs, 2,363,008 params."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from dgc.models.convs import ConvFactory, check_stem, init_weights

# (expansion t, channels c, repeats n, stride s) of the seven stages, Table 2 of the paper.
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1))
DEFAULT_BLOCKS = tuple(n for _, _, n, _ in SETTINGS)
STEM_CHANNELS = 32
LAST_CHANNELS = 1280
CIFAR_STRIDE1_STAGE = 1  # the CIFAR variant keeps stage 2 (c = 24) at stride 1 too: 32x32 -> 4x4


def round_channels(value: float, divisor: int = 8) -> int:
    """`value` rounded to a multiple of `divisor`, never below it nor 10% below `value` (the reference's)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def block_layout(width: float = 1.0, blocks: Sequence[int] = DEFAULT_BLOCKS,
                 stem: str = "imagenet") -> list[list[tuple[int, int, int, int]]]:
    """Per stage, the (in, hidden, out, stride) of each inverted residual block."""
    w, blocks = float(width), tuple(blocks)
    if not math.isfinite(w) or w <= 0:
        raise ValueError(f"width must be a positive number, got {width!r}")
    if len(blocks) != len(SETTINGS) or any(int(n) != n or n < 1 for n in blocks):
        raise ValueError(f"blocks must be {len(SETTINGS)} positive repeat counts, got {blocks!r}")
    cifar = check_stem(stem) == "cifar"
    channels = round_channels(STEM_CHANNELS * w)
    stages = []
    for i, ((t, c, _, s), n) in enumerate(zip(SETTINGS, blocks)):
        out = round_channels(c * w)
        first_stride = 1 if (cifar and i == CIFAR_STRIDE1_STAGE) else s
        stages.append([(channels, channels * t, out, first_stride)] + [(out, out * t, out, 1)] * (int(n) - 1))
        channels = out
    return stages


def check_pointwise_divisor(setting: str, value: int, width: float, blocks: Sequence[int]) -> None:
    """Raise ValueError unless `value` (heads or groups) divides every 1x1 conv's channel counts."""
    if int(value) != value or value < 1:
        raise ValueError(f"{setting} must be a positive integer, got {value!r}")
    # in, hidden, out of every block: the expansion's and the projection's (the t = 1 block has hidden == in)
    channels = {c for stage in block_layout(width, blocks) for block in stage for c in block[:3]}
    bad = [c for c in sorted(channels) if c % value]
    if bad:
        raise ValueError(f"{setting}={value} must divide the channels of every MobileNetV2 1x1 conv "
                         f"(width {width}); it does not divide {bad[0]}")


class InvertedResidual(nn.Module):
    """1x1 expansion (t x, none at t = 1) -> BN -> ReLU6 -> 3x3 depthwise -> BN -> ReLU6 -> 1x1 projection
    -> BN (linear bottleneck); identity shortcut when stride is 1 and in == out."""

    def __init__(self, in_channels: int, hidden: int, out_channels: int, stride: int,
                 expand_conv: ConvFactory, project_conv: ConvFactory) -> None:
        super().__init__()
        self.act = nn.ReLU6(inplace=True)
        self.conv_expand: nn.Module | None = None
        if hidden != in_channels:
            self.conv_expand = expand_conv(in_channels, hidden, 1, 1, 0)
            self.bn_expand = nn.BatchNorm2d(hidden)
        self.conv_dw = nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False)
        self.bn_dw = nn.BatchNorm2d(hidden)
        self.conv_project = project_conv(hidden, out_channels, 1, 1, 0)
        self.bn_project = nn.BatchNorm2d(out_channels)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.conv_expand is not None:
            out = self.act(self.bn_expand(self.conv_expand(x)))  # (B, t*C_in, h, w)
        out = self.act(self.bn_dw(self.conv_dw(out)))  # (B, t*C_in, h', w')
        out = self.bn_project(self.conv_project(out))  # (B, C_out, h', w')
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    """MobileNetV2: 3x3 stem, seven stages of inverted residuals (`blocks` repeats each, 1x1 convs from the
    factory), 1x1 conv to 1280, pool, Linear; `stem` 'imagenet' (224 -> 7x7) or 'cifar' (32 -> 4x4)."""

    def __init__(self, num_classes: int, conv1x1: ConvFactory, blocks: Sequence[int] = DEFAULT_BLOCKS,
                 width: float = 1.0, stem: str = "imagenet") -> None:
        super().__init__()
        layout = block_layout(width, blocks, stem)
        stem_channels = layout[0][0][0]
        self.conv_stem = nn.Conv2d(3, stem_channels, 3, 2 if stem == "imagenet" else 1, 1, bias=False)
        self.bn_stem = nn.BatchNorm2d(stem_channels)
        self.act = nn.ReLU6(inplace=True)
        for i, stage in enumerate(layout, start=1):
            self.add_module(f"stage{i}", nn.Sequential(
                *(InvertedResidual(c_in, hidden, out, stride, conv1x1, conv1x1)
                  for c_in, hidden, out, stride in stage)))
        self.num_stages = len(layout)
        channels = layout[-1][-1][2]
        # The reference widens the last conv only for width > 1.
        last = round_channels(LAST_CHANNELS * max(1.0, float(width)))
        self.conv_last = nn.Conv2d(channels, last, 1, bias=False)
        self.bn_last = nn.BatchNorm2d(last)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last, num_classes)
        self.num_features = last
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn_stem(self.conv_stem(x)))
        for i in range(1, self.num_stages + 1):
            x = getattr(self, f"stage{i}")(x)
        x = self.act(self.bn_last(self.conv_last(x)))  # (B, 1280, h, w)
        return self.classifier(torch.flatten(self.pool(x), 1))  # (B, num_classes)
