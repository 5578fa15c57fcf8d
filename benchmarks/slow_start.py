"""Why DGC starts slow: the first epochs of DGC variants and their baselines, with diagnostics
(recalibrated BatchNorm accuracy, saliency statistics, relative update sizes) per epoch.

    .venv/bin/python benchmarks/slow_start.py [--variants ...] [--seeds 0 1] [--epochs 12] [--work DIR]
        [--json reports/slow_start.json] [--md reports/slow_start.md] [--threads 1] [-S data.root=...]

The code: dgc/bench/slow_start.py.
"""

from dgc.bench.slow_start import main

if __name__ == "__main__":
    raise SystemExit(main())
