"""A/B of the DGC layer's selection and sparse execution against another commit's (REV), in one
process: whole-model inference with REV's `select` and executions table (dgc/layers/executions.py) and the working tree's, timed call
by call in turn; prints the max output difference and the median ms/image of each (no output file).

    .venv/bin/python benchmarks/ab_layer.py REV [--models densenet86_dgc resnet18_dgc] [--batches 64 1]

The code: dgc/bench/ab_layer.py.
"""

from dgc.bench.ab_layer import main

if __name__ == "__main__":
    raise SystemExit(main())
