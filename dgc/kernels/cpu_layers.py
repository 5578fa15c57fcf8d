"""The C++ CPU kernels (cpu.py) as executions of the layers, for CPU inference: `use_cpu_kernels(model)` puts
them before the PyTorch executions of its layers (where each applies and why: docs/design.md, "CPU kernels").
Forward-only: `dgc train` never imports this module; the evaluate stage, `dgc bench` and the benchmarks do.
"""

from __future__ import annotations

import torch
from torch import nn

from dgc.kernels import cpu
from dgc.layers import AvgPool2x2, BNReLUConv2d, DGCConv2d, Execution
from dgc.layers.executions import (channels_last, fixed_selection, gather_pays, is_1x1, kept_indices, subsample,
                                   training)


# -- DGCConv2d --------------------------------------------------------------------------------
def fused_cpu(layer: DGCConv2d, x: torch.Tensor, saliency: torch.Tensor, keep: torch.Tensor | None,
              kept: torch.Tensor | None) -> torch.Tensor:
    """The fused 1x1 conv: the kept rows of x read in place inside a register-tiled GEMM."""
    if keep is not None:  # else the C++ top-k (_select_topk): every index in `kept` is kept
        kept = kept_indices(layer, saliency, keep, kept)
        saliency = saliency * keep
    x = subsample(layer, x)
    out = cpu.fused_1x1(x, layer.head_weights().flatten(2), kept, saliency.gather(2, kept))
    return out.contiguous(memory_format=torch.channels_last) if channels_last(x) else out


