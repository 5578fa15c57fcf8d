"""The fused Triton 1x1 DGC kernel (dgc.kernels.fused_1x1) against the layer's sparse and
scaled-weight executions and a dense 1x1 conv, forward and forward+backward, on each 1x1 DGC layer
shape of densenet86_dgc. Needs CUDA (or --interpret: a slow CPU smoke test under Triton's interpreter).

    PYTHONPATH=. python3 benchmarks/fused_kernel.py [--out fused.json] [--repeats 20] [--dtype float32]

The code: dgc/bench/fused_kernel.py.
"""

from dgc.bench.fused_kernel import main

if __name__ == "__main__":
    raise SystemExit(main())
