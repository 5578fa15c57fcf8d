"""Training throughput of the DGC models next to their plain counterparts: ms per training step,
images/s and peak memory at batch 64, and the data path's share of a step.

    .venv/bin/python benchmarks/train_throughput.py [--device cpu|cuda] [--steps 5] [--models ...]
        [--json reports/train_throughput.json]

The code: dgc/bench/train_throughput.py.
"""

from dgc.bench.train_throughput import main

if __name__ == "__main__":
    raise SystemExit(main())
