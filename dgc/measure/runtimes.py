"""Inference latency per runtime of `evaluate.runtimes` (dgc/config.py RUNTIMES), and the fastest:
`eager` (the model as loaded: on the CPU the C++ kernels), `compiled` (torch.compile; also timed where
`evaluate.compile` compiles) and `onnxruntime` (ONNX at each static batch size, on the CPU only).
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from dgc.measure.latency import inference_latency

Forward = Callable[[torch.Tensor], torch.Tensor]


def runtimes_to_time(runtimes: tuple[str, ...], compile_setting: str, device: torch.device) -> list[str]:
    """The runtimes to time: `runtimes`, plus `compiled` where `compile_setting` compiles on `device`."""
    from dgc.runtime.compile import resolve_compile

    compiles = resolve_compile(compile_setting, device) is not None and "compiled" not in runtimes
    return list(runtimes) + (["compiled"] if compiles else [])


def latency_by_runtime(model: nn.Module, device: torch.device, runtimes: list[str], compile_setting: str,
                       batch_sizes: tuple[int, ...], input_size: tuple[int, int, int], repeats: int,
                       log=print) -> dict[str, Any]:
    """{"ms": {runtime: {"batch_<b>": ms per image}}, "compile": the compiled runtime's mode ('off' when
    it fell back or did not run), "skipped": {runtime: why}, "onnx_max_rel_diff": see _onnx_forward}."""
    from dgc.runtime.compile import Compiled, resolve_compile

    model.eval().to(device)
    mode = resolve_compile(compile_setting, device) or "default"  # the `compiled` runtime's torch.compile mode
    ms: dict[str, dict[str, float]] = {}
    skipped: dict[str, str] = {}
    compiled_mode, onnx_diff = "off", None
    for runtime in runtimes:
        if runtime == "onnxruntime" and device.type != "cpu":
            skipped[runtime] = f"ONNX Runtime runs on the CPU here, the latency device is {device.type}"
            continue
        ms[runtime] = row = {}
        compiled = Compiled(model, mode, log=log) if runtime == "compiled" else None
        for b in batch_sizes:
            forward: Forward | None = compiled  # None: the model itself
            if runtime == "onnxruntime":
                forward, diff = _onnx_forward(model, b, input_size)
                onnx_diff = diff if onnx_diff is None else max(onnx_diff, diff)
            row[f"batch_{b}"] = inference_latency(model, device, b, input_size, repeats, forward,
                                                  warmup=5 if compiled else 2)
        if compiled is not None and compiled.compiled:
            compiled_mode = compiled.mode
    return {"ms": ms, "compile": compiled_mode, "skipped": skipped, "onnx_max_rel_diff": onnx_diff}


def _onnx_forward(model: nn.Module, batch: int, input_size: tuple[int, int, int]) -> tuple[Forward, float]:
    """The model in ONNX Runtime at a static batch, and max |logit - eager| / max |eager logit| on one input."""
    from dgc.runtime.exported import onnx_forward

    x = torch.randn(batch, *input_size, generator=torch.Generator().manual_seed(0))
    forward = onnx_forward(model, x, dynamic_batch=False)
    with torch.no_grad():
        eager = model(x)
        diff = float((forward(x) - eager).abs().max() / eager.abs().max().clamp_min(1e-30))
    return forward, diff


def fastest(ms: dict[str, dict[str, float]]) -> tuple[dict[str, float], dict[str, str]]:
    """Per batch size the smallest ms per image and the runtime that gave it (the first among equals)."""
    order = sorted({batch for row in ms.values() for batch in row}, key=lambda k: int(k.split("_")[1]))
    which = {b: min((r for r in ms if b in ms[r]), key=lambda r: ms[r][b]) for b in order}
    return {b: ms[which[b]][b] for b in order}, which
