"""Each C++ CPU kernel (dgc/kernels/cpu.py) against the PyTorch ops it replaces, on densenet86's
shapes at batch 64, inference; ms per block.

    .venv/bin/python benchmarks/cpu_kernels.py [--threads 2] [--batch 64] [--repeats 15]
        [--json reports/cpu_kernels.json]

The code: dgc/bench/cpu_kernels.py.
"""

from dgc.bench.cpu_kernels import main

if __name__ == "__main__":
    raise SystemExit(main())
