"""Plain pre-activation convolutions: the dense and static-group baselines of a DGC layer.

`BNReLUConv2d` has the same interface and the same BatchNorm-ReLU pre-activation as `DGCConv2d`,
so a model can swap one for the other. With `groups > 1` and `shuffle=True` it is the static group
convolution of the same cost as DGC at g = 1/groups, with the output channels interleaved the same
way DGC interleaves its heads (a channel shuffle).
"""

from __future__ import annotations

import torch
from torch import nn

from dgc.kernels.cpu import batch_strided, bn_affine, bnrelu_group_conv, bnrelu_mean, cpu_inference, fused_1x1


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Group-major channels -> interleaved: channel j*G + i <- group i, channel j."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class BNReLUConv2d(nn.Module):
    """BatchNorm2d -> ReLU -> Conv2d (no bias), optionally grouped and channel-shuffled."""

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kernel = self.cpu_kernel(x)
        if kernel is not None:
            scale, shift = bn_affine(self.norm)
            if kernel == "fused":
                return self._shuffled_group_1x1(x, scale, shift)
            return bnrelu_group_conv(x, self.conv.weight, scale, shift, self.conv.padding,
                                     self.conv.groups, self.shuffle)
        out = self.conv(self.relu(self.norm(x)))
        return channel_shuffle(out, self.conv.groups) if self.shuffle else out

    def _shuffled_group_1x1(self, x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """A shuffled 1x1 group conv is a DGC 1x1 conv whose heads keep fixed channels (group g's)
        at saliency 1, with the same interleaved output: BN-ReLU in one pass, then the DGC layer's
        fused 1x1 kernel (the gather inside the GEMM; faster than the direct conv kernel on 1x1s)."""
        y, _ = bnrelu_mean(x, scale, shift)
        b, c = x.shape[:2]
        groups = self.conv.groups
        c_group, c_out = c // groups, self.conv.out_channels // groups
        channels = torch.arange(c).view(groups, c_group)  # (G, C/G): group g's input channels
        weight = x.new_zeros(groups, c_out, c)  # each group's weight placed at its own channels
        weight.scatter_(2, channels[:, None, :].expand(groups, c_out, c_group),
                        self.conv.weight.view(groups, c_out, c_group))
        idx = channels.expand(b, groups, c_group).contiguous()
        return fused_1x1(y, weight, idx, x.new_ones(b, groups, c_group))

    def cpu_kernel(self, x: torch.Tensor) -> str | None:
        """Which C++ kernel (dgc/kernels/cpu.py) runs this forward, or None for PyTorch's ops.

        Only at CPU inference (eval mode, no autograd), float32 NCHW (or a channel slice), stride 1,
        groups > 1: 'fused' (`fused_1x1`) for shuffled 1x1 group convs; 'direct' (BN-ReLU + direct
        conv) for groups of at most 8 output channels and output rows of at least 8 positions, where
        it was measured faster than oneDNN's grouped conv (docs/design.md, CPU kernels)."""
        conv = self.conv
        if (self.training or conv.groups == 1 or conv.stride != (1, 1) or conv.dilation != (1, 1)
                or not isinstance(conv.padding, tuple) or conv.padding_mode != "zeros"
                or x.dim() != 4 or not batch_strided(x) or self.norm.running_mean is None):
            return None
        if conv.kernel_size == (1, 1) and conv.padding == (0, 0) and self.shuffle:
            kernel = "fused"
        elif conv.out_channels // conv.groups <= 8 and \
                x.shape[-1] + 2 * conv.padding[1] - conv.kernel_size[1] + 1 >= 8:
            kernel = "direct"
        else:
            return None
        return kernel if cpu_inference(x) else None


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
