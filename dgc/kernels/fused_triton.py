"""Fused 1x1 dynamic group convolution: the channel gather fused into a grouped GEMM (Triton), and the
DGC layers' `fused` execution over it (`use_fused_kernel(model)` adds it to a model's layers;
`fused_cpu` is its C++ counterpart, cpu_layers.py).

For each sample b and head i the DGC 1x1 conv keeps K input channels idx[b, i, :] scaled by their
saliency scale[b, i, :]; with head weights W (H, Co, C_in) it computes

    out[b, j*H + i, p] = sum_k W[i, j, idx[b,i,k]] * scale[b,i,k] * x[b, idx[b,i,k], p]

(heads interleaved: output channel j*H + i is head i's channel j), the same maths as the `sparse`
execution for 1x1 kernels, stride 1, no padding. `sparse` materialises the gathered input
(B, H*K, h, w) and the per-sample weights (B, H, K, Co) before one batched matmul; the kernels here
read x and W in place: one program per (sample, head, output tile) gathers the kept channels of x
while loading the GEMM's A operand and scales W[i, :, idx] by the saliency in registers.

Triton is imported lazily (`import dgc` never needs it). The kernels run compiled on CUDA tensors,
or under Triton's interpreter on CPU tensors when TRITON_INTERPRET=1 was set before their first use
(a slow path, for tests).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from types import ModuleType

import torch
from torch import nn

from dgc.layers import DGCConv2d, Execution, dgc_layers
from dgc.layers.executions import channels_last, fixed_selection, is_1x1, kept_indices, subsample

_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
_kernels: ModuleType | None = None
_kernels_interpreted: bool | None = None  # TRITON_INTERPRET as it was when the kernels were defined


@dataclass(frozen=True)
class BlockSizes:
    """Tile sizes of one kernel: spatial positions, output channels of a head, kept channels.

    Powers of two; compiled (CUDA) kernels need each >= 16 (tl.dot's minimum), the interpreter
    accepts smaller ones (tests use them to run several K / Co / position blocks on tiny shapes)."""

    p: int
    co: int
    k: int


def _interpret_requested() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "on", "yes")


def _triton_importable() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _unavailable_reason(device: torch.device) -> str | None:
    """Why the kernels cannot run on `device` in this process, or None when they can."""
    if not _triton_importable():
        return "triton is not installed"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return "CUDA is not available"
        if _kernels_interpreted:
            return "the kernels were defined under TRITON_INTERPRET=1 in this process"
        return None
    if device.type == "cpu":
        if _kernels_interpreted is False:
            return "the kernels were already defined without TRITON_INTERPRET=1 in this process"
        if _kernels_interpreted is None and not _interpret_requested():
            return "CPU tensors need Triton's interpreter: set TRITON_INTERPRET=1 before the first call"
        return None
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


def _next_pow2(n: int) -> int:
    return 1 << max(n - 1, 0).bit_length()


def _clamp_pow2(n: int, low: int, high: int) -> int:
    return min(max(_next_pow2(n), low), high)


def default_block_sizes(co: int, k: int, p: int) -> dict[str, BlockSizes]:
    """Tiles for each kernel ('fwd', 'bwd_x', 'bwd_w') from the head's output width Co, the kept
    channels K and the positions P. Heuristic, not tuned per GPU: one Co tile covers a whole head
    up to 64 channels (DenseNet-86's heads have 8-32), K blocks of 32, 64 positions per tile."""
    co_blk = _clamp_pow2(co, 16, 64)
    k_blk = _clamp_pow2(k, 16, 32)
    p_blk = _clamp_pow2(p, 16, 64)
    return {"fwd": BlockSizes(p_blk, co_blk, k_blk),
            "bwd_x": BlockSizes(p_blk, co_blk, k_blk),
            "bwd_w": BlockSizes(_clamp_pow2(p, 16, 32), co_blk, _clamp_pow2(k, 16, 64))}


def _check_blocks(blocks: dict[str, BlockSizes], device: torch.device) -> None:
    low = 16 if device.type == "cuda" else 1
    for name, b in blocks.items():
        for size in (b.p, b.co, b.k):
            if size < low or size & (size - 1):
                raise ValueError(f"block sizes of '{name}' must be powers of two >= {low}, got {b}")


def _dot_options(dtype: torch.dtype) -> dict[str, object]:
    """tl.dot's options for operands of `dtype`: fp32 uses TF32 exactly when torch's matmuls may
    (torch.backends.cuda.matmul.allow_tf32); bf16 under the interpreter multiplies in fp32 (its
    tl.dot mishandles bf16)."""
    tf32 = dtype == torch.float32 and torch.backends.cuda.matmul.allow_tf32
    return {"INPUT_PRECISION": "tf32" if tf32 else "ieee",
            "UPCAST_DOT": bool(_kernels_interpreted) and dtype == torch.bfloat16}


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """channels_last when x is (and is not also plain contiguous), as DGCConv2d decides."""
    return torch.channels_last if channels_last(x) else torch.contiguous_format


def _validate(x: torch.Tensor, weight: torch.Tensor, idx: torch.Tensor, scale: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"x must be (B, C_in, h, w), got shape {tuple(x.shape)}")
    if weight.dim() != 3:
        raise ValueError(f"weight must be (H, Co, C_in), got shape {tuple(weight.shape)}")
    if idx.dim() != 3:
        raise ValueError(f"idx must be (B, H, K), got shape {tuple(idx.shape)}")
    b, c, _, _ = x.shape
    heads, _, c_w = weight.shape
    if c_w != c:
        raise ValueError(f"weight has {c_w} input channels but x has {c}")
    if idx.shape[:2] != (b, heads):
        raise ValueError(f"idx shape {tuple(idx.shape)} must start with (B, H) = {(b, heads)}")
    if idx.shape[2] > c:
        raise ValueError(f"idx keeps K={idx.shape[2]} channels but x has only {c}")
    if scale.shape != idx.shape:
        raise ValueError(f"scale shape {tuple(scale.shape)} must equal idx shape {tuple(idx.shape)}")
    if idx.dtype != torch.int64:
        raise ValueError(f"idx must be int64, got {idx.dtype}")
    for name, t in (("x", x), ("weight", weight), ("scale", scale)):
        if t.dtype not in _FLOAT_DTYPES:
            raise ValueError(f"{name} must be float32, float16 or bfloat16, got {t.dtype}")
    devices = {t.device for t in (x, weight, idx, scale)}
    if len(devices) != 1:
        raise ValueError(f"x, weight, idx and scale must be on one device, got {sorted(map(str, devices))}")


def _strides4(t: torch.Tensor) -> tuple[int, int, int, int]:
    return tuple(t.stride())  # type: ignore[return-value]


class _Fused1x1(torch.autograd.Function):
    """Forward and backward all in Triton kernels; PyTorch only allocates the outputs, zero-fills the
    fp32 gradient buffers and casts them to the inputs' dtypes.

    Backward (exact, same maths as autograd through the `sparse` execution), per sample b and head i:
      grad Xg = Wk^T @ G_i              -> scatter-added into grad_x at idx (atomics across heads)
      grad Wk = G_i @ Xg^T (over all p) -> grad_scale[b,i,k] = sum_j grad Wk[j,k] W[i,j,idx_k]
                                           grad_W[i,:,idx_k] += grad Wk[:,k] scale[b,i,k] (atomics
                                           across samples)
    The atomic float adds make grad_x and grad_W reproducible only up to summation order (at most H
    terms per grad_x entry, B per grad_W entry); they accumulate in fp32 and are cast at the end.
    """

    @staticmethod
    def forward(ctx, x, weight, idx, scale, blocks):  # type: ignore[override]
        kern = _load_kernels(x.device)
        b, c, h, w = x.shape
        heads, co, _ = weight.shape
        k = idx.shape[2]
        p = h * w
        fmt = _memory_format(x)
        idx = idx.contiguous()
        scale = scale.contiguous()
        out = torch.empty((b, heads * co, h, w), dtype=x.dtype, device=x.device, memory_format=fmt)
        ctx.save_for_backward(x, weight, idx, scale)
        ctx.blocks = blocks
        if out.numel() == 0:
            return out
        if k == 0:
            return out.zero_()
        bs = blocks["fwd"]
        grid = (b * heads * _cdiv(p, bs.p) * _cdiv(co, bs.co),)
        kern.fused_fwd_kernel[grid](
            x, weight, idx, scale, out,
            heads, co, k, p, w,
            *_strides4(x), *weight.stride(), *_strides4(out),
            BLOCK_P=bs.p, BLOCK_CO=bs.co, BLOCK_K=bs.k, **_dot_options(x.dtype))
        return out

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        x, weight, idx, scale = ctx.saved_tensors
        need_x, need_w, _, need_s, _ = ctx.needs_input_grad
        b, c, h, w = x.shape
        heads, co, _ = weight.shape
        k = idx.shape[2]
        p = h * w
        kern = _load_kernels(x.device)
        blocks = ctx.blocks
        grad_x = grad_w = grad_s = None
        run = grad_out.numel() > 0 and k > 0
        dot = _dot_options(grad_out.dtype)
        if need_x:
            gx = torch.empty((b, c, h, w), dtype=torch.float32, device=x.device,
                             memory_format=_memory_format(x)).zero_()
            if run:
                bs = blocks["bwd_x"]
                grid = (b * heads * _cdiv(p, bs.p) * _cdiv(k, bs.k),)
                kern.fused_bwd_x_kernel[grid](
                    grad_out, weight, idx, scale, gx,
                    heads, co, k, p, w,
                    *_strides4(grad_out), *weight.stride(), *_strides4(gx),
                    BLOCK_P=bs.p, BLOCK_CO=bs.co, BLOCK_K=bs.k, **dot)
            grad_x = gx.to(x.dtype)
        if need_w or need_s:
            gw = torch.zeros((heads, co, c), dtype=torch.float32, device=x.device)
            gs = torch.zeros((b, heads, k), dtype=torch.float32, device=x.device)
            if run:
                bs = blocks["bwd_w"]
                grid = (b * heads * _cdiv(k, bs.k),)
                kern.fused_bwd_w_kernel[grid](
                    grad_out, x, weight, idx, scale, gw, gs,
                    heads, co, k, p, w,
                    *_strides4(grad_out), *_strides4(x), *weight.stride(), *gw.stride(),
                    BLOCK_P=bs.p, BLOCK_CO=bs.co, BLOCK_K=bs.k, **dot)
            grad_w = gw.to(weight.dtype) if need_w else None
            grad_s = gs.to(scale.dtype) if need_s else None
        return grad_x, grad_w, None, grad_s, None


def _cdiv(a: int, b: int) -> int:
    """Ceil division for grid sizes (triton.cdiv without importing triton)."""
    return -(-a // b)


def fused_1x1(x: torch.Tensor, weight: torch.Tensor, idx: torch.Tensor, scale: torch.Tensor,
                  *, block_sizes: dict[str, BlockSizes] | None = None) -> torch.Tensor:
    """1x1 DGC convolution with the gather fused into the GEMM; differentiable in x, weight and scale.

    Args:
        x: (B, C_in, h, w) float32/float16/bfloat16, NCHW or channels_last (read in place).
        weight: (H, Co, C_in), head i's dense weight at [i] (the heads' (Co, C_in, 1, 1) stacked).
        idx: (B, H, K) int64, the kept input channels of each sample and head; every entry must be in
            [0, C_in) and distinct within a row, as DGC's are (not checked: that would cost a
            device sync).
        scale: (B, H, K), the saliency of each kept channel.
        block_sizes: tile sizes per kernel ('fwd', 'bwd_x', 'bwd_w'), default `default_block_sizes`.
    Returns:
        (B, H*Co, h, w) in x's dtype and memory format, heads interleaved (channel j*H + i is head
        i's channel j), accumulated in fp32. fp32 products use TF32 exactly when
        torch.backends.cuda.matmul.allow_tf32 is set.
    """
    _validate(x, weight, idx, scale)
    if not x.is_contiguous() and not x.is_contiguous(memory_format=torch.channels_last):
        x = x.contiguous()  # any strides would do; a dense copy keeps the loads coalesced
    blocks = default_block_sizes(weight.shape[1], idx.shape[2], x.shape[2] * x.shape[3])
    if block_sizes is not None:
        unknown = set(block_sizes) - set(blocks)
        if unknown:
            raise ValueError(f"unknown kernel names in block_sizes: {sorted(unknown)}; use {sorted(blocks)}")
        blocks.update(block_sizes)
    _check_blocks(blocks, x.device)
    return _Fused1x1.apply(x, weight, idx, scale, blocks)


# -- the DGC layers' `fused` execution ------------------------------------------------------------
def fused(layer: DGCConv2d, x: torch.Tensor, saliency: torch.Tensor, keep: torch.Tensor | None,
          kept: torch.Tensor | None) -> torch.Tensor:
    """1x1 convs: the gather of the kept channels inside a grouped GEMM, forward and backward: no
    gathered copy of x."""
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
