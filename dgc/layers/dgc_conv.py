"""Dynamic Group Convolution (Su et al., ECCV 2020, arXiv 2007.04242): H heads, each with a saliency generator
and a dense weight, keep per sample their C_in - n_in most salient input channels, scaled by their saliency;
output channel j*H + i is head i's j-th. The forward runs the steps, then one of several exact executions."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from dgc.layers.dispatch import Execution, Executions
from dgc.layers.executions import DGC_EXECUTIONS, choose
from dgc.layers.gate import SaliencyGenerator
from dgc.layers.pruning_schedule import PRUNE_END, PRUNE_START, check_gate_factor, check_progress, inactive_channels

SELECTIONS = ("head", "global")
_INF = float("inf")


@dataclass(eq=False)
class ForwardReport:
    """What each forward of a DGC layer reports: the loss terms, DGC-G's saliency sample, the channels used."""

    sparsity: torch.Tensor | None = None  # mean saliency over batch and channels, summed over heads
    angle: torch.Tensor | None = None  # DGC-G, training: the heads' mean cosine similarity
    collect: bool = False  # DGC-G: append each forward's detached saliencies to `saliencies`
    saliencies: list[torch.Tensor] = field(default_factory=list)  # GlobalThreshold's sample
    usage: bool = False  # keep `kept` and `active` of each forward
    kept: torch.Tensor | None = None  # (B, H, C_in) bool: the channels selected
    active: torch.Tensor | None = None  # those of them with a saliency > 0: what reached the conv

    def record(self, layer: DGCConv2d, saliency: torch.Tensor, keep: torch.Tensor | None,
               kept: torch.Tensor | None) -> None:
        """One forward's sparsity term (before pruning), DGC-G's saliencies and angle term, its channels."""
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


STEPS = Execution("steps", lambda layer, x: layer.steps(x))  # the whole layer, step by step


