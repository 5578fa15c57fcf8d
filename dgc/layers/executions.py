"""The executions of a DGC layer: exact, equivalent ways to compute the same conv over the channels a
layer's selection keeps (docs/design.md, section 4), and the rule `auto` picks one by.

Every execution is one function `run(layer, x, saliency, keep, kept)` and one row of the layer's
table (`DGC_EXECUTIONS`, dgc/layers/dispatch.py):

    x         (B, C_in, h, w) the pre-activated input
    saliency  (B, H, C_in) every head's saliencies (not detached: the conv's gradient reaches the
              saliency generators through the kept channels' scale)
    keep      (B, H, C_in) bool, the kept channels; None only after fused_cpu's own selection
    kept      (B, H, K) the kept channel indices, or None (see `DGCConv2d.select`)

and returns (B, C_out, h', w') with the heads interleaved (channel j*H + i is head i's channel j).
The table holds the PyTorch executions; the kernels' (`fused`: dgc/kernels/fused_triton.py,
`fused_cpu`: dgc/kernels/cpu_layers.py) are added to one model's layers by the code that runs them.
Adding an execution: its function, its row, and its name in tests/test_dgc_layer.py's EXECUTIONS (the
all-executions test runs every one of them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from dgc.layers.conv import channel_shuffle
from dgc.layers.dispatch import Execution, Executions

if TYPE_CHECKING:
    from dgc.layers.dgc_conv import DGCConv2d

# -- the executions -------------------------------------------------------------------------------
def masked(layer: DGCConv2d, x: torch.Tensor, saliency: torch.Tensor, keep: torch.Tensor | None,
           kept: torch.Tensor | None) -> torch.Tensor:
    """The authors' execution: H scaled copies of x through one grouped conv (memory H x input)."""
    b, c, h, w = x.shape
    heads = layer.num_heads
    scale = saliency * keep  # pruned channels zeroed, kept ones scaled by their saliency
    xs = (x.unsqueeze(1) * scale[..., None, None]).reshape(b, heads * c, h, w)  # (B, H*C_in, h, w)
    out = F.conv2d(xs, layer.head_weights().flatten(0, 1), None, layer.stride, layer.padding,
                   layer.dilation, groups=heads)  # (B, H*C_out/H, h', w'), head-major
    return channel_shuffle(out, heads)


def scaled_weight(layer: DGCConv2d, x: torch.Tensor, saliency: torch.Tensor, keep: torch.Tensor | None,
                  kept: torch.Tensor | None) -> torch.Tensor:
    """Each sample's saliencies folded into its own weights, conv(x * s, W) = conv(x, W * s), so x is
    read once: one batched matmul for 1x1 convs, a conv grouped over the batch for k x k."""
    b, c, h, w = x.shape
    scale = saliency * keep
    # Heads on dim 1: row j*H + i of the flattened (C_out, ...) weight is head i's channel j.
    weight = layer.head_weights().transpose(0, 1).contiguous()  # (C_out/H, H, C_in, k, k)
    per_sample = weight[None] * scale[:, None, :, :, None, None]  # (B, C_out/H, H, C_in, k, k)
    per_sample = per_sample.reshape(b, layer.out_channels, c, *layer.kernel_size)  # (B, C_out, C_in, k, k)
    if layer.kernel_size == (1, 1) and layer.stride == (1, 1) and layer.padding == (0, 0):
        w2 = per_sample.view(b, layer.out_channels, c)  # (B, C_out, C_in)
        if channels_last(x):
            rows = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # (B, hw, C_in), no copy
            out = torch.bmm(rows, w2.transpose(1, 2))  # (B, hw, C_out)
            return out.view(b, h, w, layer.out_channels).permute(0, 3, 1, 2)  # channels_last view
        return torch.bmm(w2, x.reshape(b, c, h * w)).view(b, layer.out_channels, h, w)
    out = F.conv2d(x.reshape(1, b * c, h, w),
                   per_sample.reshape(b * layer.out_channels, c, *layer.kernel_size), None,
                   layer.stride, layer.padding, layer.dilation, groups=b)  # (1, B*C_out, h', w')
    return out.view(b, layer.out_channels, *out.shape[-2:])


