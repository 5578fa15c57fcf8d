"""The torch device a `device` setting names (`train.device`, `evaluate.device`, `dgc bench --device`)."""

from __future__ import annotations

import torch

from dgc.config import ConfigError


def resolve_device(spec: str) -> torch.device:
    """`auto`: CUDA when available, else the CPU; else as torch names it (CUDA without one: ConfigError)."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(spec)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device is {spec!r} but no CUDA device is available")
    return device
