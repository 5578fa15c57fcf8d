"""Whole-model inference on the CPU: DGC models next to their dense and static-group counterparts.

For each model: full width, CIFAR stem, DGC at its target n_in, BatchNorm calibrated (finite outputs
checked), ms per image at each batch size in every setting: eager NCHW (with the C++ CPU kernels of
dgc/kernels/cpu.py where they apply: a whole DGC layer in one call `dgc_layer`, BN-ReLU-group conv,
pooling), eager NCHW without them ("eager no kernels"), eager channels_last (the kernels do not
apply), `torch.compile` (inductor, mode 'default', NCHW; the compiler traces the PyTorch executions)
and ONNX Runtime ("onnxruntime": the model exported by dgc/runtime/exported.py at that batch size, a
static batch, so that k x k DGC layers keep their gather execution; CPU provider, the same threads,
no spinning). The candidates are timed round-robin in one process so the ratios share conditions;
compile and export seconds are recorded apart. Ratios compare the fastest setting of each model.

    .venv/bin/python benchmarks/cpu_inference.py [--threads 2] [--batches 64 1] [--repeats 10]
        [--json reports/cpu_inference.json] [--no-compile] [--no-onnx] [--no-channels-last] [--models ...]

Writes the JSON given by --json (docs/speed.md's is reports/cpu_inference.json); dgc/bench/registry.py renders it in docs/speed.md.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

import torch

from dgc.io import write_json_atomic
from dgc.kernels.cpu import kernels_off
from dgc.kernels.cpu_layers import use_cpu_kernels
from dgc.layers import set_progress
from dgc.measure.calibrate import ready_for_timing
from dgc.measure.latency import device_name, median_times
from dgc.measure.provenance import provenance
from dgc.models import create_model
from dgc.runtime.exported import onnx_forward

PAIRS = [("densenet86_dgc", "densenet86"), ("resnet18_dgc", "resnet18"), ("mobilenetv2_dgc", "mobilenetv2")]
BASELINES_GC = ["densenet86_gc", "resnet18_gc", "mobilenetv2_gc"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 1])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--no-onnx", action="store_true", help="skip ONNX Runtime")
    parser.add_argument("--no-channels-last", action="store_true", help="skip the channels_last eager runs")
    parser.add_argument("--models", nargs="+",
                        default=[m for pair in PAIRS for m in pair] + BASELINES_GC)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    models = {}
    for name in args.models:
        torch.manual_seed(0)
        model = use_cpu_kernels(create_model(name, 10, stem="cifar"))
        set_progress(model, 1.0)
        models[name] = ready_for_timing(model, (3, 32, 32), device)
    result = {"provenance": provenance(device_name(device)), "device": device_name(device),
              "torch": torch.__version__, "repeats": args.repeats, "ms_per_image": {},
              "compile_seconds": {}, "export_seconds": {}}
    models_cl = {} if args.no_channels_last else {
        n: copy.deepcopy(m).to(memory_format=torch.channels_last) for n, m in models.items()}
    with torch.inference_mode():
        compiled = {}
        if not args.no_compile:
            for name, model in models.items():
                fn = torch.compile(model)
                start = time.perf_counter()
                fn(torch.randn(args.batches[0], 3, 32, 32))  # compile (each batch size compiles once)
                result["compile_seconds"][name] = time.perf_counter() - start
                compiled[name] = fn
                print(f"compiled {name} in {result['compile_seconds'][name]:.1f} s", flush=True)
        for batch in args.batches:
            x = torch.randn(batch, 3, 32, 32)
            fns = {f"{n} eager": (lambda m=m: m(x)) for n, m in models.items()}
            fns.update({f"{n} eager no kernels": (lambda m=m: _without_kernels(m, x))
                        for n, m in models.items()})
            x_cl = x.contiguous(memory_format=torch.channels_last)
            fns.update({f"{n} eager channels_last": (lambda m=m: m(x_cl)) for n, m in models_cl.items()})
            fns.update({f"{n} compiled": (lambda f=f: f(x)) for n, f in compiled.items()})
            if compiled:
                for f in compiled.values():  # a new batch size compiles again: not timed
                    f(x)
            if not args.no_onnx:
                for name, model in models.items():
                    start = time.perf_counter()
                    ort = onnx_forward(model, x, args.threads, dynamic_batch=False)
                    result["export_seconds"][f"{name} batch {batch}"] = time.perf_counter() - start
                    fns[f"{name} onnxruntime"] = lambda f=ort: f(x)
                    print(f"exported {name} at batch {batch} in {time.perf_counter() - start:.1f} s", flush=True)
            times = median_times(fns, device, args.repeats)
            result["ms_per_image"][str(batch)] = {k: 1000 * v / batch for k, v in times.items()}
            for k, v in result["ms_per_image"][str(batch)].items():
                print(f"batch {batch:3d}  {k:24s} {v:8.2f} ms/image", flush=True)
    ratios, fastest = {}, {}
    for batch, row in result["ms_per_image"].items():
        fastest[batch] = {}
        for key, ms in row.items():
            name, setting = key.split(" ", 1)
            if name not in fastest[batch] or ms < row[f"{name} {fastest[batch][name]}"]:
                fastest[batch][name] = setting
        for dgc_name, dense in PAIRS:
            if dgc_name in fastest[batch] and dense in fastest[batch]:
                best = {n: row[f"{n} {fastest[batch][n]}"] for n in (dgc_name, dense)}
                ratios[f"{dgc_name}/{dense} batch {batch} (fastest of each)"] = best[dgc_name] / best[dense]
    result["ratios"], result["fastest"] = ratios, fastest
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}x")
    if args.json:
        write_json_atomic(args.json, result)
    return 0


def _without_kernels(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with kernels_off():
        return model(x)


if __name__ == "__main__":
    sys.exit(main())
