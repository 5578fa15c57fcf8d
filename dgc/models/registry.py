"""The model registry: a name -> a factory with the authors' configuration as its defaults, built by
`create_model(name, num_classes, **overrides)` (the settings of dgc/model_names.py)."""

from __future__ import annotations

import inspect
from typing import Callable, Sequence

from torch import nn

from dgc.errors import DGCError
from dgc.model_names import ModelError, family, list_models, model_arguments  # noqa: F401 (family: re-exported)
from dgc.models import convs
from dgc.models.densenet import DenseNet
from dgc.models.mobilenetv2 import DEFAULT_BLOCKS as MOBILENETV2_BLOCKS
from dgc.models.mobilenetv2 import MobileNetV2, check_pointwise_divisor
from dgc.models.resnet import ResNet

DENSENET86_GROWTH = (8, 16, 32)  # DenseNet-86 (CondenseNet-86 topology)
DENSENET86_DEPTH = (14, 14, 14)
CONDENSENET74_GROWTH = (8, 16, 32, 64, 128)
CONDENSENET74_DEPTH = (4, 6, 8, 10, 8)


def densenet86_dgc(num_classes: int, stem: str = "cifar", growth: Sequence[int] = DENSENET86_GROWTH,
                   depth: Sequence[int] = DENSENET86_DEPTH, heads: int = 4, gate_factor: float = 0.25,
                   squeeze_rate: int = 16, selection: str = "head") -> DenseNet:
    """The paper's CIFAR model: DenseNet-86 with every 1x1 conv a DGC layer (4 heads, g 0.25)."""
    layer = convs.dgc(heads, gate_factor, squeeze_rate, selection=selection)
    return DenseNet(num_classes, layer, growth, depth, stem)


def densenet86(num_classes: int, stem: str = "cifar", growth: Sequence[int] = DENSENET86_GROWTH,
               depth: Sequence[int] = DENSENET86_DEPTH) -> DenseNet:
    """Dense baseline: the same topology with plain BN-ReLU-1x1 convs."""
    return DenseNet(num_classes, convs.preact(), growth, depth, stem)


def densenet86_gc(num_classes: int, stem: str = "cifar", growth: Sequence[int] = DENSENET86_GROWTH,
                  depth: Sequence[int] = DENSENET86_DEPTH, groups: int = 4) -> DenseNet:
    """Static group-conv baseline: 1x1 convs as fixed 4-group convs (DGC's cost at g 0.25), shuffled."""
    return DenseNet(num_classes, convs.preact(groups), growth, depth, stem)


def condensenet74_dgc(num_classes: int, stem: str = "imagenet", growth: Sequence[int] = CONDENSENET74_GROWTH,
                      depth: Sequence[int] = CONDENSENET74_DEPTH, heads: int = 4, gate_factor: float = 0.25,
                      squeeze_rate: int = 16, selection: str = "head") -> DenseNet:
    """The paper's ImageNet DenseNet: CondenseNet-74 topology with DGC 1x1 convs."""
    layer = convs.dgc(heads, gate_factor, squeeze_rate, selection=selection)
    return DenseNet(num_classes, layer, growth, depth, stem)


def densenet86_dgcg(num_classes: int, stem: str = "cifar",
                    growth: Sequence[int] = DENSENET86_GROWTH, depth: Sequence[int] = DENSENET86_DEPTH,
                    heads: int = 4, gate_factor: float = 0.25, squeeze_rate: int = 16) -> DenseNet:
    """DGC-G (the paper's Sec. 6.1): densenet86_dgc with one global saliency threshold over all DGC layers."""
    return densenet86_dgc(num_classes, stem, growth, depth, heads, gate_factor, squeeze_rate, "global")


def condensenet74_dgcg(num_classes: int, stem: str = "imagenet", growth: Sequence[int] = CONDENSENET74_GROWTH,
                       depth: Sequence[int] = CONDENSENET74_DEPTH, heads: int = 4, gate_factor: float = 0.25,
                       squeeze_rate: int = 16) -> DenseNet:
    """DGC-G on ImageNet (the paper's "CondenseNet + DGC-G"): condensenet74_dgc, global threshold."""
    return condensenet74_dgc(num_classes, stem, growth, depth, heads, gate_factor, squeeze_rate, "global")


