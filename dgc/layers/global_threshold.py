"""DGC-G (the paper's Sec. 6.1 variant): one saliency threshold for every DGC layer of a model.

Instead of each head keeping exactly a fraction g of its input channels, all DGC-G layers' saliency
vectors form one sample G, and a channel is kept wherever its saliency reaches the threshold T at the
target percentile of G; pruning becomes uneven across samples, heads and layers.

Where the paper is silent, the simplest reading (docs/design.md, "DGC-G"):
- G is collected over the last `window` training iterations of each epoch (the author's reply), every
  saliency of every DGC-G layer, detached;
- at the end of the epoch G is summarised by its quantiles (a table of `resolution` + 1 values), and
  from then on T = the quantile of G at the schedule's pruned fraction (1 - g) * 1.5 * (p - 1/12)
  of the current progress p, set every iteration like n_in is for head-wise DGC (no host sync: an
  index into the table on the device);
- before the first table exists (the first epoch) T = 0, which keeps everything (saliencies >= 0);
- T is a buffer of every DGC-G layer, saved with the model: evaluation uses the saved value, as
  head-wise DGC uses its saved n_in.
"""

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
        self.window = window
        self.resolution = resolution
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
        device = self.layers[0].threshold.device
        self.quantiles = None if q is None else q.to(device)
