"""The `compare` stage: every claim of claims/paper.yaml against our metrics, with one of VERDICTS. Accuracy
claims need the paper's recipe, architecture claims only its architecture, relation claims two runs of the
recipe judged by dgc/measure/verdict.py. Each relation is also measured on the smoke set's runs (digits), listed
apart as smoke evidence; earlier reproductions (`references:` of the claims file) are shown beside the paper's.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dgc.measure.claims import Claim, Reference, load_metrics, metric_value, sample_of, spread_of
from dgc.measure.verdict import judge_relation

VERDICTS = ("reproduced", "not reproduced", "inconclusive", "not run", "not comparable", "not verified")
SMOKE_DATASET = "digits"


def _row(claim: Claim, **values: Any) -> dict[str, Any]:
    """The claim's fields (its `value` as `paper`), no measurement of ours, then `values`."""
    fields = {k: v for k, v in asdict(claim).items() if k != "value"}
    return {**fields, "paper": claim.value, "ours": None, "spread": None, "delta": None, "seeds": None, **values}


def judge(claim: Claim, runs: dict[tuple[str, str], dict[str, Any]],
          architectures: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The verdict row of one claim. Architecture claims fall back on `architectures` (reports/architecture.json)
    when no trained run of the paper's architecture exists."""
    run = runs.get((claim.dataset, claim.model))
    if claim.kind == "unverified":
        ours = metric_value(run, claim.metric) if run else None
        return _row(claim, ours=ours, verdict="not verified", reason=claim.source)
    counted = (architectures or {}).get(f"{claim.dataset}-{claim.model}")
    if claim.kind == "architecture" and counted and not (run and run.get("architecture_matches_paper")):
        return _against_value(claim, metric_value(counted, claim.metric),
                              "counted on the authors' configuration (reports/architecture.json)")
    needed = [claim.model] + ([claim.versus] if claim.versus else [])
    missing = [m for m in needed if (claim.dataset, m) not in runs]
    if missing:
        return _row(claim, verdict="not run", reason=f"no metrics for {claim.dataset}-{missing[0]}")
    gate = "architecture_matches_paper" if claim.kind == "architecture" else "recipe_matches_paper"
    for model in needed:
        if not runs[(claim.dataset, model)].get(gate):
            what = "architecture" if claim.kind == "architecture" else "architecture and recipe"
            return _row(claim, verdict="not comparable",
                        reason=f"{claim.dataset}-{model} is not the paper's {what} "
                               f"(see reports/info/{claim.dataset}-{model}.json)")
    ours = metric_value(run, claim.metric)
    if ours is None:
        return _row(claim, verdict="not run", reason=f"{claim.metric} missing from the metrics")
    seeds = int(run.get("seeds", 1))
    spread = spread_of(run, claim.metric) if seeds > 1 else None
    if claim.kind == "relation":
        base = sample_of(runs[(claim.dataset, claim.versus)], claim.metric)
        if base is None:
            return _row(claim, verdict="not run", reason=f"{claim.metric} missing from {claim.versus}'s metrics")
        rel = judge_relation(sample_of(run, claim.metric), base, claim.tolerance)
        verdict = {"holds": "reproduced", "does not hold": "not reproduced"}.get(rel.outcome, "inconclusive")
        return _row(claim, ours=ours, delta=rel.delta, spread=spread, seeds=seeds, baseline=base.mean,
                    baseline_spread=base.std if base.n > 1 else None, standard_error=rel.standard_error,
                    verdict=verdict, reason=f"{claim.model} {ours:.2f} vs {claim.versus} {base.mean:.2f}: {rel.why}")
    return _against_value(claim, ours, None, spread=spread, seeds=seeds)


def _against_value(claim: Claim, ours: float, reason: str | None, **values: Any) -> dict[str, Any]:
    """The row of `ours` against the claim's value: reproduced when within its tolerance."""
    delta = ours - claim.value
    ok = abs(delta) <= claim.tolerance + 1e-9
    return _row(claim, ours=ours, delta=delta, verdict="reproduced" if ok else "not reproduced",
                reason=reason or f"|delta| {'<=' if ok else '>'} tolerance {claim.tolerance:g}", **values)


def compare(claims: list[Claim], metrics_dir: str | Path = "reports/metrics",
            architecture_json: str | Path | None = None,
            references: list[Reference] | None = None) -> dict[str, Any]:
    runs = load_metrics(metrics_dir)
    found = architecture_json and Path(architecture_json).exists()
    architectures = json.loads(Path(architecture_json).read_text()) if found else {}
    earlier = {(r.dataset, r.model, r.metric): r.value for r in references or []}
    rows = [{**judge(c, runs, architectures),
             "earlier": earlier.get((c.dataset, c.model, c.metric)) if c.kind == "accuracy" else None} for c in claims]
    claimed = {(c.dataset, m) for c in claims for m in (c.model, c.versus) if m}
    smoke = [{"dataset": d, "model": m, "best_top1_err": metric_value(v, "best.top1_err"),
              "flops_expected": v.get("flops_expected"), "flops_actual": v.get("flops_actual"),
              "params": v.get("params")}
             for (d, m), v in sorted(runs.items()) if (d, m) not in claimed]
    summary = {v: sum(r["verdict"] == v for r in rows) for v in VERDICTS}
    return {"claims": rows, "other_runs": smoke, "summary": summary,
            "smoke_evidence": smoke_evidence(claims, runs),
            "references": reference_rows(references or [], claims, runs)}


def reference_rows(references: list[Reference], claims: list[Claim],
                   runs: dict[tuple[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    """paper | earlier reproduction | ours, for every number of an earlier reproduction."""
    paper = {(c.dataset, c.model, c.metric): c.value for c in claims if c.kind == "accuracy"}
    ours = {key: run for key, run in runs.items() if run.get("recipe_matches_paper")}
    return [{"reference": r.reference, "dataset": r.dataset, "model": r.model, "metric": r.metric, "unit": r.unit,
             "paper": paper.get((r.dataset, r.model, r.metric)), "earlier": r.value, "approximate": r.approximate,
             "ours": metric_value(ours[(r.dataset, r.model)], r.metric) if (r.dataset, r.model) in ours else None,
             "source": r.source} for r in references]


def smoke_evidence(claims: list[Claim], runs: dict[tuple[str, str], dict[str, Any]]) -> list[dict[str, Any]]:
    """Each relation claim's (model, baseline) pair measured on the smoke set's runs, once per pair."""
    rows, seen = [], set()
    for claim in claims:
        pair = (claim.model, claim.versus, claim.metric)
        ours, base = runs.get((SMOKE_DATASET, claim.model)), runs.get((SMOKE_DATASET, claim.versus))
        if claim.kind != "relation" or pair in seen or not (ours and base):
            continue
        seen.add(pair)
        a, b = sample_of(ours, claim.metric), sample_of(base, claim.metric)
        if a is None or b is None:
            continue
        rel = judge_relation(a, b, claim.tolerance)
        rows.append({"claims": [c.id for c in claims if (c.model, c.versus, c.metric) == pair],
                     "dataset": SMOKE_DATASET, "model": claim.model, "versus": claim.versus,
                     "metric": claim.metric, "statement": claim.statement, "tolerance": claim.tolerance,
                     "ours": a.mean, "ours_std": a.std, "baseline": b.mean, "baseline_std": b.std,
                     "delta": rel.delta, "standard_error": rel.standard_error, "verdict": rel.outcome,
                     "why": rel.why, "seeds": a.n, "baseline_seeds": b.n,
                     "label": "smoke evidence (digits, narrow models): not a test of the paper's claim"})
    return rows


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and not value.is_integer() or unit == "%":
        return f"{value:.2f}"
    return f"{int(value):,}"


def markdown_table(header: str, rows: list[list[Any]]) -> list[str]:
    """A Markdown table: its `header` ("a | b | c") and one line per row of cells."""
    return [f"| {header} |", "|" + "---|" * len(header.split(" | "))] + \
        ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def to_markdown(result: dict[str, Any]) -> str:
    rows = []
    for r in result["claims"]:
        paper = (_fmt(r["paper"], r["unit"]) if r["paper"] is not None
                 else f"<= {r['versus']}" if r["versus"] else "unknown")
        ours = _fmt(r["ours"], r["unit"])
        if r["spread"] is not None:
            ours += f" ± {r['spread']:.2f} ({r['seeds']} seeds)"
        rows.append([f"{r['claim']} ({r['id']})", r["dataset"], r["model"], r["metric"], paper,
                     _fmt(r.get("earlier"), r["unit"]), ours, _fmt(r["delta"], r["unit"]), r["verdict"], r["reason"]])
    header = "claim | dataset | model | metric | paper | earlier reproduction | ours | delta | verdict | why"
    lines = ["# Our results against the paper's claims", "", *markdown_table(header, rows)]
    lines += ["", "Verdicts: " + ", ".join(f"{n} {k}" for k, n in result["summary"].items()), ""]
    if result.get("smoke_evidence"):
        lines += ["## Smoke evidence for the relation claims (digits, narrow models: not the paper's claim)",
                  "", "Mean ± standard deviation over seeds (n); the verdict needs the difference of the "
                  "means to clear two standard errors (dgc/measure/verdict.py), else it is inconclusive.", ""]
        lines += markdown_table("claims | model | versus | metric | model's | baseline's | delta ± s.e. | verdict", [
            [", ".join(r["claims"]), r["model"], r["versus"], r["metric"],
             f"{r['ours']:.2f} ± {r['ours_std']:.2f} (n={r['seeds']})",
             f"{r['baseline']:.2f} ± {r['baseline_std']:.2f} (n={r['baseline_seeds']})",
             f"{r['delta']:+.2f}" + ("" if r["standard_error"] is None else f" ± {r['standard_error']:.2f}"),
             r["verdict"]] for r in result["smoke_evidence"]]) + [""]
    if result.get("references"):
        lines += ["## The paper, the earlier reproduction and ours",
                  "", "`ours` only for a run of the paper's recipe (never a smoke run); ≈: the source "
                  "gives the number approximately.", ""]
        lines += markdown_table("reference | dataset | model | metric | paper | earlier reproduction | ours | source", [
            [r["reference"], r["dataset"], r["model"], r["metric"], _fmt(r["paper"], r["unit"]),
             ("≈ " if r["approximate"] else "") + _fmt(r["earlier"], r["unit"]), _fmt(r["ours"], r["unit"]),
             r["source"]] for r in result["references"]]) + [""]
    if result["other_runs"]:
        lines += ["## Runs no claim refers to (e.g. the offline smoke profile: never compared with the paper)", ""]
        lines += markdown_table("dataset | model | best top-1 err (%) | FLOPs expected | FLOPs actual | params", [
            [r["dataset"], r["model"], _fmt(r["best_top1_err"], "%"), _fmt(r["flops_expected"]),
             _fmt(r["flops_actual"]), _fmt(r["params"])] for r in result["other_runs"]])
    return "\n".join(lines) + "\n"


def write_comparison(result: dict[str, Any], out_dir: str | Path = "reports") -> tuple[Path, Path]:
    from dgc.io import write_json_atomic, write_text_atomic

    return (write_json_atomic(Path(out_dir) / "vs_paper.json", result),
            write_text_atomic(Path(out_dir) / "vs_paper.md", to_markdown(result)))
