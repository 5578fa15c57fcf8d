"""Wall-clock timing: median of repeated runs, synchronised on CUDA."""

from __future__ import annotations

import statistics
import time
from typing import Callable

import torch
from torch import nn

from dgc.errors import DGCError


class NonFiniteOutputs(DGCError, ValueError):
    """A model whose outputs overflow: its latency would time NaN arithmetic."""

    exit_status = 1


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously); nothing to wait for elsewhere."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"


def median_time(fn: Callable[[], object], device: torch.device, repeats: int = 10, warmup: int = 2) -> float:
    """Median seconds of `fn()` over `repeats` runs after `warmup` runs."""
    return median_times({"fn": fn}, device, repeats, warmup)["fn"]


@torch.no_grad()
def inference_latency(model: nn.Module, device: torch.device, batch_size: int,
                      input_size: tuple[int, int, int] = (3, 32, 32), repeats: int = 10,
                      forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
                      warmup: int = 2) -> float:
    """Median ms per image of an eval-mode forward at `batch_size` (through `forward` when given), after a check
    that its outputs are finite and `warmup` untimed calls."""
    model.eval().to(device)
    forward = model if forward is None else forward
    x = torch.randn(batch_size, *input_size, device=device)
    if not torch.isfinite(forward(x)).all():  # a model that overflows would time NaN arithmetic
        raise NonFiniteOutputs(f"{getattr(model, 'model_name', 'the model')} gives non-finite outputs: "
                               f"latency not measured")
    return 1000.0 * median_time(lambda: forward(x), device, repeats, warmup) / batch_size


def median_times(fns: dict[str, Callable[[], object]], device: torch.device, repeats: int = 10,
                 warmup: int = 2) -> dict[str, float]:
    """Median seconds of each callable, timed round-robin so that machine noise hits every one alike."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(warmup + repeats):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}
