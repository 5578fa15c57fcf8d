#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): GPU tests, timings of the six paper-profile models, compile
# costs, peak memory, a short training run and the paper profile's hours on this GPU, within a time
# budget -> reports/gpu/summary.json and summary.md. Arguments pass through (--help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" exec python3 benchmarks/gpu_check.py "$@"