class DGCHead(nn.Module):
    """One head: its saliency generator and its dense conv weight (no bias)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int],
                 squeeze_rate: int) -> None:
        super().__init__()
        self.gate = SaliencyGenerator(in_channels, squeeze_rate)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, *kernel_size))
        nn.init.kaiming_normal_(self.weight, mode="fan_out", nonlinearity="relu")


class DGCConv2d(nn.Module):
    """Dynamic group convolution; the conv arguments as nn.Conv2d's, and
    heads: H, dividing both channel counts;
    squeeze_rate: the gates' s (halved below 80 channels);
    gate_factor: g in (0, 1], the fraction of the input channels each head keeps;
    preact: False for no BatchNorm-ReLU of its own (the gates and the conv see the raw input);
    selection: 'head' (DGC: each head's C_in - n_in most salient) or 'global' (DGC-G: those >= `threshold`)."""

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
            raise ValueError(f"heads={heads} must divide in_channels={in_channels} and out_channels={out_channels}")
        self.in_channels, self.out_channels, self.num_heads = in_channels, out_channels, heads
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation = _pair(padding), _pair(dilation)
        self.squeeze_rate, self.gate_factor = squeeze_rate, check_gate_factor(gate_factor)
        if selection not in SELECTIONS:
            raise ValueError(f"selection must be one of {', '.join(SELECTIONS)}, got {selection!r}")
        self.selection = selection

        self.preact = bool(preact)
        if self.preact:  # without it no module is created, so the state-dict keys say which it is
            self.norm = nn.BatchNorm2d(in_channels)
            self.relu = nn.ReLU(inplace=True)
        self.heads = nn.ModuleList(DGCHead(in_channels, out_channels // heads, self.kernel_size, squeeze_rate)
                                   for _ in range(heads))
        # n_in, set only by `set_inactive`: `_inactive`, the int the forward reads (no sync; a constant when
        # compiled), and the saved buffer, read inside the pruning ramp (`_ramp`: no recompiling per value).
        self.register_buffer("inactive_channels", torch.zeros((), dtype=torch.long))
        self._inactive, self._ramp = 0, False
        if selection == "global":  # DGC-G: the model-wide saliency threshold T, saved with the model
            self.register_buffer("threshold", torch.zeros(()))
        self.report = ForwardReport()
        self.execution = "auto"  # or the name of a row of `executions`

    # The ways to run the conv (executions.py), the pre-activation (preact=True) and the whole layer; a kernel
    # may add rows (cpu_layers.py): a BN-ReLU that also pools, a one-call layer.
    executions = DGC_EXECUTIONS
    preactivations = Executions(Execution("bnrelu", _bnrelu))
    forwards = Executions(STEPS)

    @property
    def n_inactive(self) -> int:
        """n_in: how many input channels each head prunes."""
        return self._inactive

    @property
    def fixed_inactive(self) -> int | None:
        """n_in while it is fixed (before or after the pruning ramp); None inside it (read from the buffer)."""
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

    def saliency(self, x: torch.Tensor, pooled: torch.Tensor | None = None) -> torch.Tensor:
        """Every head's saliencies for the pre-activated x: (B, C_in, h, w) -> (B, H, C_in); `pooled`: x's
        spatial mean when known. All heads' gates run as two batched matmuls (same maths as each `gate`)."""
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
        """(keep mask (B, H, C_in) bool, kept indices (B, H, C_in - n_in) or None), ranked detached by
        (saliency, channel index): ties drop the lower index first, the same in every execution. With n_in
        fixed, a top-k of the unique `rank_keys` (a stable sort's kept set, cheaper; static shape, in no
        order); inside the ramp, each channel's stable-sort rank against the n_in buffer (no indices)."""
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
        """(BatchNorm-ReLU of x, or x when preact=False; its spatial mean where a kernel computes it, else None)."""
        return self.preactivations.choose(self, x).run(self, x) if self.preact else (x, None)

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
        """The name of what runs for x: a whole-layer forward where one applies, else the steps' execution."""
        whole = self.forwards.choose(self, x)
        return choose(self, x).name if whole is STEPS else whole.name

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, heads={self.num_heads}, "
                f"gate_factor={self.gate_factor}, squeeze_rate={self.squeeze_rate}"
                + ("" if self.preact else ", preact=False")
                + ("" if self.selection == "head" else f", selection={self.selection}"))


def rank_keys(saliency: torch.Tensor) -> torch.Tensor:
    """Unique float64 keys (..., C) ordered as (saliency, channel index): their sort or top-k is a stable
    ranking without a stable sort (NaN replaced first). key = v + |v| * c * 2^-48 + c * 2^-250, v the
    float64 saliency (+-inf as +-2^200), c the index (< 2^20): v moves < 2^-28 of itself while float32
    values differ by >= 2^-24, the index steps (2^-48 v) exceed float64 rounding, and 0's keys stay
    below every positive float32. The C++ selection's order, in ONNX-exportable elementwise ops; each
    constant a float32 product (exporters write scalars as float32: 2^200 would overflow)."""
    v = saliency.double()
    v = torch.where(v.isinf(), v.sign() * 2.0 ** 100 * 2.0 ** 100, v)
    index = torch.arange(saliency.shape[-1], dtype=torch.float64, device=saliency.device)
    return v + v.abs() * (index * 2.0 ** -48) + index * 2.0 ** -125 * 2.0 ** -125


def head_angle_similarity(saliency: torch.Tensor) -> torch.Tensor:
    """Mean cosine similarity of every pair of heads' saliencies, (B, H, C_in) -> scalar: DGC-G's angle term."""
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
        return torch.zeros((), device=next((p.device for p in model.parameters()), torch.device("cpu")))
    return torch.stack(terms).sum()


def angle_loss(model: nn.Module) -> torch.Tensor:
    """Summed head similarity (DGC-G's angle term) of every DGC-G layer's last training forward."""
    return _sum_of(model, "angle")


def sparsity_loss(model: nn.Module) -> torch.Tensor:
    """Summed sparsity term of every DGC layer's last forward (0 for a model without DGC layers)."""
    return _sum_of(model, "sparsity")


def set_progress(model: nn.Module, progress: float) -> list[int]:
    """Set the inactive-channel count of every DGC layer from training progress p in [0, 1]."""
    p = check_progress(progress)
    return [layer.set_progress(p) for layer in dgc_layers(model)]
