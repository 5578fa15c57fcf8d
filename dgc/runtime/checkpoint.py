"""Checkpoints that rebuild their model from the file alone (registry name, `model_args`, state_dict,
settings) and load with weights_only=True; `checkpoint.pt` adds what resuming needs. Writes are atomic."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dgc.errors import DGCError
from dgc.io import write_atomic


class CheckpointError(DGCError, ValueError):
    """A checkpoint that cannot be read or does not describe a model."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    return write_atomic(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist: run the train stage first")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle/zip errors come in many types
        raise CheckpointError(f"{path} is not a readable checkpoint (damaged, or not one of `dgc train`'s): "
                              f"{_why(exc)}") from None


def _why(exc: Exception) -> str:
    """What went wrong in a few words: the unpickler's reason, without PyTorch's weights_only advice."""
    text = str(exc).strip()
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", text, flags=re.S)
    reason = (found.group(1) if found else (text.splitlines() or [""])[0]).strip()
    return f"{type(exc).__name__}: {' '.join(reason.split())[:160]}"


def model_payload(model: nn.Module) -> dict[str, Any]:
    """The part of a checkpoint that rebuilds the model: name, constructor arguments, weights."""
    return {"model_name": model.model_name, "model_args": dict(model.model_args),
            "state_dict": model.state_dict()}


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[nn.Module, dict]:
    """(model, checkpoint) from a checkpoint file: the model it describes rebuilt, its weights loaded."""
    from dgc.models import create_model

    checkpoint = load_checkpoint(path, map_location)
    try:
        name, args, state = checkpoint["model_name"], dict(checkpoint["model_args"]), checkpoint["state_dict"]
    except KeyError as exc:
        raise CheckpointError(f"checkpoint lacks {exc.args[0]!r}") from None
    model = create_model(name, **args)
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:  # missing, unexpected or mis-shaped weights
        detail = " ".join(str(exc).split())[:300]
        raise CheckpointError(f"the weights do not fit model {name!r}: {detail}") from None
    return model, checkpoint
