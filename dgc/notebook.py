"""Tables, figures and text of the report notebook: they read the pipeline's outputs and compute nothing.

`start()` works from the project root wherever the notebook is opened (Jupyter starts in notebooks/,
papermill in the root) and fills each parameter not injected from params.yaml; a missing input raises
`ReportInputError`, which names the stage that writes it.
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
import platform
import re
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from dgc import figures
from dgc.errors import MissingInput
from dgc.figures import colour, label
from dgc.measure.provenance import git_commit

PRODUCER = {"metrics": "evaluate", "info": "evaluate", "history": "train", "vs_paper": "compare",
            "figures": "plots", "bench": "bench"}
SIDE_PAGES = {"ablations": ("ablations.html", "the ablation grid (heads, pruning rate, sparsity weight, "
                                              "squeeze rate, static group conv at equal FLOPs)"),
              "budget": ("budget.html", "the training-budget study (DGC, its gates, the static group conv "
                                        "and the dense model at 10, 30 and 60 epochs)")}

# The report's sections in order: headings, anchors and cross-references come from this list.
SECTIONS = (
    ("summary", "Summary: what reproduced"),
    ("scope", "Scope and set-up"),
    ("claims", "Claims"),
    ("relations", "Relations between our own runs, with their spread"),
    ("plateau", "Did every run finish learning?"),
    ("models", "Method: accuracy, FLOPs and parameters of every model"),
    ("accuracy_flops", "Results: accuracy against FLOPs"),
    ("curves", "Training and test curves, system figures"),
    ("heads", "What the heads do (and where DGC-G prunes)"),
    ("latency", "Inference latency (measured, not FLOPs)"),
    ("bench", "Layer benchmark: wall-clock time against the FLOPs ratio"),
    ("studies", "Studies beside the pipeline"),
)
METRIC_NAMES = {"best.top1_err": "best top-1 error (%)", "best.top5_err": "best top-5 error (%)",
                "final.top1_err": "final top-1 error (%)", "best.top1_acc": "best top-1 accuracy (%)",
                "flops_expected": "FLOPs", "flops_dense": "FLOPs without pruning (g = 1)",
                "flops_actual": "FLOPs measured", "params": "parameters"}
DATASET_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet": "ImageNet", "digits": "digits"}
VERDICT_ORDER = ("reproduced", "not reproduced", "inconclusive", "not comparable", "not run", "not verified")
NUMBER = re.compile(r"[+\-−]?[\d,.]+( ± [\d.]+)?( \(n=\d+\))?")  # a number written as text

# Left-aligned text, right-aligned numbers, no wrapped ids or "±" values, only in tables of class dgc;
# `!important` because the notebook themes right-align every output table with more specific selectors.
STYLE = """<style>
table.dgc { border-collapse: collapse; margin: 0.4em 0 1em 0; font-size: 13px; }
table.dgc th, table.dgc td { text-align: left !important; padding: 3px 10px; vertical-align: top; border: none; }
table.dgc thead th { border-bottom: 1px solid #999; }
table.dgc tbody tr:nth-child(odd) { background: #f5f5f5; }
table.dgc td.num, table.dgc th.num { text-align: right !important; white-space: nowrap; }
table.dgc td.nowrap { white-space: nowrap; }
div.dgc-summary { border-left: 4px solid #1f77b4; padding: 2px 14px; margin: 6px 0 10px 0; background: #f7fafd; }
div.dgc-summary p, div.dgc-summary li { margin: 3px 0; line-height: 1.35; }
div.dgc-summary ul { margin: 2px 0 4px 0; padding-left: 20px; }
p.dgc-note { font-size: 12px; color: #444; margin: 0 0 1em 0; }
</style>"""


class ReportInputError(MissingInput):
    """An input of the report is missing; the message names the stage that writes it."""


# -- where the notebook runs -------------------------------------------------------------------------
def project_root(start: str | Path | None = None) -> Path:
    """The project folder: the first of `start` (default: the working directory) and its parents
    that holds dvc.yaml and params.yaml, else the folder above this package (an editable install)."""
    here = Path(start or os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file() and (folder / "params.yaml").is_file():
            return folder
    package_root = Path(__file__).resolve().parents[1]
    if (package_root / "dvc.yaml").is_file():
        return package_root
    raise MissingInput(f"no project folder (with dvc.yaml and params.yaml) at or above {here}")


def start(profile: str | None = None, datasets: Sequence[str] | None = None,
          models: Sequence[str] | None = None, reports: str | None = None) -> dict[str, Any]:
    """Move to the project root and return the notebook's settings: each one as injected, else from params.yaml."""
    from dgc.config import load_params

    root = project_root()
    os.chdir(root)
    params = load_params(root / "params.yaml")
    return {"root": root, "profile": profile or params.profile, "reports": reports or "reports",
            "datasets": list(datasets or params.pipeline.datasets), "models": list(models or params.pipeline.models)}


# -- sections ------------------------------------------------------------------------------------------
def section_number(key: str) -> int:
    keys = [k for k, _ in SECTIONS]
    if key not in keys:
        raise KeyError(f"no report section {key!r}; sections: {', '.join(keys)}")
    return keys.index(key) + 1


def heading(key: str) -> str:
    """The Markdown heading of section `key`, numbered by its place in SECTIONS, with an anchor."""
    return f'## {section_number(key)}. {dict(SECTIONS)[key]} <a id="{key}"></a>'


def ref(key: str) -> str:
    """A cross-reference to section `key`: a Markdown link '[section N](#key)'."""
    return f"[section {section_number(key)}](#{key})"


def href(key: str) -> str:
    """The same cross-reference as an HTML link, for HTML outputs."""
    return f'<a href="#{key}">section {section_number(key)}</a>'


# -- inputs --------------------------------------------------------------------------------------------
def _need(path: Path, kind: str) -> Path:
    if not path.exists():
        raise ReportInputError(f"{path} is missing: it is written by the `{PRODUCER[kind]}` stage "
                               f"(run `dvc repro`)")
    return path


def _load_json_dir(folder: Path, kind: str, runs: list[str]) -> dict[str, dict]:
    return {run: json.loads(_need(folder / f"{run}.json", kind).read_text()) for run in runs}


def _history(path: Path) -> pd.DataFrame:
    with open(_need(path, "history")) as fh:
        return pd.DataFrame([{k: float(v) for k, v in r.items()} for r in csv.DictReader(fh)])


def load_inputs(datasets: list[str], models: list[str], reports: str | Path = "reports") -> dict[str, Any]:
    """Everything the report shows, from the pipeline's outputs under `reports`."""
    reports = Path(reports)
    runs = [f"{d}-{m}" for d in datasets for m in models]
    return {"runs": runs,  # histories first: a missing one is the first error a fresh folder shows
            "history": {run: _history(reports / "history" / f"{run}.csv") for run in runs},
            "metrics": _load_json_dir(reports / "metrics", "metrics", runs),
            "info": _load_json_dir(reports / "info", "info", runs),
            "vs_paper": json.loads(_need(reports / "vs_paper.json", "vs_paper").read_text()),
            "figures": reports / "figures", "reports": reports}


def figure_file(inputs: dict[str, Any], name: str) -> str:
    """The path of reports/figures/<name>.png, or a ReportInputError naming the plots stage."""
    return str(_need(inputs["figures"] / f"{name}.png", "figures"))


# -- the summary (the first screen) -------------------------------------------------------------------
def summary_html(inputs: dict[str, Any], profile: str) -> str:
    """The first screen: what reproduced, what was not run and why, our relations, the earlier reproduction."""
    rows = inputs["vs_paper"]["claims"]
    by = {v: [r for r in rows if r["verdict"] == v] for v in VERDICT_ORDER}
    runs, metrics = inputs["runs"], inputs["metrics"]
    seeds = sorted({int(m.get("seeds", 1)) for m in metrics.values()})
    epochs = sorted({int(h["epoch"].max()) for h in inputs["history"].values() if len(h)})
    finished = [r for r, m in metrics.items() if m.get("plateau", {}).get("plateaued")]
    datasets = sorted({r.split("-", 1)[0] for r in runs})
    smoke = profile.startswith("smoke")
    items = [bottom_line(inputs["vs_paper"]),
             f"<b>Profile {html.escape(profile)}</b>: {len(runs)} models x {'/'.join(map(str, seeds))} seeds on "
             f"{', '.join(DATASET_NAMES.get(d, d) for d in datasets)}, {'/'.join(map(str, epochs))} epochs"
             + (" (an offline CPU run with narrow models: it tests the code and the paper's FLOPs, not its "
                "accuracy)" if smoke else "")
             + f"; {len(finished)} of {len(metrics)} models finished learning in every seed ({href('plateau')})."]
    items += [f"<b>{len(by[v])} {v}</b>: {_claims_in_words(by[v])}."
              for v in ("reproduced", "not reproduced", "inconclusive", "not comparable") if by[v]]
    if by["not run"]:
        absent = sorted({r["dataset"] for r in by["not run"]})
        items.append(f"<b>{len(by['not run'])} not run</b>: the accuracy and relation claims on "
                     f"{', '.join(DATASET_NAMES.get(d, d) for d in absent)}; "
                     + ("this profile trains none of them (the paper's 300-epoch recipe needs a GPU: "
                        "<code>dgc use-profile paper</code>, docs/gpus.md)." if smoke else
                        "this profile does not train those datasets or models."))
    if by["not verified"]:
        items.append(f"<b>{len(by['not verified'])} not verified</b>: "
                     + "; ".join(sorted({r['reason'] for r in by['not verified']})) + ".")
    text = "<ul>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"
    evidence = inputs["vs_paper"].get("smoke_evidence") or []
    if evidence:
        text += (f"<p>The paper's relations, tested on these runs ({href('relations')}; not the paper's "
                 f"setting, so they decide none of its claims): a relation holds or does not hold only "
                 f"when the difference of the means clears two standard errors.</p>"
                 + html_table(relations_table(evidence, brief=True), nowrap=("model", "versus", "verdict")))
    earlier = earlier_in_words(inputs["vs_paper"].get("references") or [])
    if earlier:
        text += f"<p>{earlier}</p>"
    text += (f"<p>Every claim: {href('claims')}. Beside the pipeline: "
             + ", ".join(f'<a href="{page}">{what.split(" (")[0]}</a>' for page, what in SIDE_PAGES.values())
             + f" ({href('studies')}).</p>")
    return f'<div class="dgc-summary">{text}</div>'


def bottom_line(vs_paper: dict[str, Any]) -> str:
    """The report's answer in one sentence: what reproduced, what was not run, what our relations say."""
    rows = vs_paper["claims"]
    count = {v: sum(r["verdict"] == v for r in rows) for v in VERDICT_ORDER}
    parts = []
    arch = [r for r in rows if r["kind"] == "architecture"]
    if arch and all(r["verdict"] == "reproduced" for r in arch):
        parts.append(f"the paper's {len(arch)} FLOPs and parameter counts reproduce exactly")
    elif arch:
        parts.append(f"{sum(r['verdict'] == 'reproduced' for r in arch)} of the paper's {len(arch)} FLOPs and "
                     f"parameter counts reproduce")
    trained = [r for r in rows if r["kind"] in ("accuracy", "relation")]
    ran = [r for r in trained if r["verdict"] != "not run"]
    if trained and not ran:
        parts.append("its accuracy claims were not run here")
    elif ran:
        parts.append(f"of its {len(trained)} accuracy and relation claims {count['reproduced'] - len(arch)} "
                     f"reproduced, {count['not reproduced']} did not, {count['inconclusive']} are inconclusive "
                     f"and {count['not run']} were not run")
    evidence = vs_paper.get("smoke_evidence") or []
    if evidence:
        said = [f"{r['statement'].split(':')[0].strip()}: <b>{r['verdict']}</b>" for r in evidence]
        parts.append("on this run's own models (not the paper's setting) " + "; ".join(said))
    return "<b>In short</b>: " + "; ".join(parts) + "."


def _claims_in_words(rows: list[dict[str, Any]]) -> str:
    """'all 10 FLOPs and parameter counts, exactly (densenet86_dgc on cifar10, ...)' and the like."""
    kinds = sorted({r["kind"] for r in rows})
    what = {"architecture": "FLOPs and parameter counts", "accuracy": "accuracy numbers",
            "relation": "relations between models"}
    exact = all(r["delta"] == 0 for r in rows if r["delta"] is not None) and kinds == ["architecture"]
    models = sorted({f"{r['model']} ({DATASET_NAMES.get(r['dataset'], r['dataset'])})" for r in rows})
    return (" and ".join(what.get(k, k) for k in kinds) + (", equal to the authors' counter" if exact else "")
            + ": " + ", ".join(models))


def earlier_in_words(references: list[dict[str, Any]]) -> str:
    """The earlier reproduction's top-1 numbers next to the paper's, in one sentence."""
    pairs = [r for r in references if r["metric"] == "best.top1_err" and r.get("paper") is not None
             and r.get("earlier") is not None]
    if not pairs:
        return ""
    parts = [f"{DATASET_NAMES.get(r['dataset'], r['dataset'])} {r['earlier']:.2f} % (paper {r['paper']:.2f} %, "
             f"{r['earlier'] - r['paper']:+.2f})" for r in pairs]
    return ("An earlier reproduction with the authors' code (MLRC 2020, 300 epochs, one P100) measured a "
            "top-1 error of " + "; ".join(parts) + ": the paper's DenseNet-86 numbers hold within half a "
            "point there. This pipeline's own CIFAR runs come from the paper profile.")


# -- tables ------------------------------------------------------------------------------------------
def html_table(df: pd.DataFrame, nowrap: Sequence[str] = ()) -> str:
    """A plain HTML table of class dgc: numbers right-aligned, text left-aligned, the `nowrap`
    columns and every number on one line; no random ids, so re-rendering gives the same bytes."""
    numeric = {c for c in df.columns if _is_numeric(df[c])}
    head = "".join(f'<th{" class=num" if c in numeric else ""}>{html.escape(str(c))}</th>' for c in df.columns)
    body = []
    for _, row in df.iterrows():
        classes = ["num" if c in numeric else "nowrap" if c in nowrap or "±" in str(row[c]) else "" for c in df.columns]
        body.append("<tr>" + "".join(f'<td{f" class={k}" if k else ""}>{_cell(row[c])}</td>'
                                     for c, k in zip(df.columns, classes)) + "</tr>")
    return f'<table class="dgc"><thead><tr>{head}</tr></thead><tbody>' + "".join(body) + "</tbody></table>"


def _is_numeric(series: pd.Series) -> bool:
    """Every value is a number, or a number written as text ('3.80 ± 1.05 (n=3)', '+1.76', '1,234')."""
    values = [v for v in series if not missing(v)]
    return bool(values) and all(NUMBER.fullmatch(v) if isinstance(v, str)
                                else isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def missing(value: Any) -> bool:
    """No value in a table's cell: None, or NaN (what pandas makes of None in a float column)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _cell(value: Any) -> str:
    """A cell's HTML: '-' for nothing, integers with thousands separators, text escaped unless it starts with '<'."""
    if missing(value):
        return "-"
    if isinstance(value, float) and value.is_integer() and abs(value) >= 1000:
        return f"{int(value):,}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    text = str(value)
    return text if text.startswith("<") else html.escape(text)


def summary_table(inputs: dict[str, Any], profile: str) -> pd.DataFrame:
    """Profile, hardware, training time, versions and commit."""
    import torch

    info = next(iter(inputs["info"].values()), {})
    train_s = sum(h["epoch_seconds"].sum() for h in inputs["history"].values())
    epochs = {int(h["epoch"].max()) for h in inputs["history"].values() if len(h)}
    seeds = sorted({s for i in inputs["info"].values() for s in i.get("seeds", [])})
    runtimes = sorted({", ".join(f"{k} {v}" for k, v in i["runtime"].items())  # device, precision, layout, compile
                       for i in inputs["info"].values() if i.get("runtime")})
    smoke = " (offline smoke run: not comparable with the paper)" if profile.startswith("smoke") else ""
    rows = [("profile", profile + smoke),
            ("models", f"{len(inputs['runs'])}: {', '.join(figures.model_of(r) for r in inputs['runs'])}"),
            ("datasets", ", ".join(sorted({r.split('-', 1)[0] for r in inputs["runs"]}))),
            ("seeds", ", ".join(map(str, seeds)) or "-"),
            ("epochs per run", ", ".join(str(e) for e in sorted(epochs))),
            ("training time, all runs", f"{train_s / 60:.1f} min (sum of epoch times)"),
            ("training device and precision", "; ".join(runtimes) or "-"),
            ("evaluation device", info.get("latency_device", "-")),
            ("python / torch", f"{platform.python_version()} / {torch.__version__}"),
            ("git commit", git_commit())]
    return pd.DataFrame(rows, columns=["setting", "value"])


def claims_sections(inputs: dict[str, Any]) -> list[tuple[str, str]]:
    """(title, HTML) per verdict in VERDICT_ORDER: a table per group with our numbers, a short list per
    dataset for the not-run and not-verified ones; a reason shared by every row is said once under it."""
    out = []
    for verdict in VERDICT_ORDER:
        group = [r for r in inputs["vs_paper"]["claims"] if r["verdict"] == verdict]
        if group:
            show = _claims_list if verdict in ("not run", "not verified") else _claims_group_table
            out.append((f"{verdict.capitalize()} ({len(group)})", show(group)))
    return out


def _claims_group_table(group: list[dict[str, Any]]) -> str:
    reasons = {r["reason"] for r in group}
    shared = reasons.pop() if len(reasons) == 1 else None
    table = []
    for r in group:
        ours = "-" if r["ours"] is None else _num(r["ours"], r["unit"])
        if r.get("spread") is not None:
            ours += f" ± {r['spread']:.2f}"
        row = {"claim": r["claim"], "id": r["id"], "dataset": DATASET_NAMES.get(r["dataset"], r["dataset"]),
               "model": r["model"], "quantity": METRIC_NAMES.get(r["metric"], r["metric"]),
               "paper": _paper_value(r), "ours": ours,
               "difference": "-" if r["delta"] is None else _num(r["delta"], r["unit"])}
        if any(g.get("earlier") is not None for g in group):
            row["earlier reproduction"] = "-" if r.get("earlier") is None else _num(r["earlier"], r["unit"])
        if shared is None:
            row["why"] = r["reason"]
        table.append(row)
    frame = _drop_constant(pd.DataFrame(table), keep=("claim", "id", "paper", "ours", "difference"))
    note = f'<p class="dgc-note">All rows: {html.escape(shared)}.</p>' if shared else ""
    return html_table(frame, nowrap=("id", "model", "quantity")) + note


def _claims_list(group: list[dict[str, Any]]) -> str:
    """One line per dataset: each claim's id, model, quantity and the paper's value; the reason once."""
    lines = []
    for dataset in sorted({r["dataset"] for r in group}):
        mine = [r for r in group if r["dataset"] == dataset]
        parts = [f"<code>{html.escape(r['id'])}</code> {html.escape(r['model'])} "
                 f"{html.escape(METRIC_NAMES.get(r['metric'], r['metric']))} {html.escape(_paper_value(r))}"
                 for r in mine]
        lines.append(f"<li><b>{DATASET_NAMES.get(dataset, dataset)}</b> ({len(mine)}): {'; '.join(parts)}</li>")
    reasons = sorted({"this run has no metrics for these datasets (no such training in this profile)"
                      if r["verdict"] == "not run" else r["reason"] for r in group})
    return "<ul>" + "".join(lines) + "</ul>" + f'<p class="dgc-note">Why: {html.escape("; ".join(reasons))}.</p>'


def _paper_value(r: dict[str, Any]) -> str:
    if r["paper"] is not None:
        return _num(r["paper"], r["unit"])
    return f"≤ {r['versus']}" if r["versus"] else "unknown"


def _num(value: float, unit: str = "") -> str:
    return f"{value:.2f}" if unit == "%" or not float(value).is_integer() else f"{int(value):,}"


def _drop_constant(frame: pd.DataFrame, keep: Sequence[str] = ()) -> pd.DataFrame:
    """Without the columns that hold one value in every row (said elsewhere), but those in `keep`."""
    return frame[[c for c in frame.columns if len(frame) < 2 or c in keep or frame[c].astype(str).nunique() > 1]]


def relations_table(evidence: list[dict[str, Any]], brief: bool = False) -> pd.DataFrame:
    """The relation verdicts on our runs (vs_paper.json `smoke_evidence`); unless `brief`, the claims and why."""
    rows = []
    for r in evidence:
        row = {"relation": r["statement"].split(":")[0], "model": r["model"], "versus": r["versus"],
               "error (%), model": f"{r['ours']:.2f} ± {r['ours_std']:.2f} (n={r['seeds']})",
               "error (%), versus": f"{r['baseline']:.2f} ± {r['baseline_std']:.2f} (n={r['baseline_seeds']})",
               "difference ± s.e.": f"{r['delta']:+.2f}" + ("" if r.get("standard_error") is None
                                                             else f" ± {r['standard_error']:.2f}"),
               "verdict": f"<b>{r['verdict']}</b>"}
        if not brief:
            row["claims"] = "<span>" + "<br>".join(html.escape(c) for c in r["claims"]) + "</span>"
            row["why"] = relation_in_words(r)
        rows.append(row)
    return pd.DataFrame(rows)


def relation_in_words(r: dict[str, Any]) -> str:
    """'densenet86_dgc's error is 3.15 points above densenet86's; the claim allows 0.5, and the excess ...'."""
    d, se, tol = r["delta"], r.get("standard_error"), r.get("tolerance", 0.0)
    margin = tol - d
    text = f"{r['model']}'s error is {abs(d):.2f} points {'above' if d > 0 else 'below'} {r['versus']}'s"
    text += f"; the claim allows {tol:g}" if tol else "; the claim allows none"
    if se is None:
        return text + ", and with one seed on a side no spread is known"
    if r["verdict"] == "holds":
        return text + f", and the claim holds by {margin:.2f}, more than two standard errors ({2 * se:.2f})"
    if r["verdict"] == "does not hold":
        return text + f", and the excess of {-margin:.2f} is more than two standard errors ({2 * se:.2f})"
    return text + f": the margin ({margin:+.2f}) is within two standard errors ({2 * se:.2f})"


def plateau_table(inputs: dict[str, Any]) -> pd.DataFrame:
    """Per run: seeds, the largest last-quarter gain over its seeds and whether all seeds plateaued."""
    rows = []
    for run in inputs["runs"]:
        m = inputs["metrics"][run]
        p = m.get("plateau", {})
        gain = p.get("late_gain")
        rows.append({"run": run, "seeds": m.get("seeds", 1),
                     "epochs": int(inputs["history"][run]["epoch"].max()) if run in inputs["history"] else None,
                     "best top-1 (%), mean ± std": _mean_std(m, "best", "top1_acc"),
                     "last-quarter gain (points, worst seed)": None if gain is None else round(gain, 2),
                     "finished learning": "yes" if p.get("plateaued") else "no"})
    return pd.DataFrame(rows)


def _mean_std(m: dict[str, Any], part: str, key: str) -> str:
    """'96.20 ± 1.05': metrics' `part` (best, final) value of `key` and its std over the seeds."""
    return f"{m[part][key]:.2f} ± {m.get(part + '_std', {}).get(key, 0.0):.2f}"


def unfinished_runs(inputs: dict[str, Any]) -> list[str]:
    return sorted(r for r, m in inputs["metrics"].items() if not m.get("plateau", {}).get("plateaued"))


def models_table(inputs: dict[str, Any]) -> pd.DataFrame:
    """Accuracy, FLOPs (dense, expected, actual) and params per run, DGC next to its baselines."""
    rows = []
    for run in inputs["runs"]:
        m = inputs["metrics"][run]
        dataset, model = run.split("-", 1)
        rows.append({"dataset": dataset, "model": model, "seeds": m.get("seeds", 1),
                     "best top-1 (%)": _mean_std(m, "best", "top1_acc"),
                     "best top-5 (%)": _mean_std(m, "best", "top5_acc"),
                     "final top-1 (%)": _mean_std(m, "final", "top1_acc"),
                     **{f"FLOPs {k} (M)": round(m[f"flops_{k}"] / 1e6, 3) for k in ("dense", "expected", "actual")},
                     "params (K)": round(m["params"] / 1e3, 1)})
    return _drop_constant(pd.DataFrame(rows), keep=("model", "seeds", "best top-1 (%)"))


def latency_table(inputs: dict[str, Any]) -> pd.DataFrame:
    """Median ms per image per model and batch size: every runtime timed side by side, and the fastest."""
    rows = []
    for run in inputs["runs"]:
        m, info = inputs["metrics"][run], inputs["info"][run]
        dataset, model = run.split("-", 1)
        by_runtime = m.get("latency_ms_per_image_by_runtime") or {"as timed": m["latency_ms_per_image"]}
        fastest = info.get("latency_runtime") or {}
        for batch in sorted(m["latency_ms_per_image"], key=_batch_size):
            row = {"dataset": dataset, "model": model, "FLOPs expected (M)": round(m["flops_expected"] / 1e6, 3),
                   "batch": _batch_size(batch)}
            row.update({f"{runtime} (ms)": round(times[batch], 3) for runtime, times in by_runtime.items()
                        if batch in times})
            if fastest.get(batch):
                row["fastest"] = fastest[batch]
            rows.append(row)
    frame = pd.DataFrame(rows)
    return _drop_constant(frame, keep=("model", "batch", "fastest", *(c for c in frame.columns if c.endswith("(ms)"))))


def _batch_size(key: str) -> int:
    return int(key.split("_")[1])


def latency_note(inputs: dict[str, Any]) -> str:
    """How the latency was timed: device, runtimes, repeats and statistic, from reports/info."""
    infos = list(inputs["info"].values())
    devices = sorted({i.get("latency_device", "-") for i in infos})
    compiles = sorted({i.get("latency_compile", "off") for i in infos})
    repeats = sorted({str(i["latency_repeats"]) for i in infos if "latency_repeats" in i})
    runtimes = sorted({r for i in infos for r in i.get("latency_runtimes", [])})
    skipped = sorted({f"{r}: {why}" for i in infos for r, why in (i.get("latency_skipped") or {}).items()})
    text = (f"Timed on {', '.join(devices)}"
            + (f" in each of these runtimes: {', '.join(runtimes)} (`evaluate.runtimes`)" if runtimes else "")
            + f"; torch.compile {', '.join(compiles)}; eval mode on random inputs of the dataset's size, the "
            f"median of {', '.join(repeats) or 'evaluate.latency_repeats'} timed repeats per batch size after "
            f"warm-up; the DGC layers run the execution `auto` picks for the device and shape (docs/speed.md).")
    if skipped:
        text += " Not timed: " + "; ".join(skipped) + "."
    return text


def layer_usage_table(inputs: dict[str, Any]) -> pd.DataFrame:
    """Per DGC layer of each run: input channels, fraction selected and used, head overlap (reports/info)."""
    return pd.DataFrame([{"run": run, "layer": layer["name"], "C_in": layer["in_channels"],
                          "selected": round(layer["kept_fraction"], 3),
                          "kept (measured)": round(layer["active_fraction"], 3),
                          "head overlap (Jaccard)": round(layer["head_overlap"], 3)}
                         for run in inputs["runs"] for layer in inputs["info"][run].get("layers", [])])


def layer_usage_summary(inputs: dict[str, Any]) -> pd.DataFrame:
    """Per DGC run, the mean over its layers of the selected and used fractions and the head overlap."""
    table = layer_usage_table(inputs)
    if table.empty:
        return table
    means = table.groupby("run", sort=False)[["selected", "kept (measured)", "head overlap (Jaccard)"]].mean()
    return means.round(3).reset_index().rename(columns=lambda c: f"{c}, mean over layers" if c != "run" else c)


def figure_layer_usage(inputs: dict[str, Any]):
    """Per DGC layer in network order, the fraction of input channels used and the heads' overlap."""
    table = layer_usage_table(inputs)
    fig, axes = figures.figure(1, 2, height=3.2)
    for ax, (column, text) in zip(axes[0], (("kept (measured)", "input channels used (fraction)"),
                                            ("head overlap (Jaccard)", "head overlap (mean pairwise Jaccard)"))):
        for run, part in table.groupby("run", sort=False):
            ax.plot(range(1, len(part) + 1), part[column], marker=figures.marker(run), color=colour(run),
                    label=label(run), linestyle=figures.linestyle(run))
        ax.set_ylabel(text)
        ax.set_xlabel("DGC layer (network order)")
        ax.grid(alpha=0.3)
    figures.legend_below(fig, axes[0], ncol=4)
    return fig


def figure_latency(inputs: dict[str, Any]):
    """Bars of ms per image in the fastest runtime, a panel per batch size, a colour per model."""
    rows = [(run, _batch_size(b), ms) for run in inputs["runs"]
            for b, ms in inputs["metrics"][run]["latency_ms_per_image"].items()]
    batches = sorted({b for _, b, _ in rows})
    fig, axes = figures.figure(1, len(batches), height=0.35 * len(inputs["runs"]) + 1.6)
    for ax, batch in zip(axes[0], batches):
        part = [(run, ms) for run, b, ms in rows if b == batch]
        ax.barh([figures.model_of(r) for r, _ in part], [ms for _, ms in part],
                color=[colour(r) for r, _ in part])
        ax.invert_yaxis()
        ax.set_title(f"batch {batch}")
        ax.set_xlabel("milliseconds per image (median, fastest runtime)")
        ax.grid(alpha=0.3, axis="x")
    return fig


to_png = figures.png_bytes  # the study notebooks import it from here


def bench_table(reports: str | Path = "reports") -> tuple[pd.DataFrame, str] | None:
    """`dgc bench`'s layer timings (reports/bench.json) by the FLOPs ratio and a note on them; None if not run."""
    path = Path(reports) / "bench.json"
    if not path.exists():
        return None
    bench = json.loads(path.read_text())
    rows = [{"layer (C_in->C_out, kernel, size)": row["shape"], "mode": mode,
             "dense ms": round(t["dense"], 1), "4-group ms": round(t["group4"], 1),
             "DGC authors' (masked) ms": round(t["dgc_masked"], 1), "DGC ours (auto) ms": round(t["dgc_auto"], 1),
             "ours / dense": round(t["dgc_auto"] / t["dense"], 2),
             "ours / 4-group": round(t["dgc_auto"] / t["group4"], 2)}
            for row in bench["layers"] for mode, t in (("inference", row["inference_ms"]), ("train", row["train_ms"]))]
    prov = bench.get("provenance", {})
    note = (f"Batch {bench.get('batch', '-')}, {bench.get('heads', '-')} heads, gate factor "
            f"{bench.get('gate_factor', '-')} (DGC's FLOPs are {bench.get('gate_factor', '-')} of the dense "
            f"layer's), the median of {bench.get('repeats', '-')} repeats, candidates timed in turn, on "
            f"{bench.get('device', '-')}; commit {prov.get('commit', '-')}, {prov.get('date', '-')}. A "
            f"training step is forward and backward. <i>auto</i> is the execution the layer picks by itself "
            f"for the device, shape and mode (on a CPU: at inference the C++ gather kernel `fused_cpu`; in "
            f"training the sparse execution for k x k convs that keep at most 30 % of their channels, else "
            f"the scaled-weight one; docs/speed.md).")
    return pd.DataFrame(rows), note


def studies_html() -> str:
    """Links to the study pages, with what each holds."""
    items = "".join(f'<li><a href="{page}">reports/{page}</a>: {what}; its settings, the commit its '
                    f'experiments ran at and its answer are on its first screen.</li>'
                    for page, what in SIDE_PAGES.values())
    return f"<ul>{items}</ul>"