def _select_topk(layer: DGCConv2d, saliency: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """fused_cpu's selection: with n_in > 0 fixed per head, the C++ top-k (`layer.select`'s kept set,
    without the mask: keep is None); otherwise `layer.select`."""
    if layer.selection == "head" and layer.fixed_inactive:
        return None, cpu.select_topk(saliency, layer.in_channels - layer.fixed_inactive)[0]
    return layer.select(saliency)


def _inference_statistics(layer: nn.Module, x: torch.Tensor) -> bool:
    """BatchNorm with running statistics in eval mode, on a batch-strided 4-d input at CPU inference."""
    return (not layer.training and x.dim() == 4 and cpu.batch_strided(x) and layer.norm.running_mean is not None
            and cpu.cpu_inference(x))


FUSED_CPU = Execution(
    "fused_cpu", fused_cpu, lambda layer, x: is_1x1(layer) and fixed_selection(layer, x) and cpu.cpu_inference(x),
    "a 1x1 conv without padding, a fixed n_in, float32 CPU input, "
    "autograd off, and the C++ kernels built", auto=lambda layer, x: gather_pays(layer, x) and not training(layer),
    fallback="sparse", differentiable=False, select=_select_topk)
BNRELU_MEAN = Execution(
    "bnrelu_mean", lambda layer, x: cpu.bnrelu_mean(x, *cpu.bn_affine(layer.norm)),
    lambda layer, x: x.dim() == 4 and x.shape[2] * x.shape[3] > 0 and _inference_statistics(layer, x),
    "eval mode, CPU inference of a float32 NCHW input", differentiable=False)


def _packed(layer: DGCConv2d) -> tuple[torch.Tensor, ...]:
    """The layer's weights as `cpu.dgc_layer` reads them, kept on the layer until a parameter or BN
    statistic changes (its data_ptr or version); inference tensors have no version: packed every call."""
    sources = [p for head in layer.heads for p in (head.gate.fc1.weight, head.gate.fc2.weight,
                                                   head.gate.fc2.bias, head.weight)]
    if layer.preact:
        norm = layer.norm
        sources += [t for t in (norm.weight, norm.bias, norm.running_mean, norm.running_var) if t is not None]
    try:
        key = tuple((t.data_ptr(), t._version) for t in sources)
    except RuntimeError:  # an inference tensor: "Inference tensors do not track version counter"
        key = None
    if key is not None and (cached := getattr(layer, "_cpu_packed", None)) and cached[0] == key:
        return cached[1]
    with torch.no_grad():
        packed = (torch.stack([h.gate.fc1.weight for h in layer.heads]).float().contiguous(),  # w1 (H, S, C)
                  torch.stack([h.gate.fc2.weight for h in layer.heads]).float().contiguous(),  # w2 (H, C, S)
                  torch.stack([h.gate.fc2.bias for h in layer.heads]).float().contiguous(),  # b2 (H, C)
                  layer.head_weights().float().permute(0, 2, 3, 4, 1).contiguous(),  # wt (H, C, kh, kw, Co)
                  *(cpu.bn_affine(layer.norm) if layer.preact else (None, None)))
    layer._cpu_packed = (key, packed) if key is not None else None
    return packed


def fused_layer_cpu(layer: DGCConv2d, x: torch.Tensor) -> torch.Tensor:
    """The whole layer in one C++ call (`cpu.dgc_layer`); its report as the steps write it."""
    w1, w2, b2, wt, bn_scale, bn_shift = _packed(layer)
    out, saliency, kept = cpu.dgc_layer(x, bn_scale, bn_shift, w1, w2, b2, wt, layer.in_channels - layer.n_inactive,
                                        layer.stride, layer.padding)
    layer.report.record(layer, saliency, None, kept)
    return out


def _fused_layer_applies(layer: DGCConv2d, x: torch.Tensor) -> bool:
    """Head-wise selection with n_in fixed, zero padding and no dilation, on a batch-strided float32
    NCHW input at CPU inference (eval-mode BatchNorm where the layer has its pre-activation)."""
    return (layer.selection == "head" and layer.fixed_inactive is not None and layer.dilation == (1, 1)
            and x.dim() == 4 and cpu.batch_strided(x) and (not layer.preact or _inference_statistics(layer, x))
            and cpu.cpu_inference(x))


FUSED_LAYER_CPU = Execution(
    "fused_layer_cpu", fused_layer_cpu, _fused_layer_applies, "head-wise selection with a fixed n_in, eval-mode "
    "BatchNorm, CPU inference of a float32 NCHW input, and the C++ kernels built",
    auto=lambda layer, x: layer.execution == "auto", differentiable=False)


# -- BNReLUConv2d -----------------------------------------------------------------------------
def _direct_conv_fits(layer: BNReLUConv2d, x: torch.Tensor) -> bool:
    """A grouped conv at stride 1 (zero padding) on a 4-d input: the shapes the two kernels take."""
    conv = layer.conv
    return (conv.groups > 1 and conv.stride == (1, 1) and conv.dilation == (1, 1)
            and isinstance(conv.padding, tuple) and conv.padding_mode == "zeros" and _inference_statistics(layer, x))


def fused_group_1x1(layer: BNReLUConv2d, x: torch.Tensor) -> torch.Tensor:
    """A shuffled 1x1 group conv as a DGC 1x1 conv whose heads keep group g's channels at saliency 1
    (the same interleaved output): BN-ReLU, then the fused 1x1 kernel (faster on 1x1s than the direct conv)."""
    y, _ = cpu.bnrelu_mean(x, *cpu.bn_affine(layer.norm))
    b, c = x.shape[:2]
    groups = layer.conv.groups
    c_group, c_out = c // groups, layer.conv.out_channels // groups
    channels = torch.arange(c).view(groups, c_group)  # (G, C/G): group g's input channels
    weight = x.new_zeros(groups, c_out, c)  # each group's weight placed at its own channels
    weight.scatter_(2, channels[:, None, :].expand(groups, c_out, c_group),
                    layer.conv.weight.view(groups, c_out, c_group))
    idx = channels.expand(b, groups, c_group).contiguous()
    return cpu.fused_1x1(y, weight, idx, x.new_ones(b, groups, c_group))


def _direct_applies(layer: BNReLUConv2d, x: torch.Tensor) -> bool:
    """Groups of at most 8 output channels and output rows of at least 8 positions: where the direct
    conv was measured faster than oneDNN's grouped conv (docs/design.md, CPU kernels)."""
    conv = layer.conv
    return (_direct_conv_fits(layer, x) and conv.out_channels // conv.groups <= 8
            and x.shape[-1] + 2 * conv.padding[1] - conv.kernel_size[1] + 1 >= 8)


FUSED_GROUP_1X1 = Execution(
    "fused_group_1x1", fused_group_1x1,
    lambda layer, x: layer.shuffle and layer.conv.kernel_size == (1, 1) and layer.conv.padding == (0, 0)
    and _direct_conv_fits(layer, x), "a shuffled 1x1 group conv at CPU inference", differentiable=False)
BNRELU_GROUP_CONV = Execution(
    "bnrelu_group_conv", lambda layer, x: cpu.bnrelu_group_conv(
        x, layer.conv.weight, *cpu.bn_affine(layer.norm), layer.conv.padding, layer.conv.groups, layer.shuffle),
    _direct_applies, "a group conv of narrow groups and wide rows at CPU inference", differentiable=False)

# -- AvgPool2x2 -------------------------------------------------------------------------------
AVG_POOL2 = Execution(
    "avg_pool2", lambda layer, x: cpu.avg_pool2(x),
    lambda layer, x: x.dim() == 4 and x.is_contiguous() and x.shape[2] >= 2 and x.shape[3] >= 2
    and cpu.cpu_inference(x), "a contiguous float32 input at CPU inference", differentiable=False)


def use_cpu_kernels(model: nn.Module) -> nn.Module:
    """Give every layer of `model` its CPU kernel executions (see the module docstring); returns it."""
    for module in model.modules():
        if isinstance(module, DGCConv2d):
            module.forwards = module.forwards.extended(FUSED_LAYER_CPU)
            module.executions = module.executions.extended(FUSED_CPU)
            module.preactivations = module.preactivations.extended(BNRELU_MEAN)
        elif isinstance(module, BNReLUConv2d):
            module.executions = module.executions.extended(FUSED_GROUP_1X1, BNRELU_GROUP_CONV)
        elif isinstance(module, AvgPool2x2):
            module.executions = module.executions.extended(AVG_POOL2)
    return model
