"""MobileNetV2 (Sandler et al., CVPR 2018) with DGC in its 1x1 convs, and its baselines.

Inverted residual block: 1x1 expansion (t x) -> BN -> ReLU6 -> 3x3 depthwise -> BN -> ReLU6 ->
1x1 projection -> BN (linear bottleneck), identity shortcut when stride 1 and in == out.

DGC placement. Both 1x1 convs of every block (33 layers at the default depth) are DGC layers without
their own pre-activation (`DGCConv2d(preact=False)`): the block already has BN(-ReLU6) around each
conv, and each DGC layer is followed by the block's BN, the way the authors put DGC into ResNet-18
followed by the block's BN. The saliency generators therefore see the conv's raw input: the ReLU6
output for the projection, the (signed) linear-bottleneck output for the expansion. The depthwise 3x3
is already one group per channel and stays; the stem, the last 1x1 conv to 1280 and the classifier
stay static. Baselines: the same network with plain 1x1 convs (`mobilenetv2`) and with fixed 2-group
shuffled 1x1 convs (`mobilenetv2_gc`, the conv cost of DGC at g = 1/2).

Why gate factor 0.5 (numbers from `dgc.measure.flops.count_flops`, multiply-adds at batch 1, width 1, 4 heads,
squeeze rate 16):

    layout                 model             flops_dense  flops_expected     params
    CIFAR-10 (cifar stem,  mobilenetv2_dgc    92,716,826      55,394,074  4,599,690
      32x32, 10 classes)   mobilenetv2        89,499,146      89,499,146  2,236,682
                           mobilenetv2_gc     52,176,394      52,176,394  1,379,146
    ImageNet (imagenet     mobilenetv2_dgc   312,234,008     188,299,288  5,867,880
      stem, 224x224,       mobilenetv2       306,943,784     306,943,784  3,504,872
      1000 classes)        mobilenetv2_gc    183,009,064     183,009,064  2,647,336

The blocks' 1x1 convs hold 83.4% (CIFAR, 74,645,504) and 80.8% (ImageNet, 247,869,440) of the dense
model's FLOPs (the static last 1x1 conv another 7.3% / 6.5%); the depthwise convs, stem and
classifier are a small remainder DGC cannot touch. Halving the 1x1 convs' input channels (g = 0.5)
brings the model to 61.9% (CIFAR) and 61.3% (ImageNet) of the dense model's FLOPs; g = 0.25 would give
36,732,698 (41.0%) and 126,331,928 (41.2%). 0.5 is chosen because MobileNetV2 is already a compact
network (its 3x3 convs are depthwise, its bottlenecks thin), so it keeps more of each 1x1 conv's
inputs than the wide DenseNet-86 (g 0.25) and about as many as ResNet-18 (g 0.45); its cut,
flops_expected / flops_dense of the DGC model = 59.7% (CIFAR), 60.3% (ImageNet), stays on the mild side
of the paper's models by the same counter (ResNet-18 48.8%, DenseNet-86 38.9%).
The gate overhead is 3,217,680 (3.6% of dense, CIFAR) and 5,290,224 (1.7%, ImageNet) FLOPs: the DGC
model's flops_expected is exactly the gc baseline's FLOPs plus that overhead. Its price is in
parameters: the saliency generators add 2,363,008 (2,285,184 of them in the projection convs, whose
input is the 6x wide expanded tensor), so the DGC model has about twice the dense model's parameters.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from dgc.models.common import check_stem, init_weights
from dgc.models.convs import ConvFactory

# (expansion t, channels c, repeats n, stride s) of the seven stages, Table 2 of the paper.
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1))
DEFAULT_BLOCKS = tuple(n for _, _, n, _ in SETTINGS)
STEM_CHANNELS = 32
LAST_CHANNELS = 1280
# The CIFAR variant also keeps the second stage (c = 24) at stride 1: with the stride-1 stem,
# 32x32 inputs then reach the last stage at 4x4 (the ImageNet layout: 224 -> 7x7).
CIFAR_STRIDE1_STAGE = 1


def round_channels(value: float, divisor: int = 8) -> int:
    """`value` rounded to the nearest multiple of `divisor` (the MobileNetV2 reference's rule):
    never below `divisor` and never more than 10% below `value`."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _check_width_blocks(width: float, blocks: Sequence[int]) -> tuple[float, tuple[int, ...]]:
    w = float(width)
    if not math.isfinite(w) or w <= 0:
        raise ValueError(f"width must be a positive number, got {width!r}")
    blocks = tuple(blocks)
    if len(blocks) != len(SETTINGS) or any(int(n) != n or n < 1 for n in blocks):
        raise ValueError(f"blocks must be {len(SETTINGS)} positive repeat counts, got {blocks!r}")
    return w, tuple(int(n) for n in blocks)


def block_layout(width: float = 1.0, blocks: Sequence[int] = DEFAULT_BLOCKS,
                 stem: str = "imagenet") -> list[list[tuple[int, int, int, int]]]:
    """Per stage, the (in, hidden, out, stride) of each inverted residual block."""
    width, blocks = _check_width_blocks(width, blocks)
    cifar = check_stem(stem) == "cifar"
    channels = round_channels(STEM_CHANNELS * width)
    stages = []
    for i, ((t, c, _, s), n) in enumerate(zip(SETTINGS, blocks)):
        out = round_channels(c * width)
        first_stride = 1 if (cifar and i == CIFAR_STRIDE1_STAGE) else s
        stage = []
        for j in range(n):
            stage.append((channels, channels * t, out, first_stride if j == 0 else 1))
            channels = out
        stages.append(stage)
    return stages


def pointwise_channels(width: float = 1.0, blocks: Sequence[int] = DEFAULT_BLOCKS) -> list[int]:
    """Every input and output channel count of the blocks' 1x1 convs (expansion and projection)."""
    found = set()
    for stage in block_layout(width, blocks):
        for c_in, hidden, out, _ in stage:
            if hidden != c_in:  # the t = 1 block has no expansion conv
                found.update((c_in, hidden))
            found.update((hidden, out))
    return sorted(found)


def check_pointwise_divisor(setting: str, value: int, width: float, blocks: Sequence[int]) -> None:
    """Raise ValueError unless `value` (heads or groups) divides every 1x1 conv's channel counts."""
    if int(value) != value or value < 1:
        raise ValueError(f"{setting} must be a positive integer, got {value!r}")
    bad = [c for c in pointwise_channels(width, blocks) if c % value]
    if bad:
        raise ValueError(f"{setting}={value} must divide the channels of every MobileNetV2 1x1 conv "
                         f"(width {width}); it does not divide {bad[0]}")


class InvertedResidual(nn.Module):
    """1x1 expansion (t x) -> BN -> ReLU6 -> 3x3 depthwise -> BN -> ReLU6 -> 1x1 projection -> BN.

    Linear bottleneck: no activation after the projection. Identity shortcut when stride is 1 and
    in == out. With t = 1 there is no expansion conv. The two 1x1 convs come from the factories.
    """

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
    """MobileNetV2: 3x3 stem (32 x width channels), seven stages of inverted residual blocks,
    1x1 conv to 1280 (x width when width > 1), global average pool, Linear classifier (no dropout).

    Args:
        num_classes: classifier outputs.
        expand_conv, project_conv: factories of the blocks' 1x1 expansion and projection convs
            (DGC layers, plain or shuffled group convs); each is followed by the block's own BN.
        blocks: repeat count of each of the seven stages (the paper: 1, 2, 3, 4, 3, 3, 1).
        width: width multiplier; channels are rounded to multiples of 8 (`round_channels`).
        stem: 'imagenet' (stem stride 2, the paper's strides: 224 -> 7x7) or 'cifar' (the common
            CIFAR variant: stem stride 1 and the second stage, c = 24, at stride 1: 32 -> 4x4).
    """

    def __init__(self, num_classes: int, expand_conv: ConvFactory, project_conv: ConvFactory,
                 blocks: Sequence[int] = DEFAULT_BLOCKS, width: float = 1.0,
                 stem: str = "imagenet") -> None:
        super().__init__()
        layout = block_layout(width, blocks, stem)
        stem_channels = layout[0][0][0]
        self.conv_stem = nn.Conv2d(3, stem_channels, 3, 2 if stem == "imagenet" else 1, 1, bias=False)
        self.bn_stem = nn.BatchNorm2d(stem_channels)
        self.act = nn.ReLU6(inplace=True)
        for i, stage in enumerate(layout, start=1):
            self.add_module(f"stage{i}", nn.Sequential(
                *(InvertedResidual(c_in, hidden, out, stride, expand_conv, project_conv)
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
