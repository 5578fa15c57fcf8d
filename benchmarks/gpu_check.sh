#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py): GPU tests, timings of
# the six paper-profile models, compile costs, peak memory, a short training run and the paper
# profile's hours on this GPU, within a time budget -> reports/gpu/summary.json and summary.md.
# Arguments pass through (--help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
# The project's .venv where there is one (a user's machine after `make install`), else python3 (a
# machine with PyTorch installed system-wide, e.g. a lent GPU box with no pip).
py=python3
[ -x .venv/bin/python ] && py=.venv/bin/python
# PYTHONPATH: this checkout's dgc package, also where it is not installed.
PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" exec "${DGC_PYTHON:-$py}" benchmarks/gpu_check.py "$@"
