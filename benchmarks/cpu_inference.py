"""Whole-model inference on the CPU: DGC models next to their dense and static-group counterparts, in
eager NCHW (with and without the C++ CPU kernels), eager channels_last and torch.compile; ms per image.

    .venv/bin/python benchmarks/cpu_inference.py [--threads 2] [--batches 64 1] [--repeats 10]
        [--json reports/cpu_inference.json] [--no-compile] [--no-channels-last] [--models ...]

The code: dgc/bench/cpu_inference.py.
"""

from dgc.bench.cpu_inference import main

if __name__ == "__main__":
    raise SystemExit(main())
