#!/usr/bin/env bash
# Times the README's main job on the default (smoke) profile from a fresh clone: `dvc repro` once
# (everything runs), then again (nothing changed: must do nothing). The install is not counted:
# the clone reuses this checkout's .venv. Usage: bash benchmarks/repro_time.sh [clone-dir]
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$(mktemp -d)/dgc}"
git clone -q "$src" "$dest"
cd "$dest"
export PATH="$src/.venv/bin:$PATH"
echo "clone: $dest  commit: $(git rev-parse --short HEAD)  cpus: $(nproc)  wandb: ${WANDB_MODE:-offline (params)}"
rm -rf reports/metrics reports/info reports/history dvc.lock   # start from nothing, as a new user
t0=$(date +%s.%N); dvc repro > repro1.log 2>&1; t1=$(date +%s.%N)
dvc repro > repro2.log 2>&1; t2=$(date +%s.%N)
python - "$t0" "$t1" "$t2" <<'PY'
import sys
t0, t1, t2 = map(float, sys.argv[1:])
print(f"first dvc repro (all stages): {t1 - t0:.0f} s ({(t1 - t0) / 60:.1f} min)")
print(f"second dvc repro (nothing changed): {t2 - t1:.1f} s")
PY
grep -c "^Running stage" repro1.log | xargs echo "stages run the first time:"
grep -c "^Running stage" repro2.log | xargs echo "stages run the second time:" || true
