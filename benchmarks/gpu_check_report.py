"""Write a GPU check's summary.md again from its summary.json (after a change to the report's code).

    .venv/bin/python benchmarks/gpu_check_report.py [reports/gpu/summary.json] [--out summary.md | -]

The code: dgc/bench/gpu_check_report.py.
"""

from dgc.bench.gpu_check_report import main

if __name__ == "__main__":
    raise SystemExit(main())
