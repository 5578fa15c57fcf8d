"""The committed pipeline outputs are those of one `dvc repro` of the committed code.

Every `cache: false` output of dvc.yaml lives in git; dvc.lock records the hash that the last
`dvc repro` gave it. A hand-made run (or an output edited after the repro) changes the file but not the
lock, and then the report, the README tables and `dvc metrics diff` contradict each other. `dvc status`
compares each output with its recorded hash; this test fails on any difference.
"""

import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]


def uncached_outputs() -> set[str]:
    """Paths of dvc.yaml's `cache: false` outputs (metrics and plots included), matrix expanded
    by prefix: `reports/metrics/${item...}.json` -> `reports/metrics/`."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    paths = set()
    for stage in spec["stages"].values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind, []):
                if isinstance(entry, dict):
                    (path, opts), = entry.items()
                    if isinstance(opts, dict) and opts.get("cache") is False:
                        paths.add(path.split("${", 1)[0])
    return paths


def test_every_uncached_output_is_declared_under_reports():
    outputs = uncached_outputs()
    assert {"reports/metrics/", "reports/history/", "reports/info/", "reports/vs_paper.json",
            "reports/architecture.json", "reports/figures", "reports/report.html"} <= outputs


def test_committed_outputs_match_the_hashes_in_dvc_lock():
    lock = yaml.safe_load((ROOT / "dvc.lock").read_text())
    recorded = {out["path"] for stage in lock["stages"].values() for out in stage.get("outs", [])}
    prefixes = uncached_outputs()
    committed = sorted(p for p in recorded if p.startswith(tuple(prefixes)))
    assert committed, "dvc.lock records no cache: false output"
    missing = [p for p in committed if not (ROOT / p).exists()]
    assert not missing, f"recorded in dvc.lock but not in the repository: {missing}"
    proc = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout or "{}")
    drift = sorted(f"{path} ({state}, stage {stage})"
                   for stage, items in status.items() for item in items if isinstance(item, dict)
                   for path, state in item.get("changed outs", {}).items()
                   if path.startswith(tuple(prefixes)))
    assert not drift, ("committed pipeline outputs differ from dvc.lock (re-run `dvc repro` and "
                       f"commit its outputs): {drift}")


def test_every_committed_run_finished_learning_with_seeds():
    """The default profile's evidence: every run past the plateau criterion (dgc/measure/plateau.py) in every
    seed, and at least 3 seeds per model, as its relation verdicts need."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    runs = [f"{d}-{m}" for d in params["pipeline"]["datasets"] for m in params["pipeline"]["models"]]
    for run in runs:
        metrics = json.loads((ROOT / "reports" / "metrics" / f"{run}.json").read_text())
        assert metrics["seeds"] >= 3, run
        assert metrics["plateau"]["plateaued"] == 1, (run, metrics["plateau"])
        assert metrics["plateau"]["late_gain"] <= metrics["plateau"]["points"], run
    verdicts = json.loads((ROOT / "reports" / "vs_paper.json").read_text())["smoke_evidence"]
    assert verdicts and all(r["verdict"] in ("holds", "does not hold", "inconclusive") for r in verdicts)
    assert all(r["standard_error"] is not None for r in verdicts)
