"""Dynamic Group Convolution (Su et al., "Dynamic Group Convolution for Accelerating
Convolutional Neural Networks", ECCV 2020, arXiv 2007.04242).

H heads share one pre-activated input. Each head owns a saliency generator and a dense weight
(C_out/H, C_in, k, k); per sample it keeps the C_in - n_in most salient input channels, scales them
by their saliency and convolves them. Output channel j*H + i is head i's j-th channel, so the heads
come out interleaved (this acts as the channel shuffle for a following group conv).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from dgc.kernels.cpu import (batch_strided, bn_affine, bnrelu_mean, cpu_inference, gather_gemm_1x1,
                             select_topk)
from dgc.layers.gate import SaliencyGenerator
from dgc.layers.pruning_schedule import PRUNE_END, PRUNE_START, check_gate_factor, inactive_channels


SELECTIONS = ("head", "global")
# The gather execution `auto` may use per device type, where pruned channels make it pay (measured):
# CPU: 'sparse' (`dgc bench`: 3x3 layers at inference 0.83-0.98x the dense conv), and for 1x1 convs
# without autograd 'fused_cpu' when the CPU kernels build (dgc/kernels/cpu.py; benchmarks/cpu_kernels.py:
# densenet86's DGC 1x1 layers at batch 64 in 0.53-0.74x the time of 'sparse'). CUDA: none so far:
# 'sparse' was measured slowest there (H200, torch 2.11, densenet86_dgc at batch 64: inference
# 72.1 ms vs 39.0 ms for scaled_weight, training step 180.0 vs 115.9 ms), and the fused Triton kernel
# awaits its measurement by benchmarks/gpu_check.sh; until then 'scaled_weight'/'masked' run there.
GATHER_PATH: dict[str, str | None] = {"cpu": "sparse", "cuda": None}


class DGCHead(nn.Module):
    """One head: its saliency generator and its dense conv weight (no bias)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int],
                 squeeze_rate: int) -> None:
        super().__init__()
        self.gate = SaliencyGenerator(in_channels, squeeze_rate)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *kernel_size))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")


