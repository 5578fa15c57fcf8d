#!/usr/bin/env bash
# Times the README's main job on the default (smoke) profile from a fresh clone: `dvc repro` once
# (everything runs), then again (nothing changed: must do nothing). The install is not counted:
# the clone reuses this checkout's .venv. Writes reports/repro_time.json in this checkout
# (benchmarks/repro_time.py).
# Usage: bash benchmarks/repro_time.sh [clone-dir]
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$(mktemp -d)/dgc}"
git clone -q "$src" "$dest"
cd "$dest"
# The clone has no .venv of its own: its stage commands (bin/dgc) use this checkout's interpreter.
export DGC_PYTHON="$src/.venv/bin/python"
dvc() { "$DGC_PYTHON" -m dvc "$@"; }
commit=$(git rev-parse --short HEAD)
echo "clone: $dest  commit: $commit  cpus: $(nproc)  wandb: ${WANDB_MODE:-offline (params)}"
rm -rf reports/metrics reports/info reports/history dvc.lock   # start from nothing, as a new user
t0=$(date +%s.%N); dvc repro > repro1.log 2>&1; t1=$(date +%s.%N)
dvc repro > repro2.log 2>&1; t2=$(date +%s.%N)
n1=$(grep -c "^Running stage" repro1.log || true)
n2=$(grep -c "^Running stage" repro2.log || true)
"$DGC_PYTHON" "$src/benchmarks/repro_time.py" "$t0" "$t1" "$t2" "$n1" "$n2" "$commit" "$(nproc)" \
  "$src/reports/repro_time.json"
