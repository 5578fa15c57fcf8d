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

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from dgc.layers.dispatch import Execution, Executions
from dgc.layers.executions import DGC_EXECUTIONS, choose
from dgc.layers.gate import SaliencyGenerator
from dgc.layers.pruning_schedule import PRUNE_END, PRUNE_START, check_gate_factor, inactive_channels

SELECTIONS = ("head", "global")
_INF = float("inf")


@dataclass(eq=False)
class ForwardReport:
    """What a DGC layer's forward reports to the code around it: the loss terms, DGC-G's sample of
    saliencies and the channels used. The layer writes it every forward; the losses
    (`sparsity_loss`, `angle_loss`), DGC-G's threshold (GlobalThreshold) and the usage measurement
    (dgc.measure.usage) read it and set its two switches."""

    sparsity: torch.Tensor | None = None  # mean saliency over batch and channels, summed over heads
    angle: torch.Tensor | None = None  # DGC-G, training: the heads' mean cosine similarity
    collect: bool = False  # DGC-G: append each forward's detached saliencies to `saliencies`
    saliencies: list[torch.Tensor] = field(default_factory=list)  # GlobalThreshold's sample
    usage: bool = False  # keep `kept` and `active` of each forward
    kept: torch.Tensor | None = None  # (B, H, C_in) bool: the channels selected
    active: torch.Tensor | None = None  # those of them with a saliency > 0: what reached the conv

    def record(self, layer: DGCConv2d, saliency: torch.Tensor, keep: torch.Tensor | None,
               kept: torch.Tensor | None) -> None:
        """One forward's report: its sparsity term (taken before pruning); for DGC-G its saliencies
        (when collecting) and angle term (in training); its channels (when recording usage)."""
        self.sparsity = saliency.mean(dim=(0, 2)).sum()
        if layer.selection == "global":
            if self.collect:
                self.saliencies.append(saliency.detach().flatten())
            if layer.training:
                self.angle = head_angle_similarity(saliency)
        if self.usage:
            if keep is None:  # the selection gave indices only
                keep = torch.zeros_like(saliency, dtype=torch.bool).scatter_(2, kept, True)
            self.kept, self.active = keep, keep & (saliency.detach() > 0)


def _bnrelu(layer: DGCConv2d, x: torch.Tensor) -> tuple[torch.Tensor, None]:
    return layer.relu(layer.norm(x)), None


# A DGC layer's own pre-activation (preact=True): BatchNorm-ReLU; a kernel may add a row that also
# returns the saliency pooling (dgc/kernels/cpu_layers.py).
PREACTIVATIONS = Executions(Execution("bnrelu", _bnrelu))
# The ways to run a whole DGC layer: its steps (`DGCConv2d.steps`: pre-activation, saliency,
# selection and report, then one execution of `executions`); a kernel may add a row that runs the
# whole layer in one call (dgc/kernels/cpu_layers.py: `fused_layer_cpu`, where the steps' small ops
# cost more than their arithmetic).
STEPS = Execution("steps", lambda layer, x: layer.steps(x))
FORWARDS = Executions(STEPS)


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
        # n_in, the number of input channels each head prunes, is set in one place, `set_inactive`,
        # which writes both of its forms: `_inactive`, the Python int the forward reads (no device
        # sync, and a constant for torch.compile), and the buffer saved with the model, from which
        # the mask is built inside the pruning ramp (`_ramp`: n_in changes every few steps, and a
        # compiled model reads a tensor instead of recompiling at each value). Loading a state dict
        # goes through `set_inactive` too (`_load_from_state_dict`).
        self.register_buffer("inactive_channels", torch.zeros((), dtype=torch.long))
        self._inactive, self._ramp = 0, False
        if selection == "global":  # DGC-G: the model-wide saliency threshold T, saved with the model
            self.register_buffer("threshold", torch.zeros(()))
        self.report = ForwardReport()
        # 'auto' (the rules of dgc.layers.executions) or the name of a row of `executions`.
        self.execution = "auto"

    executions = DGC_EXECUTIONS  # the ways to run the conv (dgc/layers/executions.py)
    preactivations = PREACTIVATIONS
    forwards = FORWARDS

    # -- pruning state ------------------------------------------------------------------------
    @property
    def n_inactive(self) -> int:
        """n_in: how many input channels each head prunes."""
        return self._inactive

    @property
    def fixed_inactive(self) -> int | None:
        """n_in while it is fixed (no pruning yet, the target reached, evaluation); None inside the
        pruning ramp, where the forward reads it from the buffer."""
        return None if self._ramp else self._inactive

    def set_inactive(self, n: int, ramp: bool = False) -> None:
        """Set n_in (0 <= n <= in_channels); `ramp`: it changes every few steps (see __init__)."""
        n = int(n)
        if not 0 <= n <= self.in_channels:
            raise ValueError(f"inactive channel count must be in [0, {self.in_channels}], got {n}")
        self.inactive_channels.fill_(n)
        self._inactive, self._ramp = n, bool(ramp)

    def set_progress(self, progress: float) -> int:
        """Set n_in from training progress p in [0, 1] (docs/design.md schedule); returns n_in."""
        n = inactive_channels(self.in_channels, self.gate_factor, progress)
        self.set_inactive(n, ramp=PRUNE_START < progress < PRUNE_END)
        return n

    def _load_from_state_dict(self, state_dict, prefix, *args) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args)
        self.set_inactive(int(self.inactive_channels))  # the Python int follows the loaded buffer

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
        s = saliency.detach().nan_to_num(nan=_INF, posinf=_INF, neginf=-_INF)  # a NaN ranks as +inf (as in C++)
        if self.selection == "global":  # DGC-G: one threshold; how many are kept varies per row
            return s >= self.threshold, None
        n = self.fixed_inactive
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
        """(BatchNorm-ReLU of x, or x itself when preact=False; its spatial mean (B, C_in) where an
        execution of `preactivations` computes it on the way, else None)."""
        if not self.preact:
            return x, None
        return self.preactivations.choose(self, x).run(self, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forwards.choose(self, x).run(self, x)

    def steps(self, x: torch.Tensor) -> torch.Tensor:
        """The algorithm step by step: pre-activation, saliency, selection, report, one execution."""
        x, pooled = self.preactivate(x)  # (B, C_in, h, w)
        saliency = self.saliency(x, pooled)  # (B, H, C_in)
        execution = choose(self, x)
        # the kept channels: mask (B, H, C_in) and indices (B, H, K), by the execution's selection or the layer's
        keep, kept = execution.select(self, saliency) if execution.select else self.select(saliency)
        self.report.record(self, saliency, keep, kept)
        return execution.run(self, x, saliency, keep, kept)

    def execution_path(self, x: torch.Tensor) -> str:
        """The name of what runs for input x: a whole-layer forward where one applies (a kernel's,
        `forwards`), else the execution of the steps: `execution`, or for 'auto' the rules of
        dgc.layers.executions, after any fallback."""
        whole = self.forwards.choose(self, x)
        return choose(self, x).name if whole is STEPS else whole.name

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, heads={self.num_heads}, "
                f"gate_factor={self.gate_factor}, squeeze_rate={self.squeeze_rate}"
                + ("" if self.preact else ", preact=False")
                + ("" if self.selection == "head" else f", selection={self.selection}"))


