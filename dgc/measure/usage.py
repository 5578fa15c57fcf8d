"""What DGC layers actually do on real data: channels kept per head, FLOPs actually spent, and how
different the heads' choices are (the paper's analysis of heads).
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator

import torch
from torch import nn

from dgc.layers import DGCConv2d, dgc_layers


@contextlib.contextmanager
def recording(model: nn.Module) -> Iterator[list[DGCConv2d]]:
    """Within the block every DGC layer of `model` records its kept and active channels (`layer.report`)."""
    layers = dgc_layers(model)
    for layer in layers:
        layer.report.usage = True
    try:
        yield layers
    finally:
        for layer in layers:
            layer.report.usage, layer.report.kept, layer.report.active = False, None, None


def head_overlap(active: torch.Tensor) -> torch.Tensor:
    """Mean pairwise Jaccard overlap between the heads' channel sets, per sample: (B, H, C) -> (B,)."""
    a = active.float()  # (B, H, C)
    inter = torch.einsum("bhc,bgc->bhg", a, a)  # (B, H, H)
    sizes = a.sum(dim=2)  # (B, H)
    union = sizes[:, :, None] + sizes[:, None, :] - inter
    jaccard = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(inter))
    h = a.shape[1]
    if h < 2:
        return torch.ones(a.shape[0], device=a.device)
    off = ~torch.eye(h, dtype=torch.bool, device=a.device)
    return jaccard[:, off].mean(dim=1)


@torch.no_grad()
def measure_usage(model: nn.Module, batches: Iterable) -> dict:
    """Per DGC layer, averaged per image over `batches`: the fractions of input channels kept and actually
    used (kept AND saliency > 0), and the heads' overlap. {"images": N, "layers": [{...}, ...]}."""
    model.eval()
    names = {m: n for n, m in model.named_modules()}
    with recording(model) as layers:
        sums = {id(layer): torch.zeros(3, dtype=torch.float64) for layer in layers}  # kept, active, overlap
        images = 0
        for x, _ in batches:
            model(x)
            images += len(x)
            for layer in layers:
                active = layer.report.active  # (B, H, C)
                terms = [layer.report.kept.float().mean(dim=(1, 2)).sum(), active.float().mean(dim=(1, 2)).sum(),
                         head_overlap(active).sum()]
                sums[id(layer)] += torch.stack(terms).cpu().double()
    # kept: 1 - n_in / C_in per image for head-wise DGC, uneven for DGC-G
    return {"images": images, "layers": [
        {"name": names[layer], "in_channels": layer.in_channels, "out_channels": layer.out_channels,
         "kernel": layer.kernel_size[0], "selection": layer.selection,
         **dict(zip(("kept_fraction", "active_fraction", "head_overlap"), (sums[id(layer)] / max(images, 1)).tolist()))}
        for layer in layers]}
