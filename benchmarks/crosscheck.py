"""Two runs of the same pipeline on different machines (or thread counts): do they say the same?

Bit-identical numbers across CPU models are not expected: oneDNN picks its kernels by CPU and thread
count, float sums run in another order and a seed's curve drifts. What must carry over is the
verdicts of the relation claims and the means within their spread. `crosscheck(a, b)` reads two
`reports/` folders (metrics/*.json and vs_paper.json) and returns, per model, both means, the
difference and its standard error over the seeds, whether the difference is within two standard
errors; per relation, both verdicts and whether they agree. `bash benchmarks/cross_cpu.sh` runs the
default profile a second time with one thread and then this script, which writes the page:

    .venv/bin/python benchmarks/crosscheck.py REPORTS_A REPORTS_B [--labels A B] [--out reports/cross_cpu.md]

(and its JSON beside it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dgc.io import write_json_atomic, write_text_atomic
from dgc.measure.claims import load_metrics, sample_of
from dgc.measure.verdict import K_STANDARD_ERRORS, standard_error
from dgc.stages.compare import markdown_table

METRIC = "best.top1_acc"


def crosscheck(reports_a: str | Path, reports_b: str | Path, metric: str = METRIC) -> dict[str, Any]:
    runs_a, runs_b = load_metrics(Path(reports_a) / "metrics"), load_metrics(Path(reports_b) / "metrics")
    models = []
    for key in sorted(set(runs_a) & set(runs_b)):
        a, b = sample_of(runs_a[key], metric), sample_of(runs_b[key], metric)
        if a is None or b is None:
            continue
        se = standard_error(a, b)
        diff = b.mean - a.mean
        models.append({"run": "-".join(key), "a": a.mean, "a_std": a.std, "b": b.mean, "b_std": b.std,
                       "n": min(a.n, b.n), "diff": diff, "standard_error": se,
                       "within_spread": se is not None and abs(diff) <= K_STANDARD_ERRORS * se + 1e-9,
                       "a_plateaued": _plateaued(runs_a[key]), "b_plateaued": _plateaued(runs_b[key])})
    ev_a = {_pair(r): r for r in _evidence(reports_a)}
    ev_b = {_pair(r): r for r in _evidence(reports_b)}
    relations = [{"relation": f"{p[0]} vs {p[1]} ({p[2]})", "a": ev_a[p]["verdict"], "b": ev_b[p]["verdict"],
                  "a_delta": ev_a[p]["delta"], "b_delta": ev_b[p]["delta"],
                  "agreement": agreement(ev_a[p]["verdict"], ev_b[p]["verdict"])}
                 for p in sorted(set(ev_a) & set(ev_b))]
    return {"metric": metric, "models": models, "relations": relations,
            "all_within_spread": all(m["within_spread"] for m in models),
            "same_verdicts": all(r["agreement"] == "same" for r in relations),
            "no_opposite_verdicts": all(r["agreement"] != "opposite" for r in relations)}


def agreement(a: str, b: str) -> str:
    """'same'; 'one inconclusive' (one side decided, the other within its spread); 'opposite'
    (holds on one machine, does not hold on the other)."""
    if a == b:
        return "same"
    return "one inconclusive" if "inconclusive" in (a, b) else "opposite"


def _plateaued(metrics: dict[str, Any]) -> bool | None:
    plateau = metrics.get("plateau")
    return None if plateau is None else bool(plateau.get("plateaued"))


def _evidence(reports: str | Path) -> list[dict[str, Any]]:
    return json.loads((Path(reports) / "vs_paper.json").read_text()).get("smoke_evidence", [])


def _pair(row: dict[str, Any]) -> tuple[str, str, str]:
    return row["model"], row["versus"], row["metric"]


def _yes(flag: bool | None) -> str:
    return "-" if flag is None else "yes" if flag else "no"


def crosscheck_markdown(result: dict[str, Any], label_a: str, label_b: str) -> str:
    lines = [f"# The same pipeline twice: {label_a} (A) and {label_b} (B)", "",
             f"Best test top-1 (%), mean ± std over seeds. *within spread*: |B - A| <= "
             f"{K_STANDARD_ERRORS:g} standard errors of the difference of the means.", ""]
    lines += markdown_table("run | A | B | B - A | s.e. | within spread | finished learning (A / B)", [
        [m["run"], f"{m['a']:.2f} ± {m['a_std']:.2f}", f"{m['b']:.2f} ± {m['b_std']:.2f} (n={m['n']})",
         f"{m['diff']:+.2f}", "-" if m["standard_error"] is None else f"{m['standard_error']:.2f}",
         _yes(m["within_spread"]), f"{_yes(m['a_plateaued'])} / {_yes(m['b_plateaued'])}"]
        for m in result["models"]])
    lines += [""] + markdown_table("relation | verdict A | verdict B | delta A | delta B | agreement", [
        [r["relation"], r["a"], r["b"], f"{r['a_delta']:+.2f}", f"{r['b_delta']:+.2f}", r["agreement"]]
        for r in result["relations"]])
    lines += ["", f"Every mean within its spread: {_yes(result['all_within_spread'])}; "
                  f"the same verdicts: {_yes(result['same_verdicts'])}; opposite verdicts: "
                  f"{'none' if result['no_opposite_verdicts'] else 'yes'}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--labels", nargs=2, default=("A", "B"), metavar=("LABEL_A", "LABEL_B"))
    parser.add_argument("--out", default="reports/cross_cpu.md")
    args = parser.parse_args(argv)
    for folder in (args.a, args.b):
        if not (Path(folder) / "vs_paper.json").exists():
            print(f"crosscheck: error: {folder}/vs_paper.json is missing: give two reports/ folders of finished "
                  f"`dvc repro` runs", file=sys.stderr)
            return 2
    result = crosscheck(args.a, args.b)
    md = crosscheck_markdown(result, *args.labels)
    write_json_atomic(Path(args.out).with_suffix(".json"), {**result, "labels": list(args.labels)})
    write_text_atomic(args.out, md)
    print(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
