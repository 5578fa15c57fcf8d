#!/usr/bin/env bash
# Times the README's main job on the default (smoke) profile from a fresh clone: `dvc repro` once
# (everything runs), then again (nothing changed: must do nothing). The install is not counted:
# the clone reuses this checkout's .venv. Writes reports/repro_time.json in this checkout.
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
"$DGC_PYTHON" - "$t0" "$t1" "$t2" "$n1" "$n2" "$commit" "$(nproc)" "$src/reports/repro_time.json" <<'PY'
import sys
from dgc.io import write_json_atomic
from dgc.measure.provenance import provenance
t0, t1, t2 = map(float, sys.argv[1:4])
n1, n2, commit, cpus, out = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], int(sys.argv[7]), sys.argv[8]
result = {"commit": commit, "cpus": cpus, "first_s": t1 - t0, "second_s": t2 - t1,
          "stages_first": n1, "stages_second": n2, "provenance": provenance("CPU")}
write_json_atomic(out, result)
print(f"first dvc repro (all stages): {t1 - t0:.0f} s ({(t1 - t0) / 60:.1f} min), {n1} stages")
print(f"second dvc repro (nothing changed): {t2 - t1:.1f} s, {n2} stages")
PY
