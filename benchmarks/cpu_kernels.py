"""Each C++ CPU kernel (dgc/kernels/cpu.py) against the PyTorch ops it replaces, on densenet86's shapes.

Per dense block of densenet86 at batch 64 (the last layer of each block, whose input is widest):
the DGC 1x1 conv (a quarter of the channels kept) as `fused_cpu` (the layer's execution that runs
`dgc.kernels.cpu.fused_1x1`) vs `sparse` vs the dense 1x1 conv (NCHW and channels_last); the 4-group
BN-ReLU-3x3 conv as the kernel vs PyTorch (NCHW and channels_last) vs the dense 3x3 of 4x its work;
the DGC pre-activation + pooling; the transition's 2x2 pooling. Inference (no autograd), median of
`repeats` runs timed round-robin in one process.

    .venv/bin/python benchmarks/cpu_kernels.py [--threads 2] [--batch 64] [--repeats 15]
        [--json reports/cpu_kernels.json]

Writes the JSON given by --json (docs/speed.md's is reports/cpu_kernels.json); dgc/bench/registry.py renders it in docs/speed.md.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F

from dgc.io import write_json_atomic
from dgc.kernels import cpu
from dgc.kernels.cpu_layers import use_cpu_kernels
from dgc.layers import BNReLUConv2d, DGCConv2d
from dgc.measure.calibrate import calibrate_batchnorm
from dgc.measure.latency import device_name, median_times
from dgc.measure.provenance import provenance

# (input channels of the block's last 1x1, growth, map size): densenet86, CIFAR, 14 layers per block
BLOCKS = [(16 + 13 * 8, 8, 32), (128 + 13 * 16, 16, 16), (352 + 13 * 32, 32, 8)]


def block_rows(batch: int, repeats: int) -> list[dict]:
    rows = []
    for c_in, growth, size in BLOCKS:
        torch.manual_seed(0)
        x = torch.randn(batch, c_in, size, size)
        mid = torch.randn(batch, 4 * growth, size, size)
        layer = DGCConv2d(c_in, 4 * growth, 1, heads=4, gate_factor=0.25)
        layer.set_progress(1.0)
        layer = use_cpu_kernels(calibrate_batchnorm(layer, batches=[x]))
        dense_1x1 = torch.randn(4 * growth, c_in, 1, 1)
        group = use_cpu_kernels(calibrate_batchnorm(BNReLUConv2d(4 * growth, growth, 3, padding=1, groups=4),
                                                    batches=[mid]))
        dense_3x3 = torch.randn(growth, 4 * growth, 3, 3)
        x_cl = x.contiguous(memory_format=torch.channels_last)
        mid_cl = mid.contiguous(memory_format=torch.channels_last)
        a, s = cpu.bn_affine(layer.norm)

        def dgc(execution: str):
            def run():
                layer.execution = execution
                return layer(x)
            return run

        def off(fn):
            def run():
                with cpu.kernels_off():
                    return fn()
            return run

        fns = {
            "dgc_1x1 fused_layer_cpu (one call)": dgc("auto"),
            "dgc_1x1 fused_cpu": dgc("fused_cpu"),
            "dgc_1x1 sparse (PyTorch)": off(dgc("sparse")),
            "dense_1x1 conv NCHW": lambda: F.conv2d(x, dense_1x1),
            "dense_1x1 conv channels_last": lambda: F.conv2d(x_cl, dense_1x1),
            "group_3x3 kernel (with BN-ReLU)": lambda: group(mid),
            "group_3x3 PyTorch NCHW (with BN-ReLU)": off(lambda: group(mid)),
            "group_3x3 PyTorch channels_last (with BN-ReLU)": off(lambda: group(mid_cl)),
            "dense_3x3 conv NCHW": lambda: F.conv2d(mid, dense_3x3, padding=1),
            "dense_3x3 conv channels_last": lambda: F.conv2d(mid_cl, dense_3x3, padding=1),
            "preact+pool kernel": lambda: cpu.bnrelu_mean(x, a, s),
            "preact+pool PyTorch": off(lambda: (lambda y: (y, y.mean(dim=(2, 3))))(layer.relu(layer.norm(x)))),
            "avg_pool2 kernel": lambda: cpu.avg_pool2(x),
            "avg_pool2 PyTorch": lambda: F.avg_pool2d(x, 2),
        }
        with torch.inference_mode():
            assert layer.execution_path(x) == "fused_layer_cpu"
            times = median_times(fns, torch.device("cpu"), repeats)
        layer.execution = "auto"
        row = {"block": f"{c_in}->{4 * growth} 1x1, {4 * growth}->{growth} 3x3, {size}x{size}",
               "ms": {k: 1000 * v for k, v in times.items()}}
        print(row["block"], "  ".join(f"{k} {v:.2f}" for k, v in row["ms"].items()), flush=True)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not cpu.cpu_kernels_available():
        print(f"the CPU kernels are unavailable: {cpu.unavailable_reason()}", file=sys.stderr)
        return 2
    device = torch.device("cpu")
    result = {"provenance": provenance(device_name(device)), "device": device_name(device),
              "torch": torch.__version__, "batch": args.batch, "repeats": args.repeats,
              "blocks": block_rows(args.batch, args.repeats)}
    if args.json:
        write_json_atomic(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
