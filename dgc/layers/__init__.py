"""Layers: the DGC convolution, its executions, saliency generator and schedule, and the plain baselines."""

from dgc.layers.conv import AvgPool2x2, BNReLUConv2d, ShuffledGroupConv2d, channel_shuffle
from dgc.layers.dgc_conv import (DGCConv2d, DGCHead, ForwardReport, angle_loss, dgc_layers, set_progress,
                                 sparsity_loss)
from dgc.layers.dispatch import Execution, Executions
from dgc.layers.executions import DGC_EXECUTIONS, choose
from dgc.layers.global_threshold import GlobalThreshold, global_layers
from dgc.layers.gate import SaliencyGenerator, hidden_channels
from dgc.layers.pruning_schedule import inactive_channels

__all__ = [
    "AvgPool2x2", "BNReLUConv2d", "DGCConv2d", "DGCHead", "DGC_EXECUTIONS", "Execution", "Executions",
    "ForwardReport", "GlobalThreshold", "SaliencyGenerator", "ShuffledGroupConv2d", "angle_loss", "choose",
    "channel_shuffle", "dgc_layers", "global_layers", "hidden_channels", "inactive_channels", "set_progress",
    "sparsity_loss",
]
