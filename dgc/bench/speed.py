"""`dgc bench`: wall-clock cost of DGC next to the dense and static 4-group convs (DGC's FLOPs at g 0.25): layers
(batch 64, 4 heads, each DGC execution) at inference and a training step, whole models at batch 1 and 64; median
of `repeats`, round-robin, after BN calibration. Writes reports/bench.json and bench.md (shown in docs/speed.md).
"""

from __future__ import annotations

import platform
from typing import Any, Callable

import torch
from torch import nn

from dgc.kernels.cpu_layers import use_cpu_kernels
from dgc.measure.calibrate import ready_for_timing
from dgc.measure.flops import count_flops
from dgc.measure.latency import device_name, median_times
from dgc.measure.provenance import provenance
from dgc.stages.compare import markdown_table

LAYER_SHAPES = [(256, 128, 1, 16), (128, 128, 3, 16), (64, 64, 3, 32)]  # (C_in, C_out, kernel, map size)
MODEL_PAIRS = [("densenet86_dgc", "densenet86"), ("resnet18_dgc", "resnet18")]
DGC_PATHS = ("masked", "sparse", "scaled_weight", "auto")
CPU_PATHS = ("fused_cpu",)  # the C++ kernel (1x1 inference; elsewhere it runs 'sparse')
BATCH, HEADS, GATE = 64, 4, 0.25  # of the layers timed
RATIOS = {"auto_vs_dense": ("dgc_auto", "dense"), "auto_vs_group4": ("dgc_auto", "group4"),
          "masked_vs_dense": ("dgc_masked", "dense"), "group4_vs_dense": ("group4", "dense")}  # name: (a, b), a / b


def _layers(c_in: int, c_out: int, k: int, paths: tuple[str, ...]) -> dict[str, nn.Module]:
    from dgc.layers import BNReLUConv2d, DGCConv2d

    out: dict[str, nn.Module] = {}
    for path in paths:
        layer = DGCConv2d(c_in, c_out, k, padding=k // 2, heads=HEADS, gate_factor=GATE)
        layer.set_progress(1.0)
        layer.execution = path
        out[f"dgc_{path}"] = layer
    out["dense"] = BNReLUConv2d(c_in, c_out, k, padding=k // 2)
    out["group4"] = BNReLUConv2d(c_in, c_out, k, padding=k // 2, groups=4)
    return {name: use_cpu_kernels(module) for name, module in out.items()}


def _train_step(module: nn.Module, x: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        module.zero_grad(set_to_none=True)
        module(x.detach().requires_grad_()).sum().backward()
    return step


def bench_layers(device: torch.device, repeats: int = 10, log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    rows = []
    paths = DGC_PATHS[:-1] + (CPU_PATHS if device.type == "cpu" else ()) + DGC_PATHS[-1:]
    for c_in, c_out, k, size in LAYER_SHAPES:
        torch.manual_seed(0)
        x = torch.randn(BATCH, c_in, size, size, device=device)
        layers = {name: ready_for_timing(m, (c_in, size, size), device)
                  for name, m in _layers(c_in, c_out, k, paths).items()}
        with torch.no_grad():
            inference = median_times({n: (lambda m=m: m(x)) for n, m in layers.items()}, device, repeats)
        for m in layers.values():
            m.train()
        train = median_times({n: _train_step(m, x) for n, m in layers.items()}, device, repeats)
        row: dict[str, Any] = {"shape": f"{c_in}->{c_out}, {k}x{k}, {size}x{size}", "c_in": c_in, "c_out": c_out,
                               "kernel": k, "size": size, "inference_ms": {n: 1000 * v for n, v in inference.items()},
                               "train_ms": {n: 1000 * v for n, v in train.items()}}
        for mode in ("inference", "train"):
            ms = row[f"{mode}_ms"]
            row[f"{mode}_ratio"] = {name: ms[a] / ms[b] for name, (a, b) in RATIOS.items()}
        log(f"{row['shape']:24s} inference ms: " + "  ".join(f"{n} {v:.1f}" for n, v in row["inference_ms"].items()))
        log(f"{'':24s} train ms:     " + "  ".join(f"{n} {v:.1f}" for n, v in row["train_ms"].items()))
        rows.append(row)
    return rows


def bench_models(device: torch.device, batches: tuple[int, ...] = (1, 64), repeats: int = 10,
                 log: Callable[[str], None] = print) -> list[dict[str, Any]]:
    from dgc.layers import set_progress
    from dgc.models import create_model

    rows = []
    for pair in MODEL_PAIRS:
        models = {}
        for name in pair:
            torch.manual_seed(0)
            models[name] = model = use_cpu_kernels(create_model(name, 10, stem="cifar"))
            set_progress(model, 1.0)
            ready_for_timing(model, (3, 32, 32), device)
        per_batch = {}
        for b in batches:
            x = torch.randn(b, 3, 32, 32, device=device)
            with torch.no_grad():
                per_batch[b] = median_times({n: (lambda m=m: m(x)) for n, m in models.items()}, device, repeats)
        for name, model in models.items():
            flops = count_flops(model, (3, 32, 32))
            row = {"model": name, "flops_expected": flops["flops_expected"], "params": flops["params"],
                   "ms_per_image": {str(b): 1000 * per_batch[b][name] / b for b in batches}}
            log(f"{name:16s} " + "  ".join(f"batch {b}: {v:.2f} ms/img" for b, v in row["ms_per_image"].items()))
            rows.append(row)
    return rows


def run_bench(device: torch.device, repeats: int = 10, models: bool = True,
              log: Callable[[str], None] = print) -> dict[str, Any]:
    log(f"device: {device_name(device)}; torch {torch.__version__}; median of {repeats}")
    result: dict[str, Any] = {"provenance": provenance(device_name(device)),
                              "device": device_name(device), "torch": torch.__version__,
                              "python": platform.python_version(), "repeats": repeats,
                              "gate_factor": GATE, "heads": HEADS, "batch": BATCH,
                              "layers": bench_layers(device, repeats=repeats, log=log)}
    if models:
        result["models"] = bench_models(device, repeats=repeats, log=log)
    return result


def bench_markdown(result: dict[str, Any]) -> str:
    timed = ("dense", "group4", "dgc_masked", "dgc_sparse", "dgc_auto")
    layers = [[row["shape"], mode, *(f"{row[f'{mode}_ms'][k]:.1f}" for k in timed),
               *(f"{row[f'{mode}_ratio'][k]:.2f}" for k in ("auto_vs_dense", "auto_vs_group4"))]
              for row in result["layers"] for mode in ("inference", "train")]
    lines = [f"Device: {result['device']}, torch {result['torch']}, batch {result['batch']}, "
             f"{result['heads']} heads, g {result['gate_factor']}, median of {result['repeats']} runs.", "",
             *markdown_table("layer shape | mode | dense ms | static 4-group ms | DGC masked (authors) ms | "
                             "DGC sparse ms | DGC auto ms | auto / dense | auto / 4-group", layers)]
    if result.get("models"):
        lines += ["", *markdown_table("model | FLOPs expected | ms/image batch 1 | ms/image batch 64", [
            [row["model"], f"{row['flops_expected']:,}",
             *(f"{row['ms_per_image'].get(b, float('nan')):.2f}" for b in ("1", "64"))] for row in result["models"]])]
    return "\n".join(lines) + "\n"
