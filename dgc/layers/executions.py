"""The executions of a DGC layer (docs/design.md, section 4): exact ways to run its conv over the kept
channels, each `run(layer, x, saliency, keep, kept)` -> (B, C_out, h', w') with the heads interleaved (x
pre-activated; saliency not detached; keep a bool mask, None only after fused_cpu's own selection; kept
indices or None), a row of `DGC_EXECUTIONS` and a name in tests/test_dgc_layer.py; and `auto`'s rule."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from dgc.layers.conv import channel_shuffle
from dgc.layers.dispatch import Execution, Executions

if TYPE_CHECKING:
    from dgc.layers.dgc_conv import DGCConv2d

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
    """Only the kept channels and their weight slices (times the saliency), gathered per sample and head,
    then one batched matmul (1x1) or a conv grouped over (sample, head): K / C_in of the dense work."""
    b, c, h, w = x.shape
    heads, co = layer.num_heads, layer.out_channels // layer.num_heads
    scale = saliency * keep
    idx = kept_indices(layer, saliency, keep, kept)  # (B, H, K)
    k_keep = idx.shape[2]
    if k_keep == 0:
        ho, wo = ((n + 2 * p - d * (k - 1) - 1) // s + 1  # the conv's output size
                  for n, k, s, p, d in zip((h, w), layer.kernel_size, layer.stride, layer.padding, layer.dilation))
        # Nothing kept: zeros, still attached to the graph (every gradient is zero, as masked).
        return x.new_zeros(b, layer.out_channels, ho, wo) + 0.0 * scale.sum()
    values = scale.gather(2, idx)  # (B, H, K)
    # Weight rows (head, input channel): (H*C_in, C_out/H * kh * kw); index_select on 2-d rows beats indexing.
    weight = layer.head_weights().transpose(1, 2).reshape(heads * c, -1)
    rows = idx + torch.arange(heads, device=x.device)[None, :, None] * c  # (B, H, K) into H*C_in
    w_kept = weight.index_select(0, rows.reshape(-1))
    w_kept = w_kept.view(b, heads, k_keep, co, *layer.kernel_size) * values[..., None, None, None]
    x_kept = _gather_channels(subsample(layer, x) if is_1x1(layer) else x, idx)  # (B, H*K, h, w)
    if is_1x1(layer):
        ho, wo = x_kept.shape[-2:]
        out = torch.bmm(w_kept.reshape(b * heads, k_keep, co).transpose(1, 2),
                        x_kept.reshape(b * heads, k_keep, ho * wo))  # (B*H, C_out/H, h'w')
    else:
        out = F.conv2d(x_kept.reshape(1, b * heads * k_keep, h, w),
                       w_kept.transpose(2, 3).reshape(b * heads * co, k_keep, *layer.kernel_size),
                       None, layer.stride, layer.padding, layer.dilation, groups=b * heads)
        ho, wo = out.shape[-2:]  # (1, B*H*C_out/H, h', w')
    return channel_shuffle(out.view(b, layer.out_channels, ho, wo), heads)


# Where each applies and where `auto` picks it (thresholds measured with `dgc bench`, docs/speed.md):
GATHER_DEVICES = ("cpu",)  # on CUDA `sparse` ran slower than `scaled_weight` (H200: 72.1 vs 39.0 ms)
GATHER_WEIGHT_RATIO = 2  # a gather pays while its weights (C_out * k * k) are at most this x masked's (H * h * w)
SPARSE_TRAINING_KEEP = 0.3  # training: `sparse` for k x k convs keeping at most this fraction, else scaled_weight


def fixed_selection(layer: DGCConv2d, x: torch.Tensor) -> bool:
    """The number of channels to gather is known: n_in fixed (not inside the pruning ramp), or DGC-G."""
    return layer.selection == "global" or layer.fixed_inactive is not None


def training(layer: DGCConv2d) -> bool:
    return layer.training and torch.is_grad_enabled()


def gather_pays(layer: DGCConv2d, x: torch.Tensor) -> bool:
    """`auto`'s condition for a gather: head-wise, n_in fixed and > 0, on GATHER_DEVICES, weights small."""
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
    """The execution that runs `layer` on the pre-activated x: `layer.execution`, or auto's pick."""
    return layer.executions.choose(layer, x, layer.execution)


def kept_indices(layer: DGCConv2d, saliency: torch.Tensor, keep: torch.Tensor,
                 kept: torch.Tensor | None) -> torch.Tensor:
    """The channels the gathers read, (B, H, K): `kept` when given; for DGC-G as many as the fullest row
    keeps (the padding scaled by 0); else (n_in = 0) every channel."""
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

