#!/usr/bin/env bash
# The default profile a second time, as another machine would run it: a fresh clone whose training
# uses another thread count (oneDNN then picks other kernels and sums in another order, as on another
# CPU model). Compares its outputs with this checkout's committed ones (benchmarks/crosscheck.py): the means
# within their spread and the same verdicts. Writes reports/cross_cpu.md and .json in this checkout.
# The clone reuses this checkout's .venv. Usage: bash benchmarks/cross_cpu.sh [threads] [clone-dir]
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
threads="${1:-1}"
dest="${2:-$(mktemp -d)/dgc}"
git clone -q "$src" "$dest"
cd "$dest"
export DGC_PYTHON="$src/.venv/bin/python"
dvc() { "$DGC_PYTHON" -m dvc "$@"; }
"$DGC_PYTHON" - "$threads" <<'PY'
import sys, yaml
params = yaml.safe_load(open("params.yaml"))
params["train"]["threads"] = int(sys.argv[1])
open("params.yaml", "w").write(yaml.safe_dump(params, sort_keys=False))
PY
rm -rf reports/metrics reports/info reports/history dvc.lock   # nothing reused: every run trains again
echo "clone: $dest  commit: $(git rev-parse --short HEAD)  train.threads: $threads (committed outputs: torch's default, $(nproc) cpus)"
t0=$(date +%s); dvc repro > repro.log 2>&1; t1=$(date +%s)
echo "dvc repro with $threads thread(s): $((t1 - t0)) s"
PYTHONPATH="$src" "$DGC_PYTHON" "$src/benchmarks/crosscheck.py" "$src/reports" "$dest/reports" \
  --labels "committed outputs ($(nproc) threads)" "fresh clone, train.threads=$threads ($((t1 - t0)) s)" \
  --out "$src/reports/cross_cpu.md"
