"""Fused 1x1 dynamic group convolution: the channel gather fused into a grouped GEMM (Triton), and the DGC layers'
`fused` execution over it (cpu_layers.py's `fused_cpu` is its C++ counterpart). With K kept channels
idx[b, i, :] of sample b and head i, their saliency scale[b, i, :] and head weights W (H, Co, C_in):

    out[b, j*H + i, p] = sum_k W[i, j, idx[b,i,k]] * scale[b,i,k] * x[b, idx[b,i,k], p]

the `sparse` execution's maths (1x1, stride 1, no padding) without its gathered copies. Triton is imported
lazily; the kernels run compiled on CUDA, or interpreted on CPU under TRITON_INTERPRET=1 (tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import ModuleType

import torch
from torch import nn

from dgc.kernels.cpu import check_1x1_inputs
from dgc.layers import DGCConv2d, Execution, dgc_layers
from dgc.layers.executions import channels_last, fixed_selection, is_1x1, kept_indices, subsample

_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_kernels: ModuleType | None = None
_kernels_interpreted: bool | None = None  # TRITON_INTERPRET as it was when the kernels were defined


@dataclass(frozen=True)
class BlockSizes:
    """Tile sizes of one kernel (spatial positions, a head's output channels, kept channels): powers of
    two, >= 16 when compiled (tl.dot's minimum); the interpreter takes smaller ones (tests)."""

    p: int
    co: int
    k: int


def _unavailable_reason(device: torch.device) -> str | None:
    """Why the kernels cannot run on `device` in this process, or None when they can."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return "triton is not installed"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return "CUDA is not available"
        return "the kernels were defined under TRITON_INTERPRET=1 in this process" if _kernels_interpreted else None
    if device.type == "cpu":
        if _kernels_interpreted is False:
            return "the kernels were already defined without TRITON_INTERPRET=1 in this process"
        interpret = os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")
        return (None if interpret or _kernels_interpreted is not None
                else "CPU tensors need Triton's interpreter: set TRITON_INTERPRET=1 before the first call")
    return f"no Triton backend for {device.type} tensors"


def fused_available(device: torch.device | str) -> bool:
    """Whether fused_1x1 can run on `device`: CUDA with triton installed, or CPU under Triton's
    interpreter (TRITON_INTERPRET=1, set before the kernels' first use in this process)."""
    return _unavailable_reason(torch.device(device)) is None


def _load_kernels(device: torch.device) -> ModuleType:
    """Import the kernel module once (this defines the kernels, compiled or interpreted)."""
    global _kernels, _kernels_interpreted
    if _kernels is None and _unavailable_reason(device) is None:
        import triton

        from dgc.kernels import _fused_triton_kernels

        # The module may have been imported before, under another TRITON_INTERPRET: ask the kernel.
        _kernels_interpreted = not isinstance(_fused_triton_kernels.fused_fwd_kernel,
                                              triton.runtime.JITFunction)
        _kernels = _fused_triton_kernels
    why = _unavailable_reason(device)  # again: the kernels' mode is known now
    if why is not None:
        raise RuntimeError(f"fused_1x1 is unavailable on {device}: {why}")
    return _kernels


def _clamp_pow2(n: int, low: int, high: int) -> int:
    """The power of two >= n, clamped to [low, high]."""
    return min(max(1 << max(n - 1, 0).bit_length(), low), high)


def default_block_sizes(co: int, k: int, p: int) -> dict[str, BlockSizes]:
    """Tiles for 'fwd', 'bwd_x' and 'bwd_w' from a head's Co, the kept K and the positions P; a heuristic
    not tuned per GPU: one Co tile per head up to 64 channels, K blocks of 32, 64 positions per tile."""
    fwd = BlockSizes(_clamp_pow2(p, 16, 64), _clamp_pow2(co, 16, 64), _clamp_pow2(k, 16, 32))
    return {"fwd": fwd, "bwd_x": fwd, "bwd_w": BlockSizes(_clamp_pow2(p, 16, 32), fwd.co, _clamp_pow2(k, 16, 64))}


def _dot_options(dtype: torch.dtype) -> dict[str, object]:
    """tl.dot's options: fp32 uses TF32 exactly when torch.backends.cuda.matmul.allow_tf32; bf16 under
    the interpreter multiplies in fp32 (its tl.dot mishandles bf16)."""
    tf32 = dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32
    return {"INPUT_PRECISION": "tf32" if tf32 else "ieee",
            "UPCAST_DOT": bool(_kernels_interpreted) and dtype == torch.bfloat16}


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """channels_last when x is (and is not also plain contiguous), as DGCConv2d decides."""
    return torch.channels_last if channels_last(x) else torch.contiguous_format


def _validate(x: torch.Tensor, weight: torch.Tensor, idx: torch.Tensor, scale: torch.Tensor) -> None:
    check_1x1_inputs(x, weight, idx, scale)
    for name, t in (("x", x), ("weight", weight), ("scale", scale)):
        if t.dtype not in _FLOAT_DTYPES:
            raise ValueError(f"{name} must be float32, float16 or bfloat16, got {t.dtype}")
    devices = {t.device for t in (x, weight, idx, scale)}
    if len(devices) != 1:
        raise ValueError(f"x, weight, idx and scale must be on one device, got {sorted(map(str, devices))}")


def _cdiv(a: int, b: int) -> int:
    """Ceil division for grid sizes (triton.cdiv without importing triton)."""
    return -(-a // b)


def _launch(kernel, programs: int, tensors: tuple, sizes: tuple[int, ...], strided: tuple[torch.Tensor, ...],
            bs: BlockSizes, dot: dict[str, object]) -> None:
    """Run `kernel` on a 1-D grid of `programs`: its tensors, sizes (H, Co, K, P, width), then the strides
    of `strided`, the tile sizes and tl.dot's options."""
    kernel[(programs,)](*tensors, *sizes, *(n for t in strided for n in t.stride()),
                        BLOCK_P=bs.p, BLOCK_CO=bs.co, BLOCK_K=bs.k, **dot)


class _Fused1x1(torch.autograd.Function):
    """Forward and backward in Triton kernels; PyTorch only allocates, zero-fills the fp32 gradients and
    casts them. Backward, exact (autograd through `sparse`'s maths), per sample b and head i:
      grad Xg = Wk^T @ G_i              -> scatter-added into grad_x at idx (atomics across heads)
      grad Wk = G_i @ Xg^T (over all p) -> grad_scale[b,i,k] = sum_j grad Wk[j,k] W[i,j,idx_k],
                                           grad_W[i,:,idx_k] += grad Wk[:,k] scale[b,i,k] (atomics across samples)
    The atomics make grad_x and grad_W reproducible only up to summation order (fp32, cast at the end).
    """

    @staticmethod
    def forward(ctx, x, weight, idx, scale, blocks):  # type: ignore[override]
        kern = _load_kernels(x.device)
        b, _, h, w = x.shape
        heads, co, _ = weight.shape
        idx, scale = idx.contiguous(), scale.contiguous()
        out = torch.empty((b, heads * co, h, w), dtype=x.dtype, device=x.device, memory_format=_memory_format(x))
        ctx.save_for_backward(x, weight, idx, scale)
        ctx.blocks = blocks
        k = idx.shape[2]
        if out.numel() == 0 or k == 0:
            return out.zero_()
        bs = blocks["fwd"]
        _launch(kern.fused_fwd_kernel, b * heads * _cdiv(h * w, bs.p) * _cdiv(co, bs.co),
                (x, weight, idx, scale, out), (heads, co, k, h * w, w), (x, weight, out), bs, _dot_options(x.dtype))
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        x, weight, idx, scale = ctx.saved_tensors
        need_x, need_w, _, need_s, _ = ctx.needs_input_grad
        b, c, h, w = x.shape
        heads, co, _ = weight.shape
        k = idx.shape[2]
        sizes = (heads, co, k, h * w, w)
        kern = _load_kernels(x.device)
        grad_x = grad_w = grad_s = None
        run = grad_out.numel() > 0 and k > 0
        dot = _dot_options(grad_out.dtype)
        if need_x:
            gx = torch.empty((b, c, h, w), dtype=torch.float32, device=x.device,
                             memory_format=_memory_format(x)).zero_()
            if run:
                bs = ctx.blocks["bwd_x"]
                _launch(kern.fused_bwd_x_kernel, b * heads * _cdiv(h * w, bs.p) * _cdiv(k, bs.k),
                        (grad_out, weight, idx, scale, gx), sizes, (grad_out, weight, gx), bs, dot)
            grad_x = gx.to(x.dtype)
        if need_w or need_s:
            gw = torch.zeros((heads, co, c), dtype=torch.float32, device=x.device)
            gs = torch.zeros((b, heads, k), dtype=torch.float32, device=x.device)
            if run:
                bs = ctx.blocks["bwd_w"]
                _launch(kern.fused_bwd_w_kernel, b * heads * _cdiv(k, bs.k), (grad_out, x, weight, idx, scale, gw, gs),
                        sizes, (grad_out, x, weight, gw), bs, dot)
            grad_w = gw.to(weight.dtype) if need_w else None
            grad_s = gs.to(scale.dtype) if need_s else None
        return grad_x, grad_w, None, grad_s, None


def fused_1x1(x: torch.Tensor, weight: torch.Tensor, idx: torch.Tensor, scale: torch.Tensor,
              *, block_sizes: dict[str, BlockSizes] | None = None) -> torch.Tensor:
    """1x1 DGC convolution with the gather fused into the GEMM (module docstring); differentiable in x, weight
    and scale. x (B, C_in, h, w) float32/16 or bfloat16, NCHW or channels_last; idx (B, H, K) int64, distinct
    within a row (not checked: a device sync); block_sizes per kernel, default `default_block_sizes`. Returns
    (B, H*Co, h, w) in x's dtype and memory format, accumulated in fp32 (TF32 as `_dot_options` says)."""
    _validate(x, weight, idx, scale)
    if not x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last):
        x = x.contiguous()  # any strides would do; a dense copy keeps the loads coalesced
    blocks = default_block_sizes(weight.shape[1], idx.shape[2], x.shape[2] * x.shape[3])
    if unknown := set(block_sizes or {}) - set(blocks):
        raise ValueError(f"unknown kernel names in block_sizes: {sorted(unknown)}; use {sorted(blocks)}")
    blocks.update(block_sizes or {})
    low = 16 if x.device.type == "cuda" else 1
    for name, bs in blocks.items():
        if any(size < low or size & (size - 1) for size in (bs.p, bs.co, bs.k)):
            raise ValueError(f"block sizes of '{name}' must be powers of two >= {low}, got {bs}")
    return _Fused1x1.apply(x, weight, idx, scale, blocks)


# -- the DGC layers' `fused` execution ------------------------------------------------------------
def fused(layer: DGCConv2d, x: torch.Tensor, saliency: torch.Tensor, keep: torch.Tensor | None,
          kept: torch.Tensor | None) -> torch.Tensor:
    """1x1 convs: the kept channels gathered inside a grouped GEMM, forward and backward (no copy of x)."""
    idx = kept_indices(layer, saliency, keep, kept)
    values = (saliency * keep).gather(2, idx)
    return fused_1x1(subsample(layer, x), layer.head_weights().flatten(2), idx, values)


FUSED = Execution(
    "fused", fused, lambda layer, x: (is_1x1(layer) and fixed_selection(layer, x) and x.dtype in _FLOAT_DTYPES
                                      and fused_available(x.device)),
    "a 1x1 conv without padding, a fixed n_in, float32/16 or bfloat16 input, and Triton (CUDA, or CPU under "
    "TRITON_INTERPRET=1)", auto=None, fallback="scaled_weight")


def use_fused_kernel(model: nn.Module) -> nn.Module:
    """Let `layer.execution = "fused"` run on every DGC layer of `model` (opt-in: `auto` never picks it
    until it is measured on a GPU); where it does not apply `scaled_weight` runs. Returns `model`."""
    for layer in dgc_layers(model):
        layer.executions = layer.executions.extended(FUSED)
    return model
