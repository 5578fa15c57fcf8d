"""FLOPs in the paper's convention: multiply-adds counted analytically at batch 1 (rules: docs/design.md,
section 3). Windowed pooling counts output elements x kernel area (the authors' counter), BatchNorm 0, a DGC
layer as `dgc_flops` says. Stock counters (thop, fvcore, ...) miss or over-count the masked convolution.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from dgc.layers import DGCConv2d


def conv_flops(in_channels: int, out_channels: int, kernel_size: Sequence[int], out_hw: Sequence[int],
               groups: int = 1) -> int:
    """Multiply-adds of one convolution at batch 1."""
    k = kernel_size[0] * kernel_size[1]
    return in_channels * out_channels * k * out_hw[0] * out_hw[1] // groups


def linear_flops(layer: nn.Linear) -> int:
    return layer.weight.numel() + (layer.bias.numel() if layer.bias is not None else 0)


def dgc_flops(layer: DGCConv2d, in_hw: Sequence[int], out_hw: Sequence[int]) -> tuple[int, int]:
    """(overhead, dense conv) multiply-adds of a DGC layer at batch 1: overhead is its ReLU, pool, saliency
    generators and scaling; the conv costs `dense conv` at g = 1 and `dense conv * g` in expectation."""
    c, hw = layer.in_channels, in_hw[0] * in_hw[1]
    overhead = (2 if layer.preact else 1) * c * hw  # ReLU and global average pool over (C_in, h, w)
    # per head: fc1 + its ReLU, fc2 + its ReLU, the scaling by saliency
    overhead += sum(linear_flops(h.gate.fc1) + h.gate.fc1.out_features + linear_flops(h.gate.fc2) + 2 * c
                    for h in layer.heads)
    dense = conv_flops(c, layer.out_channels, layer.kernel_size, out_hw)
    return overhead, dense


def _module_flops(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> tuple[str, int]:
    """(kind, multiply-adds) of one leaf module at batch 1."""
    if isinstance(module, nn.Conv2d):
        return "conv", conv_flops(module.in_channels, module.out_channels, module.kernel_size,
                                  out.shape[-2:], module.groups)
    if isinstance(module, nn.Linear):
        return "linear", linear_flops(module) * (inp[0].numel() // inp.shape[-1])
    if isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)):
        k = _pair(module.kernel_size)
        return "pool", out[0].numel() * k[0] * k[1]
    if isinstance(module, nn.AdaptiveAvgPool2d):
        return "pool", inp[0].numel()
    if isinstance(module, (nn.ReLU, nn.ReLU6)):
        return "relu", inp[0].numel()
    return "free", 0  # BatchNorm, Identity: not counted


def breakdown(model: nn.Module, input_size: Sequence[int] = (3, 32, 32)) -> dict[str, float]:
    """Multiply-adds of one image of `input_size` (C, H, W) by kind: conv, linear, relu, pool, dgc_overhead,
    dgc_conv_dense and dgc_conv_expected (DGC convs at g = 1 and at g). The model's mode is kept."""
    return _count(model, input_size)[0]


def actual_flops(model: nn.Module, input_size: Sequence[int], active_fraction: dict[str, float]) -> int:
    """FLOPs with each DGC conv at the fraction of input channels it actually used (by layer name)."""
    kinds, per_layer = _count(model, input_size)
    missing = sorted(set(per_layer) - set(active_fraction))
    if missing:
        raise ValueError(f"no measured channel fraction for DGC layer {missing[0]!r}")
    return int(round(_fixed(kinds) + sum(cost * active_fraction[n] for n, cost in per_layer.items())))


def _fixed(kinds: dict[str, float]) -> float:
    """Every multiply-add but the DGC convolutions'."""
    return kinds["conv"] + kinds["linear"] + kinds["relu"] + kinds["pool"] + kinds["dgc_overhead"]


def _count(model: nn.Module, input_size: Sequence[int]) -> tuple[dict[str, float], dict[str, int]]:
    if len(input_size) != 3 or any(int(s) < 1 for s in input_size):
        raise ValueError(f"input_size must be (C, H, W) with positive entries, got {tuple(input_size)}")
    inside_dgc = {id(m) for layer in model.modules() if isinstance(layer, DGCConv2d)
                  for m in layer.modules() if m is not layer}
    kinds = dict.fromkeys(("conv", "linear", "relu", "pool", "dgc_overhead", "dgc_conv_dense", "dgc_conv_expected"), 0)
    names = {m: n for n, m in model.named_modules()}
    per_layer: dict[str, int] = {}

    def hook(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        inp = args[0]
        if isinstance(module, DGCConv2d):
            overhead, dense = dgc_flops(module, inp.shape[-2:], out.shape[-2:])
            kinds["dgc_overhead"] += overhead
            kinds["dgc_conv_dense"] += dense
            kinds["dgc_conv_expected"] += dense * module.gate_factor
            per_layer[names[module]] = per_layer.get(names[module], 0) + dense
        else:
            kind, flops = _module_flops(module, inp, out)
            if flops:  # not "free"
                kinds[kind] += flops

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if id(m) not in inside_dgc and (isinstance(m, DGCConv2d) or not list(m.children()))]
    was_training = model.training
    try:
        model.eval()
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        # with autograd on, never a forward-only kernel (which would skip the leaf modules counted here)
        with torch.enable_grad():
            model(torch.zeros(1, *(int(s) for s in input_size), device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return kinds, per_layer


def count_flops(model: nn.Module, input_size: Sequence[int] = (3, 32, 32)) -> dict[str, int]:
    """{"flops_dense", "flops_expected", "params"} of `model` on one image of `input_size` (C, H, W): every DGC
    conv at full cost, at its gate factor g (the paper's number), and every parameter (none pruned)."""
    kinds = breakdown(model, input_size)
    fixed = _fixed(kinds)
    return {"flops_dense": int(fixed + kinds["dgc_conv_dense"]),
            "flops_expected": int(round(fixed + kinds["dgc_conv_expected"])),
            "params": sum(p.numel() for p in model.parameters())}
