"""What a study page (reports/ablations.html, reports/budget.html) says of its experiments: their
settings and commit against the report's runs, the cell formats, and two results compared in words
by the verdict rule (a difference counts only beyond two standard errors of the seeds).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from dgc.experiments.grid import Experiment, GridPoint, Result, metrics_result, point_result, point_state, section
from dgc.measure.verdict import K_STANDARD_ERRORS, Sample, standard_error
from dgc.notebook import missing

WIDTH_KEYS = ("growth", "depth", "width", "blocks")


def back_link(other: str) -> str:
    """Links to the report and to the other study page (`other`: its file name)."""
    return ('<p><a href="report.html">Back to the report</a> (reports/report.html) · the other study: '
            f'<a href="{other}">reports/{other}</a></p>')


def settings_of(params: Mapping[str, Any], models: Sequence[str]) -> dict[str, str]:
    """The training settings under `params`: dataset, input size, epochs, seeds, each model's width."""
    pipeline, train, data = section(params, "pipeline"), section(params, "train"), section(params, "data")
    datasets = list(pipeline.get("datasets") or [])
    size = {"digits": data.get("digits_size", 32), "imagenet": 224}.get(datasets[0] if datasets else "", 32)
    out = {"dataset": ", ".join(datasets) or "-", "input size": f"{size}x{size}",
           "epochs": str(train.get("epochs", "-")), "seeds": ", ".join(map(str, train.get("seeds") or [])) or "-"}
    for model in models:
        width = section(params, "models").get(model) or {}
        out[f"width of {model}"] = (", ".join(f"{k} {_short(width[k])}" for k in WIDTH_KEYS if k in width)
                                    or "the authors' (full)")
    return out


def settings_table(experiments: Sequence[Experiment], params: Mapping[str, Any],
                   models: Sequence[str]) -> pd.DataFrame:
    """Setting | the study's experiments (every value they used; widths of the models each trains) | the report's."""
    seen: dict[str, list[str]] = {}
    for exp in experiments:
        mine = [m for m in section(exp.params, "pipeline").get("models") or [] if m in models]
        for key, value in settings_of(exp.params, mine).items():
            if value not in seen.setdefault(key, []):
                seen[key].append(value)
    rows = [{"setting": key, "this study's experiments": " / ".join(_sorted(seen.get(key, ["-"]))),
             "the report's runs (params.yaml)": value} for key, value in settings_of(params, models).items()]
    return pd.DataFrame(rows)


def report_result(reports: str, dataset: str, model: str) -> Result | None:
    """The report's best top-1 of dataset-model (reports/metrics), to set a study's point beside it."""
    path = Path(reports) / "metrics" / f"{dataset}-{model}.json"
    return metrics_result(json.loads(path.read_text())) if path.exists() else None


def baseline_words(experiments: Sequence[Experiment], params: Mapping[str, Any], model: str,
                   baseline: Result | None, report: Result | None) -> str:
    """Why the study's `model` differs from the report's (or that it does not), with both numbers."""
    table = settings_table(experiments, params, [model])
    study, ours = table.columns[1], table.columns[2]
    diffs = [f"{r['setting']} {r[study]} (the report: {r[ours]})" for _, r in table.iterrows() if r[study] != r[ours]]
    numbers = ""
    if baseline is not None and report is not None:
        numbers = (f" Here: {mean_std(baseline)} against the report's {mean_std(report)} "
                   f"(best top-1 %, mean ± std over seeds).")
    if diffs:
        return (f"Its {model} is not the report's run of it: " + "; ".join(diffs)
                + ". Its numbers are therefore not the report's." + numbers)
    return (f"Its {model} has the report's settings (params.yaml) and is trained again as an experiment of its "
            f"own: its numbers equal the report's only where both ran the same training code on the same kind "
            f"of CPU (other CPUs give other digits, docs/results.md)." + numbers)


