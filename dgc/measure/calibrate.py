"""BatchNorm calibration before timing: with BatchNorm's initial statistics an untrained DGC model's saliency
gains compound and densenet86_dgc / resnet18_dgc (the authors' too) overflow to inf/NaN in eval mode.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor] | None = None,
                        input_size: Sequence[int] = (3, 32, 32), steps: int = 4, batch_size: int = 32,
                        device: torch.device | None = None) -> nn.Module:
    """Re-estimate every BatchNorm's running statistics (a cumulative average) from `batches`, or from `steps`
    batches of standard-normal images of `input_size`. Returns `model` in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    device = device or next((p.device for p in model.parameters()), torch.device("cpu"))
    saved = [(m, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the calibration batches
    if batches is None:
        generator = torch.Generator().manual_seed(0)
        batches = (torch.randn(batch_size, *input_size, generator=generator).to(device)
                   for _ in range(steps))
    was_training = model.training
    model.train()
    try:
        for x in batches:
            model(x)
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        model.train(was_training)
    return model.eval()


@torch.no_grad()
def check_finite(model: nn.Module, x: torch.Tensor) -> bool:
    """Whether `model` (as it is, e.g. in eval mode) gives finite outputs for `x`."""
    return bool(torch.isfinite(model(x)).all())


def ready_for_timing(model: nn.Module, input_size: Sequence[int], device: torch.device,
                     calibrate: bool = True) -> nn.Module:
    """`model` on `device` in eval mode, calibrated (unless `calibrate` is False: a trained checkpoint
    has its statistics); ValueError when its outputs are not finite."""
    model.to(device)
    if calibrate:
        calibrate_batchnorm(model, input_size=input_size, device=device)
    model.eval()
    x = torch.randn(2, *input_size, generator=torch.Generator().manual_seed(1)).to(device)
    if not check_finite(model, x):
        name = getattr(model, "model_name", type(model).__name__)
        raise ValueError(f"{name} gives non-finite outputs in eval mode: not timed")
    return model