def resnet18_dgc(num_classes: int, stem: str = "imagenet", width: int = 64,
                 blocks: Sequence[int] = (2, 2, 2, 2), heads: int = 4, gate_factor: float = 0.45,
                 squeeze_rate: int = 16) -> ResNet:
    """ResNet-18 with every 3x3 conv and downsample 1x1 conv a DGC layer (4 heads, g 0.45)."""
    layer = convs.dgc(heads, gate_factor, squeeze_rate)
    return ResNet(num_classes, layer, layer, blocks, width, stem)


def resnet18(num_classes: int, stem: str = "imagenet", width: int = 64,
             blocks: Sequence[int] = (2, 2, 2, 2)) -> ResNet:
    """Dense ResNet-18 (torchvision layout)."""
    return ResNet(num_classes, convs.plain, convs.plain, blocks, width, stem)


def resnet18_gc(num_classes: int, stem: str = "imagenet", width: int = 64,
                blocks: Sequence[int] = (2, 2, 2, 2), groups: int = 4) -> ResNet:
    """Static group-conv baseline: every 3x3 conv a fixed 4-group conv (shuffled), dense downsample."""
    return ResNet(num_classes, convs.grouped(groups), convs.plain, blocks, width, stem)


def mobilenetv2_dgc(num_classes: int, stem: str = "imagenet", width: float = 1.0,
                    blocks: Sequence[int] = MOBILENETV2_BLOCKS, heads: int = 4,
                    gate_factor: float = 0.5, squeeze_rate: int = 16) -> MobileNetV2:
    """MobileNetV2 with both 1x1 convs of every block a DGC layer without pre-activation (g 0.5)."""
    check_pointwise_divisor("heads", heads, width, blocks)
    return MobileNetV2(num_classes, convs.dgc(heads, gate_factor, squeeze_rate, preact=False), blocks, width, stem)


def mobilenetv2(num_classes: int, stem: str = "imagenet", width: float = 1.0,
                blocks: Sequence[int] = MOBILENETV2_BLOCKS) -> MobileNetV2:
    """Dense MobileNetV2."""
    return MobileNetV2(num_classes, convs.plain, blocks, width, stem)


def mobilenetv2_gc(num_classes: int, stem: str = "imagenet", width: float = 1.0,
                   blocks: Sequence[int] = MOBILENETV2_BLOCKS, groups: int = 2) -> MobileNetV2:
    """Static group-conv baseline: both 1x1 convs fixed 2-group convs (DGC's cost at g 0.5), shuffled."""
    check_pointwise_divisor("groups", groups, width, blocks)
    return MobileNetV2(num_classes, convs.grouped(groups), blocks, width, stem)


# The factories by name; their names and settings are those of dgc/model_names.py.
MODELS: dict[str, Callable[..., nn.Module]] = {
    f.__name__: f for f in (densenet86_dgc, densenet86_dgcg, densenet86, densenet86_gc,
                            condensenet74_dgc, condensenet74_dgcg,
                            resnet18_dgc, resnet18, resnet18_gc,
                            mobilenetv2_dgc, mobilenetv2, mobilenetv2_gc)
}


def model_defaults(name: str) -> dict:
    """The default of every override of model `name` (the authors' configuration)."""
    allowed = model_arguments(name)  # an unknown name: ModelError
    return {p.name: p.default for p in inspect.signature(MODELS[name]).parameters.values() if p.name in allowed}


def create_model(name: str, num_classes: int, **overrides) -> nn.Module:
    """Build model `name` with `overrides`; it carries `model_name` and `model_args` (all a checkpoint needs)."""
    allowed = model_arguments(name)  # an unknown name: ModelError; else the factory's own parameters
    unknown = sorted(set(overrides) - set(allowed))
    if unknown:
        raise ModelError(f"model {name!r} has no setting {unknown[0]!r}; "
                         f"its settings are: {', '.join(allowed)}")
    if int(num_classes) != num_classes or num_classes < 1:
        raise ModelError(f"num_classes must be a positive integer, got {num_classes!r}")
    args = {k: (list(v) if isinstance(v, tuple) else v) for k, v in overrides.items()}
    try:
        model = MODELS[name](int(num_classes), **overrides)
    except (ValueError, TypeError) as exc:  # the layers check their arguments with ValueError
        if not overrides or isinstance(exc, DGCError):  # the authors' configuration must build
            raise
        settings = ", ".join(f"{k}={v!r}" for k, v in overrides.items())
        raise ModelError(f"{exc} (building {name} with {settings})") from exc
    model.model_name = name
    model.model_args = {"num_classes": int(num_classes), **args}
    return model
