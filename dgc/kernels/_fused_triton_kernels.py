"""Triton kernels of the fused 1x1 DGC convolution (the maths: fused_triton.py), imported by it on first
use, which fixes whether they are compiled (CUDA) or interpreted (TRITON_INTERPRET=1, CPU tensors, tests).
Each runs on a 1-D grid, program id = (b * H + i) * tiles + tile: consecutive programs share a sample and a
head (x rows and idx stay in L2), and B * H escapes CUDA's 65535 limit on the other axes. Per sample b, head
i: ch[k] = idx[b, i, k], Wk[j, k] = W[i, j, ch[k]] * scale[b, i, k], Xg[k, p] = x[b, ch[k], p] (neither
stored), out[b, j*H + i, p] = sum_k Wk[j, k] Xg[k, p]; positions p = row * width + col go through the
tensors' strides (NCHW or channels_last read in place).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _spatial_offsets(offs_p, width, stride_h, stride_w):
    """Memory offsets of flat spatial positions p = row * width + col, for any (h, w) strides."""
    return (offs_p // width).to(tl.int64) * stride_h + (offs_p % width).to(tl.int64) * stride_w


@triton.jit
def _program(n_tiles, HEADS):
    """(b * H + i, b, i, tile) of this program, whose id is (b * H + i) * n_tiles + tile."""
    bh = tl.program_id(0) // n_tiles
    return bh, (bh // HEADS).to(tl.int64), (bh % HEADS).to(tl.int64), tl.program_id(0) % n_tiles


@triton.jit
def _mma(a, b, acc, INPUT_PRECISION: tl.constexpr, UPCAST_DOT: tl.constexpr):
    """acc + a @ b; UPCAST_DOT (bf16 under the interpreter, whose tl.dot multiplies bf16's raw bits)
    multiplies in fp32, exact anyway: a product of two bf16 values fits in fp32."""
    if UPCAST_DOT:
        acc = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    else:
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)
    return acc


@triton.jit
def fused_fwd_kernel(x_ptr, w_ptr, idx_ptr, scale_ptr, out_ptr, HEADS, CO, K, P, WIDTH,
                     sx_b, sx_c, sx_h, sx_w, sw_h, sw_o, sw_c, so_b, so_c, so_h, so_w,
                     BLOCK_P: tl.constexpr, BLOCK_CO: tl.constexpr, BLOCK_K: tl.constexpr,
                     INPUT_PRECISION: tl.constexpr, UPCAST_DOT: tl.constexpr):
    """out tile (BLOCK_P positions x BLOCK_CO channels of head i) = Xg^T (gathered A) @ Wk^T (scaled B)."""
    n_co = tl.cdiv(CO, BLOCK_CO)
    bh, b, i, pid = _program(tl.cdiv(P, BLOCK_P) * n_co, HEADS)
    pid_p = pid // n_co
    pid_co = pid % n_co

    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_co = pid_co * BLOCK_CO + tl.arange(0, BLOCK_CO)
    p_mask = offs_p < P
    co_mask = offs_co < CO
    x_p = _spatial_offsets(offs_p, WIDTH, sx_h, sx_w)  # (BLOCK_P,)
    x_base = x_ptr + b * sx_b
    w_base = w_ptr + i * sw_h
    row = bh.to(tl.int64) * K  # start of this (b, i) row of idx and scale

    acc = tl.zeros((BLOCK_P, BLOCK_CO), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        offs_k = k0 + tl.arange(0, BLOCK_K)
        k_mask = offs_k < K
        ch = tl.load(idx_ptr + row + offs_k, mask=k_mask, other=0)  # int64 channel ids
        s = tl.load(scale_ptr + row + offs_k, mask=k_mask, other=0.0).to(tl.float32)
        # A: the kept channels read straight from x (a gather along the channel axis).
        a = tl.load(x_base + x_p[:, None] + ch[None, :] * sx_c,
                    mask=p_mask[:, None] & k_mask[None, :], other=0.0)  # (BLOCK_P, BLOCK_K)
        # B: W[i, j, ch] scaled by the saliency in registers, rounded once to x's dtype.
        w = tl.load(w_base + ch[:, None] * sw_c + offs_co[None, :] * sw_o,
                    mask=k_mask[:, None] & co_mask[None, :], other=0.0)  # (BLOCK_K, BLOCK_CO)
        bop = (w.to(tl.float32) * s[:, None]).to(a.dtype)
        acc = _mma(a, bop, acc, INPUT_PRECISION, UPCAST_DOT)

    o_p = _spatial_offsets(offs_p, WIDTH, so_h, so_w)
    o_c = (offs_co * HEADS + i).to(tl.int64) * so_c  # heads interleaved: channel j*H + i
    tl.store(out_ptr + b * so_b + o_p[:, None] + o_c[None, :], acc.to(out_ptr.dtype.element_ty),
             mask=p_mask[:, None] & co_mask[None, :])


@triton.jit
def fused_bwd_x_kernel(g_ptr, w_ptr, idx_ptr, scale_ptr, gx_ptr, HEADS, CO, K, P, WIDTH,
                       sg_b, sg_c, sg_h, sg_w, sw_h, sw_o, sw_c, sgx_b, sgx_c, sgx_h, sgx_w,
                       BLOCK_P: tl.constexpr, BLOCK_CO: tl.constexpr, BLOCK_K: tl.constexpr,
                       INPUT_PRECISION: tl.constexpr, UPCAST_DOT: tl.constexpr):
    """grad Xg^T tile (BLOCK_P x BLOCK_K) = G_i^T @ Wk, scatter-added into the fp32 grad_x at the kept
    channels: atomics, as heads of a sample may keep one channel (within a program, rows of idx are distinct)."""
    n_k = tl.cdiv(K, BLOCK_K)
    bh, b, i, pid = _program(tl.cdiv(P, BLOCK_P) * n_k, HEADS)
    pid_p = pid // n_k
    pid_k = pid % n_k

    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    offs_k = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    p_mask = offs_p < P
    k_mask = offs_k < K
    row = bh.to(tl.int64) * K
    ch = tl.load(idx_ptr + row + offs_k, mask=k_mask, other=0)
    s = tl.load(scale_ptr + row + offs_k, mask=k_mask, other=0.0).to(tl.float32)
    g_p = _spatial_offsets(offs_p, WIDTH, sg_h, sg_w)
    g_base = g_ptr + b * sg_b
    w_base = w_ptr + i * sw_h

    acc = tl.zeros((BLOCK_P, BLOCK_K), dtype=tl.float32)
    for j0 in range(0, CO, BLOCK_CO):
        offs_j = j0 + tl.arange(0, BLOCK_CO)
        j_mask = offs_j < CO
        g_c = (offs_j * HEADS + i).to(tl.int64) * sg_c
        g = tl.load(g_base + g_p[:, None] + g_c[None, :],
                    mask=p_mask[:, None] & j_mask[None, :], other=0.0)  # (BLOCK_P, BLOCK_CO)
        w = tl.load(w_base + offs_j[:, None] * sw_o + ch[None, :] * sw_c,
                    mask=j_mask[:, None] & k_mask[None, :], other=0.0)  # (BLOCK_CO, BLOCK_K)
        wk = (w.to(tl.float32) * s[None, :]).to(g.dtype)
        acc = _mma(g, wk, acc, INPUT_PRECISION, UPCAST_DOT)

    gx_p = _spatial_offsets(offs_p, WIDTH, sgx_h, sgx_w)
    tl.atomic_add(gx_ptr + b * sgx_b + gx_p[:, None] + ch[None, :] * sgx_c, acc,
                  mask=p_mask[:, None] & k_mask[None, :])


@triton.jit
def fused_bwd_w_kernel(g_ptr, x_ptr, w_ptr, idx_ptr, scale_ptr, gw_ptr, gs_ptr, HEADS, CO, K, P, WIDTH,
                       sg_b, sg_c, sg_h, sg_w, sx_b, sx_c, sx_h, sx_w, sw_h, sw_o, sw_c, sgw_h, sgw_o, sgw_c,
                       BLOCK_P: tl.constexpr, BLOCK_CO: tl.constexpr, BLOCK_K: tl.constexpr,
                       INPUT_PRECISION: tl.constexpr, UPCAST_DOT: tl.constexpr):
    """grad Wk tile (BLOCK_CO x BLOCK_K) = G_i @ Xg^T over all positions; then grad_scale[b, i, k] =
    sum_j gradWk[j, k] W[i, j, ch[k]] (one program owns each k) and grad_W[i, j, ch[k]] += gradWk[j, k] *
    scale[b, i, k] (atomics: samples share channels)."""
    bh, b, i, pid_k = _program(tl.cdiv(K, BLOCK_K), HEADS)

    offs_k = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    k_mask = offs_k < K
    row = bh.to(tl.int64) * K
    ch = tl.load(idx_ptr + row + offs_k, mask=k_mask, other=0)
    s = tl.load(scale_ptr + row + offs_k, mask=k_mask, other=0.0).to(tl.float32)
    g_base = g_ptr + b * sg_b
    x_base = x_ptr + b * sx_b
    w_base = w_ptr + i * sw_h

    gs = tl.zeros((BLOCK_K,), dtype=tl.float32)
    for j0 in range(0, CO, BLOCK_CO):
        offs_j = j0 + tl.arange(0, BLOCK_CO)
        j_mask = offs_j < CO
        g_c = (offs_j * HEADS + i).to(tl.int64) * sg_c
        acc = tl.zeros((BLOCK_CO, BLOCK_K), dtype=tl.float32)
        for p0 in range(0, P, BLOCK_P):
            offs_p = p0 + tl.arange(0, BLOCK_P)
            p_mask = offs_p < P
            g_p = _spatial_offsets(offs_p, WIDTH, sg_h, sg_w)
            x_p = _spatial_offsets(offs_p, WIDTH, sx_h, sx_w)
            g = tl.load(g_base + g_c[:, None] + g_p[None, :],
                        mask=j_mask[:, None] & p_mask[None, :], other=0.0)  # (BLOCK_CO, BLOCK_P)
            a = tl.load(x_base + x_p[:, None] + ch[None, :] * sx_c,
                        mask=p_mask[:, None] & k_mask[None, :], other=0.0)  # (BLOCK_P, BLOCK_K)
            acc = _mma(g, a.to(g.dtype), acc, INPUT_PRECISION, UPCAST_DOT)
        w = tl.load(w_base + offs_j[:, None] * sw_o + ch[None, :] * sw_c,
                    mask=j_mask[:, None] & k_mask[None, :], other=0.0).to(tl.float32)
        gs += tl.sum(acc * w, axis=0)
        tl.atomic_add(gw_ptr + i * sgw_h + offs_j[:, None] * sgw_o + ch[None, :] * sgw_c,
                      acc * s[None, :], mask=j_mask[:, None] & k_mask[None, :])
    tl.store(gs_ptr + row + offs_k, gs, mask=k_mask)
