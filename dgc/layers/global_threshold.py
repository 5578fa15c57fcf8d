"""DGC-G (the paper's Sec. 6.1): one saliency threshold T for every DGC layer of a model, the quantile
of G (the detached saliencies of each epoch's last `window` iterations) at the schedule's pruned fraction,
set every iteration on the device (docs/design.md, "DGC-G"); T = 0 (keep all) before G's first table."""

from __future__ import annotations

import torch
from torch import nn

from dgc.layers.dgc_conv import DGCConv2d, dgc_layers
from dgc.layers.pruning_schedule import pruned_fraction


def global_layers(model: nn.Module) -> list[DGCConv2d]:
    return [layer for layer in dgc_layers(model) if layer.selection == "global"]


class GlobalThreshold:
    """Drives the DGC-G layers of `model` during training (see the module docstring)."""

    def __init__(self, model: nn.Module, window: int = 10, resolution: int = 1000) -> None:
        if window < 1:
            raise ValueError(f"the DGC-G window must be at least one iteration, got {window}")
        self.layers = global_layers(model)
        if not self.layers:
            raise ValueError("the model has no DGC-G layer (selection='global')")
        gates = {layer.gate_factor for layer in self.layers}
        if len(gates) != 1:
            raise ValueError(f"DGC-G layers must share one gate factor, got {sorted(gates)}")
        self.gate_factor = gates.pop()
        self.window, self.resolution = window, resolution
        self.quantiles: torch.Tensor | None = None  # (resolution + 1,) quantiles of G

    def before_step(self, progress: float, step_in_epoch: int, steps_in_epoch: int) -> None:
        """Set T for `progress`, and collect saliencies during the epoch's last `window` steps."""
        collect = step_in_epoch >= steps_in_epoch - self.window
        for layer in self.layers:
            layer.report.collect = collect
        self.apply(progress)

    def apply(self, progress: float) -> None:
        """Set every DGC-G layer's threshold to the quantile of G at the pruned fraction of `progress`."""
        if self.quantiles is None:
            return  # no sample yet: T stays 0 and every channel is kept
        fraction = pruned_fraction(self.gate_factor, progress)
        t = self.quantiles[round(fraction * self.resolution)]
        for layer in self.layers:
            layer.threshold.copy_(t)

    def end_epoch(self, progress: float) -> None:
        """Summarise the saliencies collected this epoch into the quantile table; set T anew."""
        collected = [s for layer in self.layers for s in layer.report.saliencies]
        for layer in self.layers:
            layer.report.collect, layer.report.saliencies = False, []
        if not collected:
            return
        sample = torch.cat(collected).float().sort().values  # G, every DGC-G saliency of the window
        positions = torch.linspace(0, sample.numel() - 1, self.resolution + 1, device=sample.device)
        self.quantiles = sample[positions.round().long()]
        self.apply(progress)

    def state_dict(self) -> dict:
        return {"quantiles": None if self.quantiles is None else self.quantiles.cpu()}

    def load_state_dict(self, state: dict) -> None:
        q = state.get("quantiles")
        self.quantiles = None if q is None else q.to(self.layers[0].threshold.device)
