"""The executions of a DGC layer: exact, equivalent ways to compute the same conv over the channels a
layer's selection keeps (docs/design.md, section 4).

Every execution is one function `run(layer, x, saliency, keep, kept)` and one row of `EXECUTIONS`:

    x         (B, C_in, h, w) the pre-activated input
    saliency  (B, H, C_in) every head's saliencies (not detached: the conv's gradient reaches the
              saliency generators through the kept channels' scale)
    keep      (B, H, C_in) bool, the kept channels; None only after fused_cpu's own selection
    kept      (B, H, K) the kept channel indices, or None (see `DGCConv2d.select`)

and returns (B, C_out, h', w') with the heads interleaved (channel j*H + i is head i's channel j).
`applies(layer, x)` says whether the execution can run this forward; `choose` holds the `auto`
rules per device type and follows `fallback` where the chosen execution does not apply. Adding an
execution: its function, its row here, and it joins tests/test_dgc_layer.py's all-executions test.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F

from dgc.kernels import cpu
from dgc.kernels.fused_triton import fused_1x1, fused_available
from dgc.layers.conv import channel_shuffle

if TYPE_CHECKING:
    from dgc.layers.dgc_conv import DGCConv2d

Selection = tuple[torch.Tensor | None, torch.Tensor | None]  # (keep, kept), as DGCConv2d.select


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
        if _channels_last(x):
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
    if layer.kernel_size == (1, 1) and layer.padding == (0, 0):
        x = _subsample(layer, x)
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


def fused(layer: DGCConv2d, x: torch.Tensor, saliency: torch.Tensor, keep: torch.Tensor | None,
          kept: torch.Tensor | None) -> torch.Tensor:
    """1x1 convs: the gather of the kept channels inside a grouped GEMM, one Triton kernel forward
    and backward (dgc/kernels/fused_triton.py): no gathered copy of x."""
    idx = kept_indices(layer, saliency, keep, kept)
    values = (saliency * keep).gather(2, idx)
    return fused_1x1(_subsample(layer, x), layer.head_weights().flatten(2), idx, values)


def fused_cpu(layer: DGCConv2d, x: torch.Tensor, saliency: torch.Tensor, keep: torch.Tensor | None,
              kept: torch.Tensor | None) -> torch.Tensor:
    """The same fused 1x1 conv as one C++ kernel (dgc/kernels/cpu.py), forward only."""
    if keep is None:  # the C++ top-k (_cpu_select_topk): every index in `kept` is kept
        values = saliency.gather(2, kept)
    else:
        kept = kept_indices(layer, saliency, keep, kept)
        values = (saliency * keep).gather(2, kept)
    x = _subsample(layer, x)
    out = cpu.fused_1x1(x, layer.head_weights().flatten(2), kept, values)
    return out.contiguous(memory_format=torch.channels_last) if _channels_last(x) else out


def _cpu_select_topk(layer: DGCConv2d, saliency: torch.Tensor) -> Selection:
    """fused_cpu's selection: with n_in > 0 fixed per head, the C++ top-k (the same kept set as
    `layer.select`, without building the mask: keep is None); otherwise `layer.select`."""
    n = layer._n_static
    if layer.selection == "head" and n:
        kept, _ = cpu.select_topk(saliency, layer.in_channels - n)
        return None, kept
    return layer.select(saliency)


def _layer_select(layer: DGCConv2d, saliency: torch.Tensor) -> Selection:
    return layer.select(saliency)


# -- where each applies ---------------------------------------------------------------------------
def _always(layer: DGCConv2d, x: torch.Tensor) -> bool:
    return True


def _fixed_selection(layer: DGCConv2d, x: torch.Tensor) -> bool:
    """The number of channels to gather is known: n_in fixed (not inside the pruning ramp), or DGC-G."""
    return layer.selection == "global" or layer._n_static is not None


def _is_1x1(layer: DGCConv2d) -> bool:
    return layer.kernel_size == (1, 1) and layer.padding == (0, 0)


def _fused_applies(layer: DGCConv2d, x: torch.Tensor) -> bool:
    return (_is_1x1(layer) and _fixed_selection(layer, x)
            and x.dtype in (torch.float32, torch.float16, torch.bfloat16) and fused_available(x.device))


def _fused_cpu_applies(layer: DGCConv2d, x: torch.Tensor) -> bool:
    return _is_1x1(layer) and _fixed_selection(layer, x) and cpu.cpu_inference(x)


# -- the table ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Execution:
    """One execution: its function, where it applies (and in words), what runs where it does not."""

    name: str
    run: Callable[[DGCConv2d, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None],
                  torch.Tensor]
    applies: Callable[[DGCConv2d, torch.Tensor], bool]
    needs: str  # where `applies` is true, in words (error messages, test skips)
    fallback: str | None = None  # the execution `choose` turns to where this one does not apply
    differentiable: bool = True  # False: forward only (applies only with autograd off)
    select: Callable[[DGCConv2d, torch.Tensor], Selection] = _layer_select  # the selection it runs after


EXECUTIONS: dict[str, Execution] = {e.name: e for e in (
    Execution("masked", masked, _always, "nothing: it runs everywhere"),
    Execution("scaled_weight", scaled_weight, _always, "nothing: it runs everywhere"),
    Execution("sparse", sparse, _fixed_selection,
              "a fixed n_in (set_inactive, or progress outside the pruning ramp)"),
    Execution("fused", fused, _fused_applies,
              "a 1x1 conv without padding, a fixed n_in, float32/16 or bfloat16 input, and Triton "
              "(CUDA, or CPU under TRITON_INTERPRET=1)", fallback="scaled_weight"),
    Execution("fused_cpu", fused_cpu, _fused_cpu_applies,
              "a 1x1 conv without padding, a fixed n_in, float32 CPU input, autograd off, and the "
              "C++ kernels built", fallback="sparse", differentiable=False, select=_cpu_select_topk),
)}

# The gather executions `auto` may run, per device type: (at inference, in training). Where a
# device type is missing (CUDA so far: `sparse` was measured slower there than `scaled_weight`, and
# `fused` awaits its measurement by benchmarks/gpu_check.sh) only `scaled_weight` and `masked` run.
GATHER: dict[str, tuple[str, str]] = {"cpu": ("fused_cpu", "sparse")}


def choose(layer: DGCConv2d, x: torch.Tensor) -> Execution:
    """The execution that runs `layer` on the pre-activated input x: `layer.execution`, or for
    'auto' the rules below; then, while the execution does not apply, its fallback.

    auto: the device's gather execution (GATHER) where n_in is fixed and > 0 (per-head selection)
    and the per-sample weights (C_out * k * k per kept channel) are at most twice the H input
    copies (H * h * w per kept channel): at inference always, in training for k x k convs keeping
    at most 30% of their channels (1x1 convs train faster as one batched matmul). Past that,
    `scaled_weight` for 1x1 convs and where the per-sample weights are no larger than the H input
    copies, else `masked`."""
    name = layer.execution
    if name == "auto":
        k = layer.kernel_size[0] * layer.kernel_size[1]
        hw = x.shape[-2] * x.shape[-1]
        n = layer._n_static if layer.selection == "head" else None
        gather = GATHER.get(x.device.type) if n else None
        gather_pays = layer.out_channels * k <= 2 * layer.num_heads * hw
        training = layer.training and torch.is_grad_enabled()
        if gather and gather_pays and not training:
            name = gather[0]
        elif gather and gather_pays and k > 1 and 1.0 - n / layer.in_channels <= 0.3:
            name = gather[1]
        elif k == 1 or layer.out_channels * k <= layer.num_heads * hw:
            name = "scaled_weight"
        else:
            name = "masked"
    if name not in EXECUTIONS:
        raise ValueError(f"unknown execution {name!r}; use 'auto' or one of {', '.join(EXECUTIONS)}")
    execution = EXECUTIONS[name]
    while not execution.applies(layer, x):
        if execution.fallback is None:
            asked = "" if execution.name == layer.execution else f" (asked for: {layer.execution!r})"
            raise RuntimeError(f"the {execution.name} execution needs {execution.needs}{asked}")
        execution = EXECUTIONS[execution.fallback]
    return execution


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


def _subsample(layer: DGCConv2d, x: torch.Tensor) -> torch.Tensor:
    """A strided 1x1 conv reads every stride-th position."""
    return x if layer.stride == (1, 1) else x[:, :, ::layer.stride[0], ::layer.stride[1]]


def _channels_last(x: torch.Tensor) -> bool:
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