def rank_keys(saliency: torch.Tensor) -> torch.Tensor:
    """Unique float64 keys (..., C) ordered as (saliency, channel index): sorting or taking the top-k
    of them is a stable ranking of the saliencies, without a stable sort. NaN must be replaced first.

    key = v + |v| * c * 2^-48 + c * 2^-250 for v = the saliency in float64 (exact; +-inf as
    +-2^200, above every finite float32) and c = the channel index. Every value v != 0 is moved by
    less than 2^-28 of itself (c < 2^20), while two distinct float32 values differ by at least 2^-24
    of the larger one, so the saliency order is kept; at one value the index orders the keys (its
    steps, 2^-48 of v, are far above float64's rounding, 2^-53); at 0 (and -0.0) the keys are
    c * 2^-250, below every positive float32 (>= 2^-149). The same order as the float's bits made
    monotone above the channel index (the C++ selection, dgc/kernels/cpu_kernels.cpp), in
    elementwise ops that ONNX has (it has no bit-cast). Every constant is a float32 (2^200 and
    2^-250 are products of two): exporters write a Python scalar as a float32 constant, where 2^200
    would overflow and 2^-250 vanish."""
    v = saliency.double()
    v = torch.where(v.isinf(), v.sign() * 2.0 ** 100 * 2.0 ** 100, v)
    index = torch.arange(saliency.shape[-1], dtype=torch.float64, device=saliency.device)
    return v + v.abs() * (index * 2.0 ** -48) + index * 2.0 ** -125 * 2.0 ** -125


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


def dgc_layers(model: nn.Module) -> list[DGCConv2d]:
    """Every DGC layer of `model`, in module order."""
    return [m for m in model.modules() if isinstance(m, DGCConv2d)]


def _sum_of(model: nn.Module, term: str) -> torch.Tensor:
    terms = [getattr(layer.report, term) for layer in dgc_layers(model) if getattr(layer.report, term) is not None]
    if not terms:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        return torch.zeros((), device=device)
    return torch.stack(terms).sum()


def angle_loss(model: nn.Module) -> torch.Tensor:
    """Summed head similarity (DGC-G's angle term) of every DGC-G layer's last training forward."""
    return _sum_of(model, "angle")


def sparsity_loss(model: nn.Module) -> torch.Tensor:
    """Summed sparsity term of every DGC layer's last forward (0 for a model without DGC layers)."""
    return _sum_of(model, "sparsity")


def set_progress(model: nn.Module, progress: float) -> list[int]:
    """Set the inactive-channel count of every DGC layer from training progress p in [0, 1]."""
    from dgc.layers.pruning_schedule import check_progress

    p = check_progress(progress)
    return [layer.set_progress(p) for layer in dgc_layers(model)]
