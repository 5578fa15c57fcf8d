"""GPU check: the GPU tests, timings of the six paper-profile models in every precision / layout /
execution, compile costs, peak memory, a short training run and the paper profile's hours on this GPU,
within a time budget -> reports/gpu/summary.json and summary.md.

    PYTHONPATH=. python3 benchmarks/gpu_check.py [--budget 420] [--out-dir reports/gpu] [--repeats 20]
                                                 [--skip STEP,...] [--only STEP,...] [--dry-run]
    (or bash benchmarks/gpu_check.sh with the same arguments)

The code: dgc/bench/gpu_check.py (figures and markdown: dgc/bench/gpu_check_report.py).
"""

from dgc.bench.gpu_check import main

if __name__ == "__main__":
    raise SystemExit(main())