def sparse(layer: DGCConv2d, x: torch.Tensor, saliency: torch.Tensor, keep: torch.Tensor | None,
           kept: torch.Tensor | None) -> torch.Tensor:
    """Only the kept channels: per sample and head, gather them and the matching weight slices (times
    their saliency), then one batched matmul (1x1) or one conv grouped over (sample, head) (k x k).
    Work: K / C_in times the dense conv."""
    b, c, h, w = x.shape
    heads, co = layer.num_heads, layer.out_channels // layer.num_heads
    scale = saliency * keep
    idx = kept_indices(layer, saliency, keep, kept)  # (B, H, K)
    k_keep = idx.shape[2]
    if k_keep == 0:
        ho, wo = _conv_out(h, w, layer.kernel_size, layer.stride, layer.padding, layer.dilation)
        # Nothing kept: zeros, still attached to the graph (every gradient is zero, as masked).
        return x.new_zeros(b, layer.out_channels, ho, wo) + 0.0 * scale.sum()
    values = scale.gather(2, idx)  # (B, H, K)
    # Rows (head, input channel) of the weight: (H*C_in, C_out/H * kh * kw). The gathers are
    # index_select on rows of 2-d views (contiguous row copies, faster than advanced indexing).
    weight = layer.head_weights().transpose(1, 2).reshape(heads * c, -1)
    rows = idx + torch.arange(heads, device=x.device)[None, :, None] * c  # (B, H, K) into H*C_in
    w_kept = weight.index_select(0, rows.reshape(-1))
    w_kept = w_kept.view(b, heads, k_keep, co, *layer.kernel_size) * values[..., None, None, None]
    if is_1x1(layer):
        x = subsample(layer, x)
        h, w = x.shape[-2:]
        x_kept = _gather_channels(x, idx)  # (B, H*K, h, w)
        out = torch.bmm(w_kept.reshape(b * heads, k_keep, co).transpose(1, 2),
                        x_kept.reshape(b * heads, k_keep, h * w))  # (B*H, C_out/H, hw)
        ho, wo = h, w
    else:
        x_kept = _gather_channels(x, idx)  # (B, H*K, h, w)
        out = F.conv2d(x_kept.reshape(1, b * heads * k_keep, h, w),
                       w_kept.transpose(2, 3).reshape(b * heads * co, k_keep, *layer.kernel_size),
                       None, layer.stride, layer.padding, layer.dilation, groups=b * heads)
        ho, wo = out.shape[-2:]  # (1, B*H*C_out/H, h', w')
    return channel_shuffle(out.view(b, layer.out_channels, ho, wo), heads)


# -- where each applies, and where `auto` picks it -----------------------------------------------
# The thresholds of `auto`, measured with `dgc bench` on the 2-core CPU and an H200 (docs/speed.md):
GATHER_DEVICES = ("cpu",)  # where gathering the kept channels was measured to pay. On CUDA `sparse` ran
#   slower than `scaled_weight` (H200: inference 72.1 against 39.0 ms), so `auto` never gathers there.
GATHER_WEIGHT_RATIO = 2  # a gather pays while the per-sample weights it builds (C_out * k * k per kept
#   channel) are at most this many times the H input copies of `masked` (H * h * w per kept channel).
SPARSE_TRAINING_KEEP = 0.3  # in training, `sparse` runs k x k convs keeping at most this fraction of
#   their channels; wider ones, and every 1x1 conv, train faster as `scaled_weight` (a batched matmul).


def fixed_selection(layer: DGCConv2d, x: torch.Tensor) -> bool:
    """The number of channels to gather is known: n_in fixed (not inside the pruning ramp), or DGC-G."""
    return layer.selection == "global" or layer.fixed_inactive is not None


def training(layer: DGCConv2d) -> bool:
    return layer.training and torch.is_grad_enabled()


