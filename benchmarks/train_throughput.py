"""Training throughput of the DGC models next to their plain counterparts, in one run.

For each model: images/second of a full training step (forward, cross-entropy + sparsity term,
backward, SGD step) at batch 64 on 32x32 inputs, the median of `--steps` timed steps after warm-up,
and the peak memory of the step. Also the data path alone: loading and augmenting one batch of 64
CIFAR-sized uint8 images on the same device, as a fraction of the densenet86_dgc step. On CUDA the
models and batches are channels_last with bf16 autocast (as `dgc train` with train.channels_last auto
and train.amp on; --no-amp: fp32); each model is timed in a subprocess of its own so that the CPU peak
memory is its own.

    .venv/bin/python benchmarks/train_throughput.py [--device cpu|cuda] [--steps 5] [--models ...]
        [--json reports/train_throughput.json]

Writes the JSON given by --json (docs/speed.md's is reports/train_throughput.json); dgc/bench/registry.py renders it in docs/speed.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

import torch
import torch.nn.functional as F

from dgc.data.loader import DeviceBatches
from dgc.io import write_json_atomic
from dgc.layers import set_progress, sparsity_loss
from dgc.measure.latency import device_name, median_time
from dgc.measure.provenance import provenance
from dgc.models import create_model

PAIRS = ["densenet86_dgc", "densenet86", "resnet18_dgc", "resnet18"]


def current_rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def step_time(model, device, batch, steps, warmup, amp) -> tuple[float, float]:
    """Median seconds of a training step (dgc.measure.latency.median_time) and its peak memory (MiB)."""
    channels_last = device.type == "cuda"  # as train.channels_last: auto
    model.to(device).train()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    set_progress(model, 1.0)  # the pruned steady state: every DGC layer at its target n_in
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4)
    x = torch.randn(batch, 3, 32, 32, device=device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    y = torch.randint(0, 10, (batch,), device=device)
    dtype = torch.bfloat16 if device.type == "cuda" else None
    last: dict[str, torch.Tensor] = {}

    def train_step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=amp and device.type == "cuda"):
            loss = F.cross_entropy(model(x), y) + 1e-5 * sparsity_loss(model)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        last["loss"] = loss

    base_mb = current_rss_mb()
    seconds = median_time(train_step, device, steps, warmup)
    if not torch.isfinite(last["loss"]):  # timings of NaN arithmetic are not reported
        raise SystemExit(f"{getattr(model, 'model_name', 'model')}: the timed steps gave a non-finite loss")
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:  # the process's peak resident memory above what it held before the first step
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024) - base_mb
    return seconds, peak


def data_path_time(device, batch, steps) -> float:
    """Median seconds of drawing one augmented batch from DeviceBatches (3 draws of warm-up)."""
    n = 50_000 if device.type == "cuda" else 10_000
    images = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 10, (n,), device=device)
    batches = DeviceBatches(images, labels, batch, (0.49, 0.48, 0.45), (0.25, 0.24, 0.26), train=True,
                            channels_last=device.type == "cuda")
    it = iter(batches)
    return median_time(lambda: next(it), device, steps, warmup=3)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=PAIRS)
    ap.add_argument("--no-amp", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    name = device_name(device)
    if not args.one:
        print(f"device: {name}; torch {torch.__version__}; batch {args.batch}, 32x32, "
              f"median of {args.steps} steps after {args.warmup} warm-up")
    if args.one:  # child process: one model, so CPU peak memory is its own
        torch.manual_seed(0)
        model = create_model(args.one, 10, stem="cifar")
        step_s, peak = step_time(model, device, args.batch, args.steps, args.warmup, not args.no_amp)
        print(json.dumps({"step_s": step_s, "peak_mb": peak}))
        return 0
    results = {}
    for model_name in args.models:
        child = subprocess.run([sys.executable, __file__, "--one", model_name,
                                "--device", args.device, "--batch", str(args.batch), "--steps", str(args.steps),
                                "--warmup", str(args.warmup)] + (["--no-amp"] if args.no_amp else []),
                               capture_output=True, text=True, check=True)
        one = json.loads(child.stdout.strip().splitlines()[-1])
        med, peak = one["step_s"], one["peak_mb"]
        results[model_name] = {"step_s": med, "images_per_s": args.batch / med, "peak_mb": peak}
        print(f"{model_name:16s} step {med * 1000:8.1f} ms  {args.batch / med:8.1f} img/s  "
              f"peak memory {peak:8.1f} MiB")
    for dgc_name, plain in (("densenet86_dgc", "densenet86"), ("resnet18_dgc", "resnet18")):
        if dgc_name in results and plain in results:
            r = results[dgc_name]["step_s"] / results[plain]["step_s"]
            m = results[dgc_name]["peak_mb"] / results[plain]["peak_mb"]
            print(f"{dgc_name} / {plain}: step time x{r:.2f}, peak memory x{m:.2f}")
    data_s = data_path_time(device, args.batch, max(args.steps, 20))
    results["data_path"] = {"batch_s": data_s}
    if "densenet86_dgc" in results:
        frac = data_s / results["densenet86_dgc"]["step_s"]
        results["data_path"]["fraction_of_densenet86_dgc_step"] = frac
        print(f"data path: {data_s * 1000:.2f} ms per batch = {100 * frac:.2f}% of a densenet86_dgc step")
    results["device"] = name
    results["provenance"] = provenance(name)
    if args.json:
        write_json_atomic(args.json, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
