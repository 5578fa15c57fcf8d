"""The registered models and the settings each takes, known without importing any model code (so checking
params.yaml does not depend on it); tests/test_models.py checks the factories' signatures match."""

from __future__ import annotations

from dgc.errors import DGCError


class ModelError(DGCError, ValueError):
    """An unknown model name or a model setting it cannot be built with; the message names it."""


_DENSENET = ("stem", "growth", "depth")
_WIDTH = ("stem", "width", "blocks")  # ResNet-18 and MobileNetV2
_DGC = ("heads", "gate_factor", "squeeze_rate")

MODEL_SETTINGS: dict[str, tuple[str, ...]] = {
    "densenet86_dgc": (*_DENSENET, *_DGC, "selection"),
    "densenet86_dgcg": (*_DENSENET, *_DGC),
    "densenet86": _DENSENET,
    "densenet86_gc": (*_DENSENET, "groups"),
    "condensenet74_dgc": (*_DENSENET, *_DGC, "selection"),
    "condensenet74_dgcg": (*_DENSENET, *_DGC),
    "resnet18_dgc": (*_WIDTH, *_DGC),
    "resnet18": _WIDTH,
    "resnet18_gc": (*_WIDTH, "groups"),
    "mobilenetv2_dgc": (*_WIDTH, *_DGC),
    "mobilenetv2": _WIDTH,
    "mobilenetv2_gc": (*_WIDTH, "groups"),
}


def list_models() -> list[str]:
    """Names accepted by `dgc.models.create_model`, sorted."""
    return sorted(MODEL_SETTINGS)


def model_arguments(name: str) -> list[str]:
    """The override names model `name` accepts (besides num_classes)."""
    if name not in MODEL_SETTINGS:
        raise ModelError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    return list(MODEL_SETTINGS[name])


def family(model: str) -> str:
    """A registered model's convolution family from its name: dgc, dgcg (DGC-G), gc (static group) or dense."""
    return next((suffix for suffix in ("dgcg", "dgc", "gc") if model.endswith("_" + suffix)), "dense")