class DGCConv2d(nn.Module):
    """Dynamic group convolution with its own BatchNorm-ReLU pre-activation (unless preact=False).

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation: as nn.Conv2d.
        heads: number of heads H (dynamic groups); must divide in_channels and out_channels.
        squeeze_rate: reduction s of each saliency generator (halved when in_channels < 80).
        gate_factor: fraction g of input channels each head keeps, in (0, 1].
        preact: True (the authors' layer): BatchNorm-ReLU first, the saliency generators and the
            conv see the pre-activated input. False: no norm/relu modules at all, both see the raw
            input (for blocks whose own BN-activation precedes the conv, e.g. MobileNetV2's 1x1s).
        selection: 'head' (the authors' DGC): each head keeps its C_in - n_in most salient channels.
            'global' (the paper's DGC-G): a channel is kept where its saliency reaches the model-wide
            threshold in the `threshold` buffer (set by dgc.layers.GlobalThreshold from the saliencies
            of all DGC-G layers), so the number kept varies per sample, head and layer.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int],
                 stride: int | tuple[int, int] = 1, padding: int | tuple[int, int] = 0,
                 dilation: int | tuple[int, int] = 1, heads: int = 4, squeeze_rate: int = 16,
                 gate_factor: float = 0.25, preact: bool = True, selection: str = "head") -> None:
        super().__init__()
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("heads", heads), ("squeeze_rate", squeeze_rate)):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if in_channels % heads or out_channels % heads:
            raise ValueError(f"heads={heads} must divide in_channels={in_channels} "
                             f"and out_channels={out_channels}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.num_heads = heads
        self.squeeze_rate = squeeze_rate
        self.gate_factor = check_gate_factor(gate_factor)
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, got {selection!r}")
        self.selection = selection

        self.preact = bool(preact)
        if self.preact:  # without it no module is created, so the state-dict keys say which it is
            self.norm = nn.BatchNorm2d(in_channels)
            self.relu = nn.ReLU(inplace=True)
        self.heads = nn.ModuleList(
            DGCHead(in_channels, out_channels // heads, self.kernel_size, squeeze_rate)
            for _ in range(heads))
        # n_in, the number of input channels each head prunes; saved with the model. A Python
        # mirror avoids a device sync on every forward; it follows the buffer on load_state_dict.
        self.register_buffer("inactive_channels", torch.zeros((), dtype=torch.long))
        self._n_inactive = 0
        # n_in as a compile-time constant, or None while the pruning ramp changes it every few steps.
        # Forward reads only this (never `_n_inactive`): a compiled model then sees one value for the
        # whole ramp (the mask is built from the buffer, a tensor) instead of recompiling at each
        # change of n_in; fixed n (no pruning yet, the target reached, evaluation) allows the
        # static-shape gather of exactly C_in - n_in channels.
        self._n_static: int | None = 0
        self.register_load_state_dict_post_hook(_sync_inactive_mirror)
        if selection == "global":  # DGC-G: the model-wide saliency threshold T, saved with the model
            self.register_buffer("threshold", torch.zeros(()))
        # DGC-G only: when True, forward appends its detached saliencies to `collected` (the sample
        # from which GlobalThreshold estimates T), and `_angle` holds the heads' mean cosine similarity.
        self.collect = False
        self.collected: list[torch.Tensor] = []
        self._angle: torch.Tensor | None = None
        self._sparsity: torch.Tensor | None = None
        # 'auto' picks the faster of two exact executions per input size (see execution_path).
        self.execution = "auto"
        # When True, forward keeps `last_kept` (B, H, C_in), the channels selected, and `last_active`,
        # those of them with a saliency > 0: the channels each head really used.
        self.record_usage = False
        self.last_kept: torch.Tensor | None = None
        self.last_active: torch.Tensor | None = None

    # -- pruning state ------------------------------------------------------------------------
    @property
    def n_inactive(self) -> int:
        return self._n_inactive

    def set_inactive(self, n: int) -> None:
        """Set n_in directly (0 <= n <= in_channels)."""
        n = int(n)
        if not 0 <= n <= self.in_channels:
            raise ValueError(f"inactive channel count must be in [0, {self.in_channels}], got {n}")
        self.inactive_channels.fill_(n)
        self._n_inactive = n
        self._n_static = n

    def set_progress(self, progress: float) -> int:
        """Set n_in from training progress p in [0, 1] (docs/design.md schedule); returns n_in.

        Inside the ramp (1/12 < p < 3/4) n_in is marked dynamic: forward builds the mask from the
        buffer, so a compiled model does not recompile when n_in changes."""
        n = inactive_channels(self.in_channels, self.gate_factor, progress)
        self.set_inactive(n)
        if PRUNE_START < progress < PRUNE_END:
            self._n_static = None
        return n

    @property
    def sparsity(self) -> torch.Tensor | None:
        """Sparsity term of the last forward: mean saliency over batch and channels, summed over heads."""
        return self._sparsity

    # -- the algorithm, step by step ------------------------------------------------------------
    def saliency(self, x: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
        """Saliencies of every head for the pre-activated input x: (B, C_in, h, w) -> (B, H, C_in).
        `pooled`: x's spatial mean (B, C_in) when it is already known.

        All heads' saliency generators run as two batched matmuls (the same maths as calling each
        head's `gate`, in a handful of kernel launches instead of a dozen)."""
        if pooled is None:
            pooled = x.mean(dim=(2, 3))  # (B, C_in), shared by all heads
        w1 = torch.stack([head.gate.fc1.weight for head in self.heads])  # (H, C/s, C_in)
        w2 = torch.stack([head.gate.fc2.weight for head in self.heads])  # (H, C_in, C/s)
        b2 = torch.stack([head.gate.fc2.bias for head in self.heads])  # (H, C_in)
        hidden = torch.relu(torch.matmul(pooled, w1.transpose(1, 2)))  # (H, B, C/s)
        out = torch.baddbmm(b2[:, None, :], hidden, w2.transpose(1, 2))  # (H, B, C_in)
        return torch.relu(out).transpose(0, 1)  # (B, H, C_in)

    def keep_mask(self, saliency: torch.Tensor) -> torch.Tensor:
        """Boolean mask of kept channels: the n_in smallest saliencies per sample and head are dropped."""
        return self.select(saliency)[0]

    def select(self, saliency: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(keep mask (B, H, C_in) bool, kept channel indices (B, H, C_in - n_in) or None).

        Ranked on a detached copy (the ranking carries no gradient) by (saliency, channel index), so
        ties at the boundary are broken by channel index (lower index dropped first) and every
        execution path drops the same channels. With n_in fixed one top-k of the C_in - n_in largest
        rank keys (`rank_keys`: unique per row, so the kept set is exactly that of a stable sort, at a
        fraction of its cost) gives the kept indices, in no particular order (a static shape: no
        host sync, no data-dependent size); inside the pruning ramp each channel's rank from one
        stable sort is compared with the n_in buffer (a tensor), and no indices are returned.
        """
        s = saliency.detach().nan_to_num(nan=float("inf"))  # a NaN ranks as most salient
        if self.selection == "global":  # DGC-G: one threshold; how many are kept varies per row
            return s >= self.threshold, None
        n = self._n_static
        if n == 0:
            return torch.ones_like(saliency, dtype=torch.bool), None
        if n is not None:  # keys ascending = dropped first
            kept = rank_keys(s).topk(self.in_channels - n, dim=2, sorted=False).indices  # (B, H, C_in - n)
            return torch.zeros_like(saliency, dtype=torch.bool).scatter_(2, kept, True), kept
        order = s.argsort(dim=2, stable=True)  # (B, H, C_in) ascending saliency, ties by index
        positions = torch.arange(self.in_channels, device=s.device).expand_as(order)
        rank = torch.empty_like(order).scatter_(2, order, positions)  # rank of each channel
        return rank >= self.inactive_channels, None

    def weight(self) -> torch.Tensor:
        """All heads' weights stacked head-major: (H * C_out/H, C_in, k, k)."""
        return torch.cat([head.weight for head in self.heads], dim=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = None
        if self.preact and self._fused_preact_applies(x):  # CPU inference: one pass, C++ kernel
            x, pooled = bnrelu_mean(x, *bn_affine(self.norm))
        elif self.preact:
            x = self.relu(self.norm(x))  # (B, C_in, h, w)
        saliency = self.saliency(x, pooled)  # (B, H, C_in)
        self._sparsity = saliency.mean(dim=(0, 2)).sum()  # before pruning
        path = self.execution_path(x)
        if path == "fused_cpu" and not self._fused_cpu_applies(x):
            path = "sparse"  # the CPU kernel: float32 CPU 1x1 convs without autograd, same maths
        if path == "fused_cpu" and self.selection == "head" and self._n_static:
            # CPU inference: the selection (the same set as `select`) and the conv as C++ kernels
            kept, values = select_topk(saliency, self.in_channels - self._n_static)
            if self.record_usage:
                keep = torch.zeros_like(saliency, dtype=torch.bool).scatter_(2, kept, True)
                self.last_kept, self.last_active = keep, keep & (saliency > 0)
            return self._fused_cpu_conv(x, kept, values)
        keep, kept = self.select(saliency)  # (B, H, C_in) bool, (B, H, K) or None
        if self.selection == "global":
            if self.collect:
                self.collected.append(saliency.detach().flatten())
            if self.training:
                self._angle = head_angle_similarity(saliency)
        if self.record_usage:  # channels that really reach the conv: kept with a saliency > 0
            self.last_kept = keep
            self.last_active = keep & (saliency.detach() > 0)  # (B, H, C_in) bool
        # Pruned channels are zeroed, kept ones scaled by their (non-detached) saliency.
        scale = saliency * keep  # (B, H, C_in)
        if path == "fused" and (self.kernel_size != (1, 1) or self.padding != (0, 0)
                                or (self.selection == "head" and self._n_static is None)):
            path = "scaled_weight"  # the fused kernel: 1x1 convs with a fixed n_in only
        if path in ("sparse", "fused", "fused_cpu"):
            if self.selection == "global":  # as many as the fullest row keeps; padding scaled by 0
                width = int(keep.sum(dim=2).max())  # a host sync: DGC-G's gather paths are eager-only
                kept = (~keep).to(torch.uint8).argsort(dim=2, stable=True)[..., :width]
            elif self._n_static is None:
                raise RuntimeError("the sparse execution needs a fixed n_in (set_inactive, or progress "
                                   "outside the pruning ramp)")
            elif kept is None:  # n_in = 0: every channel
                kept = torch.arange(self.in_channels, device=x.device).expand_as(saliency)
            if path == "fused":
                return self._fused_conv(x, scale, kept)
            if path == "fused_cpu":
                return self._fused_cpu_conv(x, kept, scale.gather(2, kept))
            return self._sparse_conv(x, scale, kept)
        if path == "masked":
            return self._masked_conv(x, scale)
        return self._scaled_weight_conv(x, scale)

    def execution_path(self, x: torch.Tensor) -> str:
        """Which of three exact, equivalent executions to run for input x (`execution` = 'auto').

        'sparse': only the kept channels are convolved (g x the dense work). Needs n_in fixed (not
        inside the pruning ramp). Chosen where GATHER_PATH (keyed by device type, from measurement)
        allows it: on CPU at inference whenever channels are pruned and the per-sample weights stay
        small, and in training for k x k convs that keep at most 30% of their channels.
        'masked': H scaled copies of x through one grouped conv (the authors' way; memory H x input).
        'fused' (only when asked for): 1x1 convs through the Triton kernel of dgc/kernels, which
        gathers the kept channels inside a grouped GEMM; other layers fall back to 'scaled_weight'.
        'fused_cpu': the same gather-in-GEMM as a C++ kernel (dgc/kernels/cpu.py) for float32 1x1
        convs on the CPU without autograd; chosen instead of 'sparse' there when the kernels build.
        Where it does not apply (k x k, grad mode on, other dtypes) it runs 'sparse'.
        'scaled_weight': fold each sample's saliencies into the weights instead,
        conv(x * s, W) = conv(x, W * s), so x is read once; one batched matmul for 1x1 convs, a
        conv grouped over the batch for k x k. Chosen when the per-sample weights (C_out*C_in*k*k)
        are no larger than the H input copies (H*C_in*h*w), always for 1x1.
        """
        if self.execution != "auto":
            return self.execution
        k = self.kernel_size[0] * self.kernel_size[1]
        hw = x.shape[-2] * x.shape[-1]
        n = self._n_static if self.selection == "head" else None
        # Per-sample weights (C_out*k*k per kept channel) at most twice the per-head input copies
        # (H*h*w per kept channel): gathering weights per sample pays off. Past that (deep layers on
        # small maps: 256 channels at 8x8, 512 at 4x4) the weight copies cost more than the masked
        # conv saves (measured by `dgc bench` and benchmarks/).
        gather_pays = self.out_channels * k <= 2 * self.num_heads * hw
        gather = GATHER_PATH.get(x.device.type)
        if n and gather_pays and gather:
            if not (self.training and torch.is_grad_enabled()):
                if gather == "sparse" and self._fused_cpu_applies(x):
                    return "fused_cpu"  # inference: skip the pruned channels
                return gather
            # Training: the sparse backward (a conv grouped over samples x heads) only pays off when
            # few channels are kept; 1x1 convs train faster as one batched matmul (scaled_weight).
            if k > 1 and 1.0 - n / self.in_channels <= 0.3:
                return gather
        if k == 1 or self.out_channels * k <= self.num_heads * hw:
            return "scaled_weight"
        return "masked"

    def _masked_conv(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Reference execution: H scaled copies of x through one grouped conv (the authors' way)."""
        b, c, h, w = x.shape
        heads = self.num_heads
        xs = (x.unsqueeze(1) * scale[..., None, None]).reshape(b, heads * c, h, w)  # (B, H*C_in, h, w)
        out = F.conv2d(xs, self.weight(), None, self.stride, self.padding, self.dilation,
                       groups=heads)  # (B, H*C_out/H, h', w'), head-major
        ho, wo = out.shape[-2:]
        # Interleave heads: channel j*H + i <- head i, channel j.
        return out.view(b, heads, -1, ho, wo).transpose(1, 2).reshape(b, -1, ho, wo)

    def _sparse_conv(self, x: torch.Tensor, scale: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Convolve only the channels `idx` (B, H, K): per sample and head, gather those input
        channels and the matching weight slices (times `scale`, the masked saliency (B, H, C_in)),
        then one batched matmul (1x1) or one conv grouped over (sample, head) (k x k). Work: K / C_in
        times the dense conv."""
        b, c, h, w = x.shape
        heads, k_keep = self.num_heads, idx.shape[2]
        co = self.out_channels // heads
        if k_keep == 0:
            ho, wo = _conv_out(h, w, self.kernel_size, self.stride, self.padding, self.dilation)
            # Nothing kept: zeros, still attached to the graph (every gradient is zero, as masked).
            return x.new_zeros(b, self.out_channels, ho, wo) + 0.0 * scale.sum()
        values = scale.gather(2, idx)  # (B, H, K)
        # (H, C_in, C_out/H, kh, kw), contiguous: one copy, and its rows are (head, input channel)
        weight = torch.stack([head.weight.transpose(0, 1) for head in self.heads], dim=0)
        # Gathers as index_select on rows of 2-d views (contiguous row copies: 2-10x faster on
        # the CPU than advanced indexing of the same elements).
        rows = idx + torch.arange(heads, device=x.device)[None, :, None] * c  # (B, H, K) into H*C_in
        w_kept = weight.reshape(heads * c, -1).index_select(0, rows.reshape(-1))
        w_kept = w_kept.view(b, heads, k_keep, co, *self.kernel_size) * values[..., None, None, None]
        if self.kernel_size == (1, 1) and self.padding == (0, 0):
            if self.stride != (1, 1):
                x = x[:, :, ::self.stride[0], ::self.stride[1]]
                h, w = x.shape[-2:]
            x_kept = _gather_channels(x, idx)  # (B, H*K, h, w)
            out = torch.bmm(w_kept.reshape(b * heads, k_keep, co).transpose(1, 2),
                            x_kept.reshape(b * heads, k_keep, h * w))  # (B*H, C_out/H, hw)
            ho, wo = h, w
        else:
            x_kept = _gather_channels(x, idx)  # (B, H*K, h, w)
            out = F.conv2d(x_kept.reshape(1, b * heads * k_keep, h, w),
                           w_kept.transpose(2, 3).reshape(b * heads * co, k_keep, *self.kernel_size),
                           None, self.stride, self.padding, self.dilation, groups=b * heads)
            ho, wo = out.shape[-2:]  # (1, B*H*C_out/H, h', w')
        # (B, H, C_out/H, h', w') -> interleaved heads: channel j*H + i <- head i, channel j.
        return out.view(b, heads, co, ho, wo).transpose(1, 2).reshape(b, self.out_channels, ho, wo)

    def _fused_conv(self, x: torch.Tensor, scale: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """The 1x1 gather + grouped GEMM in one Triton kernel (dgc/kernels): no gathered copy of x."""
        from dgc.kernels import fused_dgc_1x1

        if self.stride != (1, 1):
            x = x[:, :, ::self.stride[0], ::self.stride[1]]
        weight = torch.stack([head.weight.flatten(1) for head in self.heads])  # (H, C_out/H, C_in)
        return fused_dgc_1x1(x, weight, idx, scale.gather(2, idx))

    def _fused_cpu_applies(self, x: torch.Tensor) -> bool:
        """Whether the CPU kernel can run this forward (builds the kernels on first use)."""
        return self.kernel_size == (1, 1) and self.padding == (0, 0) and cpu_inference(x)

    def _fused_preact_applies(self, x: torch.Tensor) -> bool:
        """Whether BN-ReLU and the saliency pooling run as one CPU kernel: eval-mode statistics,
        CPU inference, float32 NCHW input (or a channel slice of one: a DenseNet block's buffer)."""
        return (not self.training and x.dim() == 4 and x.shape[2] * x.shape[3] > 0
                and batch_strided(x) and self.norm.running_mean is not None and cpu_inference(x))

    def _fused_cpu_conv(self, x: torch.Tensor, idx: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """The 1x1 gather + GEMM as one C++ kernel (dgc/kernels/cpu.py): no gathered copy of x.
        idx (B, H, K): kept channels, values (B, H, K): their saliencies."""
        if self.stride != (1, 1):
            x = x[:, :, ::self.stride[0], ::self.stride[1]]
        weight = torch.stack([head.weight.flatten(1) for head in self.heads])  # (H, C_out/H, C_in)
        out = gather_gemm_1x1(x, weight, idx, values)
        if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
            return out.contiguous(memory_format=torch.channels_last)  # the input's layout
        return out

    def _scaled_weight_conv(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        """Per-sample weights W_i * s_i (saliency folded into the weights), heads interleaved."""
        b, c, h, w = x.shape
        weight = torch.stack([head.weight for head in self.heads], dim=1)  # (C_out/H, H, C_in, k, k)
        # Interleaved output order comes from stacking heads on dim 1: row j*H + i = head i, row j.
        per_sample = weight[None] * scale[:, None, :, :, None, None]  # (B, C_out/H, H, C_in, k, k)
        per_sample = per_sample.reshape(b, self.out_channels, c, *self.kernel_size)  # (B, C_out, C_in, k, k)
        if self.kernel_size == (1, 1) and self.stride == (1, 1) and self.padding == (0, 0):
            w2 = per_sample.view(b, self.out_channels, c)  # (B, C_out, C_in)
            if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
                rows = x.permute(0, 2, 3, 1).reshape(b, h * w, c)  # (B, hw, C_in), no copy
                out = torch.bmm(rows, w2.transpose(1, 2))  # (B, hw, C_out)
                return out.view(b, h, w, self.out_channels).permute(0, 3, 1, 2)  # channels_last view
            return torch.bmm(w2, x.reshape(b, c, h * w)).view(b, self.out_channels, h, w)
        out = F.conv2d(x.reshape(1, b * c, h, w),
                       per_sample.reshape(b * self.out_channels, c, *self.kernel_size), None,
                       self.stride, self.padding, self.dilation, groups=b)  # (1, B*C_out, h', w')
        return out.view(b, self.out_channels, *out.shape[-2:])

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, heads={self.num_heads}, "
                f"gate_factor={self.gate_factor}, squeeze_rate={self.squeeze_rate}"
                + ("" if self.preact else ", preact=False")
                + ("" if self.selection == "head" else f", selection={self.selection}"))


def rank_keys(saliency: torch.Tensor) -> torch.Tensor:
    """Unique int64 keys (..., C) ordered as (saliency, channel index): the float's bits made
    monotone (negatives flipped, -0.0 as 0.0) above the channel index. Sorting or taking the top-k
    of them is a stable ranking of the saliencies, without a stable sort. NaN must be replaced first."""
    bits = (saliency.float() + 0.0).view(torch.int32)  # + 0.0: -0.0 becomes 0.0
    bits = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # negative floats: larger magnitude, smaller int
    channels = saliency.shape[-1]
    index = torch.arange(channels, device=saliency.device)
    return (bits.to(torch.int64) << max(1, (channels - 1).bit_length())) | index


def _gather_channels(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """x (B, C, h, w), idx (B, H, K) -> (B, H*K, h, w): per sample, the channels idx[b] in order."""
    b, c, h, w = x.shape
    rows = idx.reshape(b, -1) + torch.arange(b, device=x.device)[:, None] * c  # into B*C rows
    return x.reshape(b * c, h * w).index_select(0, rows.reshape(-1)).view(b, -1, h, w)


def head_angle_similarity(saliency: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity between the saliency vectors of every pair of heads, over the batch:
    (B, H, C_in) -> scalar. DGC-G's angle-enlargement term: minimising it spreads the heads' choices
    apart (0 for one head)."""
    heads = saliency.shape[1]
    if heads < 2:
        return saliency.new_zeros(())
    unit = torch.nn.functional.normalize(saliency, dim=2, eps=1e-8)  # (B, H, C)
    cos = torch.matmul(unit, unit.transpose(1, 2))  # (B, H, H)
    off_diagonal = cos.sum(dim=(1, 2)) - cos.diagonal(dim1=1, dim2=2).sum(dim=1)
    return (off_diagonal / (heads * (heads - 1))).mean()


def _conv_out(h: int, w: int, kernel: tuple[int, int], stride: tuple[int, int],
              padding: tuple[int, int], dilation: tuple[int, int]) -> tuple[int, int]:
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                 for n, k, s, p, d in zip((h, w), kernel, stride, padding, dilation))


def _sync_inactive_mirror(module: nn.Module, incompatible_keys) -> None:
    module._n_inactive = module._n_static = int(module.inactive_channels)


def dgc_layers(model: nn.Module) -> list[DGCConv2d]:
    """Every DGC layer of `model`, in module order."""
    return [m for m in model.modules() if isinstance(m, DGCConv2d)]


def _sum_of(model: nn.Module, attribute: str) -> torch.Tensor:
    terms = [getattr(layer, attribute) for layer in dgc_layers(model)
             if getattr(layer, attribute) is not None]
    if not terms:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        return torch.zeros((), device=device)
    return torch.stack(terms).sum()


def angle_loss(model: nn.Module) -> torch.Tensor:
    """Summed head similarity (DGC-G's angle term) of every DGC-G layer's last training forward."""
    return _sum_of(model, "_angle")


def sparsity_loss(model: nn.Module) -> torch.Tensor:
    """Summed sparsity term of every DGC layer's last forward (0 for a model without DGC layers)."""
    return _sum_of(model, "_sparsity")


def set_progress(model: nn.Module, progress: float) -> list[int]:
    """Set the inactive-channel count of every DGC layer from training progress p in [0, 1]."""
    from dgc.layers.pruning_schedule import check_progress

    p = check_progress(progress)
    return [layer.set_progress(p) for layer in dgc_layers(model)]
