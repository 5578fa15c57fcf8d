"""Dynamic Group Convolution (Su et al., "Dynamic Group Convolution for Accelerating
Convolutional Neural Networks", ECCV 2020, arXiv 2007.04242).

H heads share one pre-activated input. Each head owns a saliency generator and a dense weight
(C_out/H, C_in, k, k); per sample it keeps the C_in - n_in most salient input channels, scales them
by their saliency and convolves them. Output channel j*H + i is head i's j-th channel, so the heads
come out interleaved (this acts as the channel shuffle for a following group conv).

The forward is the algorithm step by step (pre-activation, saliency, selection, usage record) and
then one call of an execution: one of several exact, equivalent ways to run the conv over the kept
channels, chosen per layer and input by `dgc.layers.executions.choose`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from dgc.kernels.cpu import batch_strided, bn_affine, bnrelu_mean, cpu_inference
from dgc.layers.executions import choose
from dgc.layers.gate import SaliencyGenerator
from dgc.layers.pruning_schedule import PRUNE_END, PRUNE_START, check_gate_factor, inactive_channels

SELECTIONS = ("head", "global")


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
        # 'auto' (the rules of dgc.layers.executions.choose) or a name in executions.EXECUTIONS.
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

    def head_weights(self) -> torch.Tensor:
        """All heads' conv weights stacked: (H, C_out/H, C_in, k, k), head i's at [i]."""
        return torch.stack([head.weight for head in self.heads])

    def preactivate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(BatchNorm-ReLU of x, or x itself when preact=False; its spatial mean (B, C_in) where
        computed on the way, else None). At CPU inference one C++ pass does both."""
        if not self.preact:
            return x, None
        if self._fused_preact_applies(x):
            return bnrelu_mean(x, *bn_affine(self.norm))
        return self.relu(self.norm(x)), None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, pooled = self.preactivate(x)  # (B, C_in, h, w)
        saliency = self.saliency(x, pooled)  # (B, H, C_in)
        self._sparsity = saliency.mean(dim=(0, 2)).sum()  # before pruning
        execution = choose(self, x)
        keep, kept = execution.select(self, saliency)  # mask (B, H, C_in), indices (B, H, K)
        if self.selection == "global":
            self._observe_global(saliency)
        if self.record_usage:
            self._record_usage(saliency, keep, kept)
        return execution.run(self, x, saliency, keep, kept)

    def execution_path(self, x: torch.Tensor) -> str:
        """The name of the execution that runs for input x: `execution`, or for 'auto' the rules of
        dgc.layers.executions.choose, after any fallback."""
        return choose(self, x).name

    def _observe_global(self, saliency: torch.Tensor) -> None:
        """DGC-G: keep the saliencies for GlobalThreshold's sample (when collecting) and, in
        training, the heads' mean cosine similarity (the angle term)."""
        if self.collect:
            self.collected.append(saliency.detach().flatten())
        if self.training:
            self._angle = head_angle_similarity(saliency)

    def _record_usage(self, saliency: torch.Tensor, keep: torch.Tensor | None,
                      kept: torch.Tensor | None) -> None:
        """`last_kept`: the channels selected; `last_active`: those of them with a saliency > 0 (the
        channels that really reach the conv), both (B, H, C_in) bool."""
        if keep is None:  # the selection gave indices only
            keep = torch.zeros_like(saliency, dtype=torch.bool).scatter_(2, kept, True)
        self.last_kept = keep
        self.last_active = keep & (saliency.detach() > 0)

    def _fused_preact_applies(self, x: torch.Tensor) -> bool:
        """Whether BN-ReLU and the saliency pooling run as one CPU kernel: eval-mode statistics,
        CPU inference, float32 NCHW input (or a channel slice of one: a DenseNet block's buffer)."""
        return (not self.training and x.dim() == 4 and x.shape[2] * x.shape[3] > 0
                and batch_strided(x) and self.norm.running_mean is not None and cpu_inference(x))

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
