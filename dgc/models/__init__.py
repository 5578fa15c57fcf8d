"""Model zoo: DGC networks of the paper and their dense and static-group baselines."""

from dgc.models.densenet import DenseNet
from dgc.models.mobilenetv2 import MobileNetV2
from dgc.models.registry import MODELS, create_model, family, list_models, model_arguments, model_defaults
from dgc.models.resnet import ResNet

__all__ = ["MODELS", "DenseNet", "MobileNetV2", "ResNet", "create_model", "family", "list_models",
           "model_arguments", "model_defaults"]
