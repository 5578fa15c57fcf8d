"""Load checkpoints saved by the authors' code (zhuogege1943/dgc) into this project's models: their DGC layer's
and ResNet downsample BatchNorm's keys are renamed (_DGC_KEY_RULES), a DataParallel `module.` is dropped.
"""

from __future__ import annotations

import re
from typing import Mapping

import torch
from torch import nn

from dgc.errors import DGCError

# (their suffix pattern, our suffix template) inside one DGC layer.
_DGC_KEY_RULES = (
    (re.compile(r"^(?P<p>(.*\.)?)_inactive_channels$"), r"\g<p>inactive_channels"),
    (re.compile(r"^(?P<p>(.*\.)?)headconv_(?P<i>\d+)\.conv\.weight$"), r"\g<p>heads.\g<i>.weight"),
    (re.compile(r"^(?P<p>(.*\.)?)headconv_(?P<i>\d+)\.(?P<fc>fc[12])\.(?P<t>weight|bias)$"),
     r"\g<p>heads.\g<i>.gate.\g<fc>.\g<t>"),
    (re.compile(r"^(?P<p>.*\.downsample\.1)\.norm\.(?P<t>.*)$"), r"\g<p>.\g<t>"),
)


class OfficialCheckpointError(DGCError, ValueError):
    """A key of the authors' state_dict does not fit the model; the message names it."""


def translate_key(key: str) -> str:
    """Their key -> ours (the `module.` prefix removed)."""
    key = key.removeprefix("module.")
    for pattern, template in _DGC_KEY_RULES:
        if pattern.match(key):
            return pattern.sub(template, key)
    return key


def load_official_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> nn.Module:
    """Load the authors' `state_dict` into `model` (densenet86_dgc, condensenet74_dgc, resnet18_dgc) and return
    it; OfficialCheckpointError names the first key that is unknown, missing or of the wrong shape. `state_dict`
    may be a whole checkpoint of theirs, holding it as `state_dict` or `model`."""
    ours = model.state_dict()
    translated: dict[str, torch.Tensor] = {}
    theirs = next((state_dict[k] for k in ("state_dict", "model") if isinstance(state_dict.get(k), Mapping)),
                  state_dict)
    for key, value in theirs.items():
        target = translate_key(key)
        if target not in ours:
            raise OfficialCheckpointError(f"checkpoint key {key!r} has no counterpart in "
                                          f"{type(model).__name__} (looked for {target!r})")
        value = torch.as_tensor(value)
        expected = ours[target].shape
        if target.endswith("inactive_channels") and value.numel() == 1:
            value = value.reshape(expected).to(ours[target].dtype)
        if value.shape != expected:
            raise OfficialCheckpointError(f"checkpoint key {key!r} has shape {tuple(value.shape)}, "
                                          f"the model expects {tuple(expected)} at {target!r}")
        translated[target] = value
    missing = [k for k in ours if k not in translated]
    if missing:
        raise OfficialCheckpointError(f"checkpoint lacks {missing[0]!r} "
                                      f"({len(missing)} model keys missing in all)")
    model.load_state_dict(translated, strict=True)
    return model
