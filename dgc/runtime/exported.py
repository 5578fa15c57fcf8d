"""A model's exported forms: a torch.export program (.pt2) and an ONNX model, which ONNX Runtime runs on the CPU.
DGC's selection stays data-dependent (saliencies and top-k in the graph; nothing pruned); the C++ kernels stay off.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from dgc.layers import DGCConv2d
from dgc.layers.executions import is_1x1

BATCH = "batch"  # the name of the exported programs' dynamic dimension


def export_execution(layer: DGCConv2d, dynamic_batch: bool = True) -> str:
    """The execution a DGC layer exports with: its own, except that k x k layers export `masked` with a
    dynamic batch (their gathers group a conv over the batch, and an ONNX Conv's groups are a constant) and
    DGC-G layers, whose gathers read the kept count on the host, `masked` (k x k) or `scaled_weight` (1x1)."""
    if not is_1x1(layer) and (dynamic_batch or layer.selection == "global"):
        return "masked"
    return "scaled_weight" if layer.selection == "global" else layer.execution


@contextlib.contextmanager
def export_executions(model: nn.Module, dynamic_batch: bool = True) -> Iterator[nn.Module]:
    """Within the block every DGC layer runs its `export_execution` and the CPU kernels are off."""
    from dgc.kernels.cpu import kernels_off

    layers = [m for m in model.modules() if isinstance(m, DGCConv2d)]
    saved = [layer.execution for layer in layers]
    for layer in layers:
        layer.execution = export_execution(layer, dynamic_batch)
    try:
        with kernels_off():
            yield model
    finally:
        for layer, execution in zip(layers, saved):
            layer.execution = execution


def export_program(model: nn.Module, example: torch.Tensor, dynamic_batch: bool = True) -> torch.export.ExportedProgram:
    """torch.export of the eval-mode `model` for inputs like `example` (N, C, H, W), the batch dynamic or, with
    `dynamic_batch=False`, fixed at N. A batch of 1 is traced as 2 (torch.export specialises sizes 0 and 1)."""
    model.eval()
    if dynamic_batch and example.shape[0] < 2:
        example = example.expand(2, *example.shape[1:]).contiguous()
    shapes = ({0: torch.export.Dim(BATCH, min=1)},) if dynamic_batch else None
    with export_executions(model, dynamic_batch), torch.no_grad():
        return torch.export.export(model, (example,), dynamic_shapes=shapes)


def onnx_model(program: torch.export.ExportedProgram):
    """The program as an `onnx.ModelProto` (torch.onnx's dynamo exporter), input `x`, output `logits`."""
    with warnings.catch_warnings():  # the exporter's own notes on its translation
        warnings.simplefilter("ignore")
        onnx_program = torch.onnx.export(program, input_names=["x"], output_names=["logits"],
                                         dynamo=True, verbose=False)
    return onnx_program.model_proto


def save_onnx(model_proto, path: str | Path) -> Path:
    """Write an ONNX model to `path` atomically."""
    import onnx

    from dgc.io import atomic_path

    with atomic_path(path) as tmp:
        onnx.save(model_proto, str(tmp))
    return Path(path)


def ort_session(model: str | Path | bytes, threads: int | None = None, spinning: bool = False,
                profile_prefix: str | None = None):
    """An ONNX Runtime CPU session for an ONNX model (a file or its bytes), `threads` intra-op threads (default
    torch's), all graph optimisations. `spinning`: idle threads busy-wait (faster alone, but they take the cores
    from what runs next). `profile_prefix`: ORT's profiler on, `session.end_profiling()` writing its JSON."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


class OrtForward:
    """An ONNX Runtime session called like the model: a tensor (N, C, H, W) in, the logits out."""

    def __init__(self, session) -> None:
        self.session = session
        self.input = session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {self.input: array})[0])


def onnx_forward(model: nn.Module, example: torch.Tensor, threads: int | None = None,
                 spinning: bool = False, dynamic_batch: bool = True, profile_prefix: str | None = None) -> OrtForward:
    """`model` exported (export_program, onnx_model) and opened in ONNX Runtime in memory (see ort_session)."""
    proto = onnx_model(export_program(model, example, dynamic_batch))
    return OrtForward(ort_session(proto.SerializeToString(), threads, spinning, profile_prefix))
