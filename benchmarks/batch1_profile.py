"""Where batch-1 CPU inference spends its time: eager (with the C++ kernels) per model, split by layer kind.

For each model (full width, CIFAR stem, DGC at its target n_in, BatchNorm calibrated, as in
benchmarks/cpu_inference.py): the median ms of one batch-1 forward; then, from torch.profiler over
`--repeats` forwards, the number of ATen operator calls per forward, the time inside them (self CPU
time of every op; the project's C++ kernels are called through ctypes and are not among them) and the
top operators; then, with a timer around each module of a kind (DGC layers, other convs,
BatchNorm/ReLU, pooling, linear), the share of the forward spent inside each kind. The timers cost
a little themselves: the shares are what to read, not their sum. Last, the model exported to ONNX
at batch 1 in ONNX Runtime with its own profiler: the time inside graph nodes by node type.

    .venv/bin/python benchmarks/batch1_profile.py [--models densenet86_dgc densenet86 resnet18_dgc resnet18]
        [--threads 2] [--repeats 30] [--json reports/batch1_profile.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from dgc.io import write_json_atomic
from dgc.kernels.cpu_layers import use_cpu_kernels
from dgc.layers import DGCConv2d, set_progress
from dgc.measure.calibrate import ready_for_timing
from dgc.measure.latency import device_name, median_times
from dgc.measure.provenance import provenance
from dgc.models import create_model
from dgc.runtime.exported import onnx_forward

KINDS = (("DGC layer", (DGCConv2d,)), ("conv", (torch.nn.Conv2d,)),
         ("BN / ReLU", (torch.nn.BatchNorm2d, torch.nn.ReLU, torch.nn.ReLU6)),
         ("pooling", (torch.nn.AvgPool2d, torch.nn.MaxPool2d, torch.nn.AdaptiveAvgPool2d)),
         ("linear", (torch.nn.Linear,)))


def kind_of(module: torch.nn.Module) -> str | None:
    """The kind a module is timed as; None for containers and for modules inside a DGC layer."""
    for kind, types in KINDS:
        if isinstance(module, types):
            return kind
    return None


def timed_modules(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """(kind, module) of every outermost module of a kind (a DGC layer's own convs are inside it)."""
    found: list[tuple[str, torch.nn.Module]] = []

    def walk(module: torch.nn.Module) -> None:
        for child in module.children():
            kind = kind_of(child)
            if kind is None:
                walk(child)
            else:
                found.append((kind, child))

    walk(model)
    return found


def kind_shares(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> dict[str, dict[str, float]]:
    """ms per forward inside each kind of module, and how many such modules one forward calls."""
    spent: dict[str, float] = defaultdict(float)
    calls: dict[str, int] = defaultdict(int)
    starts: dict[int, float] = {}
    kinds = {id(module): kind for kind, module in timed_modules(model)}

    def pre(mod: torch.nn.Module, _inp: object) -> None:
        starts[id(mod)] = time.perf_counter()

    def post(mod: torch.nn.Module, _inp: object, _out: object) -> None:
        spent[kinds[id(mod)]] += time.perf_counter() - starts[id(mod)]
        calls[kinds[id(mod)]] += 1

    handles = []
    for _kind, module in timed_modules(model):
        handles += [module.register_forward_pre_hook(pre), module.register_forward_hook(post)]
    try:
        model(x)  # warm-up, not counted
        spent.clear()
        calls.clear()
        start = time.perf_counter()
        for _ in range(repeats):
            model(x)
        total = time.perf_counter() - start
    finally:
        for h in handles:
            h.remove()
    out = {kind: {"ms": 1000 * spent[kind] / repeats, "modules": calls[kind] // repeats} for kind in spent}
    inside = sum(spent.values())
    out["outside the modules above"] = {"ms": 1000 * (total - inside) / repeats, "modules": 0}
    out["forward with timers"] = {"ms": 1000 * total / repeats, "modules": 0}
    return out


def op_profile(model: torch.nn.Module, x: torch.Tensor, repeats: int, top: int = 8) -> dict:
    """ATen operator calls per forward, ms inside them, and the top operators by self CPU time."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        for _ in range(repeats):
            model(x)
        wall = time.perf_counter() - start
    events = prof.key_averages()
    self_us = sum(e.self_cpu_time_total for e in events)
    calls = sum(e.count for e in events)
    ranked = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return {"op_calls_per_forward": calls / repeats,
            "ms_in_aten_ops": self_us / 1000 / repeats,
            "ms_wall_profiled": 1000 * wall / repeats,
            "top_ops": [{"op": e.key, "calls_per_forward": e.count / repeats,
                         "self_ms": e.self_cpu_time_total / 1000 / repeats} for e in ranked]}


def ort_profile(model: torch.nn.Module, x: torch.Tensor, threads: int, repeats: int, folder: str,
                top: int = 6) -> dict:
    """The model exported at batch 1 (a static batch, as benchmarks/cpu_inference.py times it) in ONNX
    Runtime with its profiler: ms per forward, ms inside graph nodes, node runs per forward, and the
    node types that take the most time."""
    forward = onnx_forward(model, x, threads, dynamic_batch=False, profile_prefix=str(Path(folder) / "ort"))
    forward(x)
    start = time.perf_counter()
    for _ in range(repeats):
        forward(x)
    wall = time.perf_counter() - start
    events = json.loads(Path(forward.session.end_profiling()).read_text())
    nodes = sorted((e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")),
                   key=lambda e: e["ts"])
    nodes = nodes[len(nodes) // (repeats + 1):]  # without the untimed first forward's nodes
    runs = len(nodes) / repeats
    by_type: dict[str, float] = defaultdict(float)
    for e in nodes:
        by_type[e.get("args", {}).get("op_name", "?")] += e["dur"] / 1000 / repeats
    ranked = sorted(by_type.items(), key=lambda kv: -kv[1])[:top]
    return {"ms_per_image_profiled": 1000 * wall / repeats, "ms_in_nodes": sum(by_type.values()),
            "node_runs_per_forward": runs, "top_node_types": [{"op": k, "ms": v} for k, v in ranked]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["densenet86_dgc", "densenet86", "resnet18_dgc", "resnet18"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime profile")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    x = torch.randn(1, 3, 32, 32)
    result = {"provenance": provenance(device_name(device)), "device": device_name(device),
              "torch": torch.__version__, "threads": args.threads, "repeats": args.repeats, "models": {}}
    for name in args.models:
        torch.manual_seed(0)
        model = use_cpu_kernels(create_model(name, 10, stem="cifar"))
        set_progress(model, 1.0)
        model = ready_for_timing(model, (3, 32, 32), device)
        with torch.inference_mode():
            ms = 1000 * median_times({name: lambda m=model: m(x)}, device, args.repeats)[name]
            ops = op_profile(model, x, args.repeats)
            kinds = kind_shares(model, x, args.repeats)
        row = result["models"][name] = {"ms_per_image": ms, **ops, "kinds": kinds}
        print(f"{name}: {ms:.2f} ms/image; {ops['op_calls_per_forward']:.0f} ATen op calls per forward, "
              f"{ops['ms_in_aten_ops']:.2f} ms inside them (profiled wall {ops['ms_wall_profiled']:.2f})", flush=True)
        for kind, k in sorted(kinds.items(), key=lambda kv: -kv[1]["ms"]):
            print(f"    {kind:28s} {k['ms']:7.2f} ms  ({k['modules']} modules)")
        for op in ops["top_ops"]:
            print(f"    op {op['op']:40s} {op['self_ms']:7.2f} ms in {op['calls_per_forward']:.0f} calls")
        if not args.no_onnx:
            with tempfile.TemporaryDirectory() as folder:
                ort = row["onnxruntime"] = ort_profile(model, x, args.threads, args.repeats, folder)
            print(f"    ONNX Runtime: {ort['ms_per_image_profiled']:.2f} ms/image (profiled), "
                  f"{ort['node_runs_per_forward']:.0f} nodes per forward, {ort['ms_in_nodes']:.2f} ms inside them; "
                  + ", ".join(f"{t['op']} {t['ms']:.2f}" for t in ort["top_node_types"]), flush=True)
    if args.json:
        write_json_atomic(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
