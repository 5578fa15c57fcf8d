"""The fused Triton 1x1 DGC kernel against the layer's executions and a dense 1x1 conv.

For each 1x1 DGC layer shape of densenet86_dgc (the registry's defaults: growth 8-16-32, 14 layers
per block, 32/16/8 spatial, 4 heads, K = C_in/4 kept at the end of training) at batch 64, the median
milliseconds (dgc.measure.latency.median_times, round-robin) of the conv alone, forward (no grad) and
forward+backward (gradients of x, the weights and the saliencies), of:
  fused          dgc.kernels.fused_triton.fused_1x1 (with the head-weight stack and the
                 scale gather it needs)
  sparse         dgc.layers.executions.sparse (gathered copies of x and of the weights, one bmm)
  scaled_weight  dgc.layers.executions.scaled_weight (per-sample weights W * s, one bmm over all channels)
  dense          nn.Conv2d(C_in, C_out, 1) on the same input (no gating)
Needs only PyTorch, Triton and this repository:

    PYTHONPATH=. python3 studies/fused_kernel.py [--out fused.json] [--repeats 20] [--dtype float32]

Prints a table and writes the JSON given by --out (no file by default). On a machine without CUDA it
says so and exits 0. --interpret runs the kernels under Triton's interpreter on CPU (a smoke test of
this code: batch 2 and 3 shapes unless told otherwise).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import torch
from torch import nn

SHAPE_FIELDS = ("c_in", "c_out", "heads", "size", "k")


def densenet86_dgc_shapes() -> list[dict[str, int]]:
    """(C_in, C_out, heads, spatial size, K kept) of each 1x1 DGC layer of densenet86_dgc, in order."""
    from dgc.layers import DGCConv2d, set_progress
    from dgc.models import create_model

    model = create_model("densenet86_dgc", 10).eval()
    set_progress(model, 1.0)  # the pruned steady state: every layer at its target n_in
    shapes: list[dict[str, int]] = []

    def record(layer: DGCConv2d, inputs, output) -> None:
        shapes.append({"c_in": layer.in_channels, "c_out": layer.out_channels, "heads": layer.num_heads,
                       "size": inputs[0].shape[-1], "k": layer.in_channels - layer.n_inactive})

    hooks = [m.register_forward_hook(record) for m in model.modules() if isinstance(m, DGCConv2d)]
    with torch.no_grad():
        model(torch.zeros(1, 3, 32, 32))
    for hook in hooks:
        hook.remove()
    return shapes


def candidates(shape: dict[str, int], batch: int, device: torch.device, dtype: torch.dtype,
               memory_format: torch.memory_format) -> tuple[dict, dict, float]:
    """Forward-only and forward+backward callables of each execution for one layer shape, and the
    largest |fused - sparse| of the output (a sanity check that the timed kernels agree)."""
    # imported here, after main() set TRITON_INTERPRET: the kernels read it when first defined
    from dgc.kernels.fused_triton import fused_1x1
    from dgc.layers import DGCConv2d, executions

    c_in, c_out, heads, size, k = (shape[f] for f in SHAPE_FIELDS)
    layer = DGCConv2d(c_in, c_out, 1, heads=heads).to(device, dtype)
    layer.set_inactive(c_in - k)
    dense = nn.Conv2d(c_in, c_out, 1, bias=False).to(device, dtype)
    x = torch.relu(torch.randn(batch, c_in, size, size, device=device, dtype=dtype))
    x = x.contiguous(memory_format=memory_format).requires_grad_(True)
    saliency = torch.rand(batch, heads, c_in, device=device, dtype=dtype).requires_grad_(True)
    keep, kept = layer.select(saliency)  # as DGCConv2d.forward selects: kept (B, H, K) indices
    params = [h.weight for h in layer.heads]

    def fused():
        return fused_1x1(x, layer.head_weights().flatten(2), kept, saliency.gather(2, kept))

    runs = {"fused": fused,
            "sparse": lambda: executions.sparse(layer, x, saliency, keep, kept),
            "scaled_weight": lambda: executions.scaled_weight(layer, x, saliency, keep, kept),
            "dense": lambda: dense(x)}
    wrt = {name: [x, saliency, *params] for name in runs}
    wrt["dense"] = [x, dense.weight]
    grad_out = torch.randn(batch, c_out, size, size, device=device, dtype=dtype)

    def no_grad(fn):
        def run():
            with torch.no_grad():
                return fn()
        return run

    def with_backward(fn, inputs):
        return lambda: torch.autograd.grad(fn(), inputs, grad_out)

    with torch.no_grad():
        diff = float((runs["fused"]().float() - runs["sparse"]().float()).abs().max())
    forward = {name: no_grad(fn) for name, fn in runs.items()}
    backward = {name: with_backward(fn, wrt[name]) for name, fn in runs.items()}
    return forward, backward, diff


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--batch", type=int, help="batch size (default 64; 2 with --interpret)")
    parser.add_argument("--repeats", type=int, help="timed runs per candidate (default 20; 1 with --interpret)")
    parser.add_argument("--warmup", type=int,
                        help="untimed runs first, which compile the kernels (default 3; 0 with --interpret)")
    parser.add_argument("--max-shapes", type=int,
                        help="time at most this many shapes, evenly spaced (default all; 3 with --interpret)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    parser.add_argument("--memory-format", choices=["channels_last", "contiguous"], default="channels_last")
    parser.add_argument("--interpret", action="store_true",
                        help="run on CPU under Triton's interpreter (slow; to smoke-test this code)")
    args = parser.parse_args(argv)
    for name in ("batch", "repeats", "max_shapes"):  # --warmup may be 0
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
    if args.warmup is not None and args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")

    if args.interpret:
        os.environ["TRITON_INTERPRET"] = "1"  # read when the kernels are first defined, below
        device = torch.device("cpu")
        torch.set_num_threads(1)
    elif torch.cuda.is_available():
        device = torch.device("cuda")
    else:
        print("studies/fused_kernel.py needs a CUDA GPU (or --interpret for a slow CPU smoke test); "
              "nothing measured.")
        return 0

    from dgc.kernels.fused_triton import fused_available
    from dgc.measure.latency import device_name, median_times

    if not fused_available(device):
        print(f"the fused kernel cannot run on {device} (is triton installed?)", file=sys.stderr)
        return 1
    import triton

    batch = args.batch or (2 if args.interpret else 64)
    repeats = args.repeats or (1 if args.interpret else 20)
    warmup = args.warmup if args.warmup is not None else (0 if args.interpret else 3)
    dtype = getattr(torch, args.dtype)
    memory_format = getattr(torch, args.memory_format if args.memory_format == "channels_last"
                            else "contiguous_format")
    shapes = densenet86_dgc_shapes()
    limit = args.max_shapes or (3 if args.interpret else len(shapes))
    if limit < len(shapes):
        shapes = [shapes[round(i * (len(shapes) - 1) / max(limit - 1, 1))] for i in range(limit)]

    torch.manual_seed(0)
    results = []
    print(f"{'C_in':>5} {'C_out':>5} {'size':>4} {'K':>4} | forward ms: fused sparse scaled dense"
          f" | fwd+bwd ms: fused sparse scaled dense")
    for shape in shapes:
        forward, backward, diff = candidates(shape, batch, device, dtype, memory_format)
        fwd = median_times(forward, device, repeats, warmup)
        bwd = median_times(backward, device, repeats, warmup)
        row = {**shape, "forward_ms": {n: 1000 * t for n, t in fwd.items()},
               "forward_backward_ms": {n: 1000 * t for n, t in bwd.items()},
               "max_abs_diff_fused_vs_sparse": diff}
        results.append(row)
        f, b = row["forward_ms"], row["forward_backward_ms"]
        print(f"{shape['c_in']:>5} {shape['c_out']:>5} {shape['size']:>4} {shape['k']:>4} | "
              + " ".join(f"{f[n]:.3f}" for n in forward) + " | "
              + " ".join(f"{b[n]:.3f}" for n in backward), flush=True)

    report = {"device": device_name(device), "torch": torch.__version__, "triton": triton.__version__,
              "interpreted": args.interpret, "batch": batch, "dtype": args.dtype,
              "memory_format": args.memory_format, "repeats": repeats, "warmup": warmup,
              "tf32": torch.backends.cuda.matmul.allow_tf32, "shapes": results}
    if args.out:
        with open(args.out, "w") as fh:
            json.dump(report, fh, indent=1)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