def commits_line(experiments: Sequence[Experiment], rendered_at: str = "") -> str:
    """'The 11 experiments ran at commit abc1234; this page was rendered at commit def5678.'"""
    by_commit = Counter(exp.baseline[:7] or "unknown" for exp in experiments)
    ran = ", ".join(f"`{c}` ({n})" if len(by_commit) > 1 else f"`{c}`" for c, n in sorted(by_commit.items()))
    states = Counter(exp.state for exp in experiments)
    counts = ", ".join(f"{n} {state}" for state, n in sorted(states.items(), key=lambda kv: -kv[1]))
    text = (f"The {len(experiments)} experiments ({counts}) were queued at commit {ran}, the code they train with"
            if experiments else "No experiment has run")
    return text + (f"; this page was rendered at commit `{rendered_at}`." if rendered_at else ".")


def finished_line(experiments: Sequence[Experiment]) -> str:
    """How many successful experiments finished learning (the plateau criterion of their metrics)."""
    plateaus = [m.get("plateau") for e in experiments if e.state == "success" for m in e.metrics.values()]
    known = [p for p in plateaus if isinstance(p, dict) and "plateaued" in p]
    if not known:
        return ""
    done = sum(bool(p["plateaued"]) for p in known)
    return (f"{done} of the {len(known)} successful ones finished learning in every seed (the last quarter of the "
            f"epochs raised the best test top-1 by at most 1 point)"
            + ("." if done == len(known) else ": the others' numbers are not final for their budget."))


def compare(a: Result | None, b: Result | None) -> tuple[float, float | None] | None:
    """(mean a - mean b, its standard error or None without two seeds a side); None without both."""
    if a is None or b is None:
        return None
    if a.std is None or b.std is None:
        return a.mean - b.mean, None
    return a.mean - b.mean, standard_error(Sample(a.mean, a.std, a.seeds), Sample(b.mean, b.std, b.seeds))


def difference_in_words(diff: tuple[float, float | None] | None, what: str = "points") -> str:
    """'+1.76 ± 0.65 points, beyond two standard errors' (or within; or one seed: no spread)."""
    if diff is None:
        return "not measured"
    gap, se = diff
    if se is None:
        return f"{gap:+.2f} {what} (one seed: no spread, inconclusive)"
    return f"{gap:+.2f} ± {se:.2f} {what}, {'beyond' if beyond(diff) else 'within'} two standard errors"


def beyond(diff: tuple[float, float | None] | None) -> bool:
    """The difference clears two standard errors (with a spread on both sides)."""
    return diff is not None and diff[1] is not None and abs(diff[0]) > K_STANDARD_ERRORS * diff[1]


# -- rows and cell formats ------------------------------------------------------------------------
def point_row(point: GridPoint, exps: Sequence[Experiment]) -> dict[str, Any]:
    """A point's row: the experiment standing for it, its state and result, best top-1 mean, std, seeds, FLOPs
    (M) and reason."""
    experiment, result = point_result(point, exps)
    return {"point": point.name, "experiment": experiment, "state": point_state(point, exps), "result": result,
            "mean": result.mean if result else None, "std": result.std if result else None,
            "seeds": result.seeds if result else None,
            "flops_m": flops_m(result.flops if result and result.flops else point.flops), "reason": point.reason or ""}


def mean_std(result: Result | None) -> str:
    """A result's best top-1 as 'mean ± std', 'mean (1 seed)' without spread, '-' without result."""
    if result is None:
        return "-"
    return f"{result.mean:.2f}" + (" (1 seed)" if result.std is None else f" ± {result.std:.2f}")


def flops_m(flops: int | None) -> float | None:
    """FLOPs in millions (None for none)."""
    return flops / 1e6 if flops else None


def mflops_cell(mflops: Any) -> str:
    """FLOPs in millions as a table cell ('-' for none)."""
    return "-" if missing(mflops) or not mflops else f"{mflops:.2f}"


def _short(value: Any) -> str:
    return "[" + ", ".join(map(str, value)) + "]" if isinstance(value, (list, tuple)) else str(value)


def _sorted(values: list[str]) -> list[str]:
    try:
        return sorted(values, key=float)
    except ValueError:
        return values