def gather_pays(layer: DGCConv2d, x: torch.Tensor) -> bool:
    """`auto`'s condition for a gather execution: per-head selection with n_in fixed and > 0, on a
    device of GATHER_DEVICES, and per-sample weights within GATHER_WEIGHT_RATIO of the input copies."""
    hw = x.shape[-2] * x.shape[-1]
    return (layer.selection == "head" and bool(layer.fixed_inactive) and x.device.type in GATHER_DEVICES
            and layer.out_channels * _area(layer) <= GATHER_WEIGHT_RATIO * layer.num_heads * hw)


def _sparse_auto(layer: DGCConv2d, x: torch.Tensor) -> bool:
    """At inference wherever a gather pays; in training for k x k convs keeping few channels."""
    return gather_pays(layer, x) and (not training(layer) or (
        _area(layer) > 1 and 1.0 - layer.fixed_inactive / layer.in_channels <= SPARSE_TRAINING_KEEP))


def _scaled_weight_auto(layer: DGCConv2d, x: torch.Tensor) -> bool:
    """1x1 convs, and k x k ones whose per-sample weights are no larger than the H input copies."""
    return _area(layer) == 1 or layer.out_channels * _area(layer) <= layer.num_heads * x.shape[-2] * x.shape[-1]


def is_1x1(layer: DGCConv2d) -> bool:
    return layer.kernel_size == (1, 1) and layer.padding == (0, 0)


def _area(layer: DGCConv2d) -> int:
    return layer.kernel_size[0] * layer.kernel_size[1]


# In the order `auto` tries them: the first whose `auto` and `applies` hold runs.
DGC_EXECUTIONS = Executions(
    Execution("sparse", sparse, fixed_selection, "a fixed n_in (set_inactive, or progress outside the pruning "
              "ramp)", auto=_sparse_auto),
    Execution("scaled_weight", scaled_weight, auto=_scaled_weight_auto),
    Execution("masked", masked),
)


def choose(layer: DGCConv2d, x: torch.Tensor) -> Execution:
    """The execution that runs `layer` on the pre-activated input x: `layer.execution`, or for
    'auto' the first row of `layer.executions` whose `auto` and `applies` hold (above: a gather where
    it pays, else `scaled_weight` where its weights are small, else `masked`)."""
    return layer.executions.choose(layer, x, layer.execution)


# -- shared pieces --------------------------------------------------------------------------------
def kept_indices(layer: DGCConv2d, saliency: torch.Tensor, keep: torch.Tensor,
                 kept: torch.Tensor | None) -> torch.Tensor:
    """The channels the gather executions read, (B, H, K): `kept` where the selection gave it; for
    DGC-G as many as the fullest row keeps (the padding is scaled by 0: not kept); else (n_in = 0)
    every channel."""
    if kept is not None:
        return kept
    if layer.selection == "global":
        width = int(keep.sum(dim=2).max())  # a host sync: DGC-G's gather executions are eager-only
        return (~keep).to(torch.uint8).argsort(dim=2, stable=True)[..., :width]
    return torch.arange(layer.in_channels, device=saliency.device).expand_as(saliency)


def subsample(layer: DGCConv2d, x: torch.Tensor) -> torch.Tensor:
    """A strided 1x1 conv reads every stride-th position."""
    return x if layer.stride == (1, 1) else x[:, :, ::layer.stride[0], ::layer.stride[1]]


def channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _gather_channels(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (B, C, h, w), idx (B, H, K) -> (B, H*K, h, w): per sample, the channels idx[b] in order."""
    b, c, h, w = x.shape
    rows = idx.reshape(b, -1) + torch.arange(b, device=x.device)[:, None] * c  # into B*C rows
    return x.reshape(b * c, h * w).index_select(0, rows.reshape(-1)).view(b, -1, h, w)


def _conv_out(h: int, w: int, kernel: tuple[int, int], stride: tuple[int, int],
              padding: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int]:
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                 for n, k, s, p, d in zip((h, w), kernel, stride, padding, dilation))
