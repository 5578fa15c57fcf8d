"""The tables and figures of reports/ablations.html (notebooks/ablations.ipynb, `dgc ablations`): the
grid of params.yaml with the saved experiments sorted onto it, one panel per knob, DGC against the
static group conv, and every point with its experiments.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from dgc.experiments import about
from dgc.experiments.about import flops_m, mean_std, mflops_cell
from dgc.experiments.grid import (AXES, AXIS_LABEL, DGC_MODEL, Experiment, GridPoint, Matched,
                                  grid_of_profile, grid_points, match_experiments, point_state, result_of, section)
from dgc.experiments.queue import read_inputs
from dgc.figures import plt  # Agg, the pages' fonts
from dgc.notebook import missing

NO_EXPERIMENTS = ("**No experiments have been run yet.** Queue the grid with "
                  "`dgc ablations queue --grid smoke` (or `--grid paper` after `dgc use-profile paper`), "
                  "run it with `dvc queue start -j 1`, then `dgc ablations` again (see docs/ablations.md).")


def load_page(experiments_json: str | Path, params_path: str | Path = "params.yaml",
              grid: str | None = None) -> Matched:
    """The grid of params_path (its profile's unless `grid`) with the saved experiments sorted onto it."""
    params, experiments = read_inputs(experiments_json, params_path)
    return match_experiments(grid_points(params, grid or grid_of_profile(params)), experiments, params)


# -- tables ----------------------------------------------------------------------------------------
def experiments_table(matched: Matched) -> pd.DataFrame:
    """Every grid point with every experiment of it (a point without one: a row saying so)."""
    rows = []
    for point in matched.points:
        for exp in matched.by_point[point.name] or [None]:
            result = result_of(exp, point.model, point.dataset) if exp else None
            seeds = str(len(section(exp.params, "train").get("seeds") or [])) if exp else "-"
            flops = result.flops if result and result.flops else point.flops
            rows.append({"experiment": exp.name if exp else point.name, "knob": AXIS_LABEL[point.axis],
                         "value": _value_label(point), "model": point.model, "seeds": seeds,
                         "best top-1 (%)": mean_std(result), "FLOPs expected (M)": mflops_cell(flops_m(flops)),
                         "state": exp.state if exp else point_state(point, []), "why": point.reason or ""})
    return pd.DataFrame(rows)


def others_table(matched: Matched) -> pd.DataFrame:
    """Experiments that are no point of the grid, with what they change and their state."""
    rows = []
    for exp, diff in matched.others:
        pipeline = section(exp.params, "pipeline")
        results = [f"{d}-{m}: {mean_std(r)}" for d in pipeline.get("datasets") or []
                   for m in pipeline.get("models") or [] if m == DGC_MODEL
                   for r in [result_of(exp, m, d)] if r]
        rows.append({"experiment": exp.name, "changes": diff,
                     "seeds": len(section(exp.params, "train").get("seeds") or []),
                     f"{DGC_MODEL} best top-1 (%)": "; ".join(results) or "-", "state": exp.state})
    return pd.DataFrame(rows)


def axis_panel(matched: Matched, axis: str) -> pd.DataFrame:
    """The points of one DGC axis and the baseline (at its own value of that knob), by value."""
    rows = [_panel_row(p, matched.by_point[p.name], p.knobs[axis]) for p in matched.points
            if p.model == DGC_MODEL and p.axis in (axis, "baseline")]
    return pd.DataFrame(rows).sort_values("value", kind="stable").reset_index(drop=True) if rows else pd.DataFrame()


def static_gc_panel(matched: Matched) -> pd.DataFrame:
    """Per pruning rate: DGC (the baseline or the pruning point) next to the static group conv."""
    rows = []
    dgc = {p.knobs["pruning"]: p for p in matched.points if p.model == DGC_MODEL and p.axis in ("baseline", "pruning")}
    for point in (p for p in matched.points if p.axis == "static_gc"):
        for kind, p in (("DGC", dgc.get(point.value)), ("static group conv", point)):
            if p is not None:
                rows.append({"model": kind, **_panel_row(p, matched.by_point[p.name], point.value),
                             "groups": point.knobs["groups"] if kind != "DGC" else "-"})
    return pd.DataFrame(rows)


def _panel_row(point: GridPoint, exps: Sequence[Experiment], value: float) -> dict[str, Any]:
    return {"value": value, "baseline": point.axis == "baseline", **about.point_row(point, exps)}


def panel_table(panel: pd.DataFrame, axis: str) -> pd.DataFrame:
    """The table under a panel: value, state, accuracy (mean ± std) and FLOPs per point."""
    if panel.empty:
        return panel
    out = pd.DataFrame({
        **({"model": panel["model"]} if "model" in panel else {}),
        AXIS_LABEL.get(axis, axis): [f"{v:g}" + (" (baseline)" if b else "")
                                     for v, b in zip(panel["value"], panel["baseline"])],
        **({"groups": panel["groups"]} if "groups" in panel else {}),
        "experiment": panel["experiment"],
        "best top-1 (%)": [mean_std(r) for r in panel["result"]],
        "FLOPs expected (M)": [mflops_cell(f) for f in panel["flops_m"]],
        "state": list(panel["state"]),
        "why": list(panel["reason"]),
    })
    return out if any(out["why"]) else out.drop(columns="why")


# -- the answer ------------------------------------------------------------------------------------
def answer(matched: Matched) -> str:
    """The page's answer in words (Markdown): per knob, which values differ from the baseline beyond
    two standard errors of the seeds; per pruning rate, DGC against the static group conv."""
    lines = []
    for axis in AXES:
        panel = axis_panel(matched, axis)
        if panel.empty:
            continue
        base = panel[panel["baseline"]].iloc[0]["result"] if panel["baseline"].any() else None
        found, measured = [], 0
        for _, row in panel[~panel["baseline"]].iterrows():
            diff = about.compare(row["result"], base)
            measured += diff is not None
            if about.beyond(diff):
                found.append(f"{row['value']:g}: {about.difference_in_words(diff)}")
        label = AXIS_LABEL[axis]
        if not measured:
            lines.append(f"- **{label}**: no value measured beside the baseline yet.")
        elif found:
            lines.append(f"- **{label}**: against the baseline, " + "; ".join(found) + "; the other values "
                         "are within two standard errors of it.")
        else:
            lines.append(f"- **{label}**: no value differs from the baseline beyond two standard errors of the "
                         f"seeds ({measured} measured): inconclusive.")
    gc = static_gc_panel(matched)
    for rate in sorted(gc["value"].unique()) if not gc.empty else []:
        part = gc[gc["value"] == rate].set_index("model")
        if {"DGC", "static group conv"} <= set(part.index):
            diff = about.compare(part.loc["DGC", "result"], part.loc["static group conv", "result"])
            if diff is not None:
                lines.append(f"- **DGC − static group conv at pruning rate {rate:g}** (equal FLOPs): "
                             f"{about.difference_in_words(diff)}.")
    return "\n".join(lines)


# -- figures ---------------------------------------------------------------------------------------
def figure_panel(panel: pd.DataFrame, axis: str):
    """Best top-1 (mean ± std over seeds) against one knob, the baseline starred, FLOPs on the right
    axis; categorical x so that λ = 0 sits next to 1e-5. Points without a result are named by state."""
    ticks = [_tick(v, s, b) for v, s, b in zip(panel["value"], panel["state"], panel["baseline"])]
    series = [(panel, list(range(len(panel))), "C0", "DGC (densenet86_dgc)", "C7", "FLOPs expected (right axis)")]
    return _figure(series, ticks, AXIS_LABEL[axis], fontsize=8)


def figure_static_gc(panel: pd.DataFrame):
    """DGC against the static group conv at the same FLOPs, per pruning rate."""
    rates = sorted(panel["value"].unique())
    series = []
    for kind, colour in (("DGC", "C0"), ("static group conv", "C3")):
        part = panel[panel["model"] == kind]
        series.append((part, [rates.index(v) for v in part["value"]], colour, kind, colour,
                       f"{kind}: FLOPs expected (right axis)"))
    return _figure(series, [f"{v:g}" for v in rates], "pruning rate (1 - g); static group conv: groups = 1/g")


def _figure(series: list[tuple[pd.DataFrame, list[int], str, str, str, str]], ticks: list[str], xlabel: str, **tick):
    """Each (panel, x, colour, label, FLOPs colour, FLOPs label) series: best top-1 with the baseline starred, its
    FLOPs (M) as open squares on a right-hand axis; one place per tick, one legend under the axes (it hides no
    point)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for part, xs, colour, label, _, _ in series:
        done = [(x, m, s, b) for x, m, s, b in zip(xs, part["mean"], part["std"], part["baseline"]) if not missing(m)]
        if done:
            ax.errorbar([d[0] for d in done], [d[1] for d in done], yerr=[0.0 if missing(d[2]) else d[2] for d in done],
                        marker="o", capsize=4, color=colour, label=f"{label}: best top-1, mean ± std")
            base = [d for d in done if d[3]]
            if base:
                ax.plot([d[0] for d in base], [d[1] for d in base], marker="*", markersize=16, color="gold",
                        markeredgecolor="black", linestyle="none", label="baseline", zorder=5)
    ax.set_ylabel("best top-1 accuracy (%)")
    ax.grid(alpha=0.3)
    ax.set_xticks(list(range(len(ticks))), ticks, **tick)
    ax.set_xlim(-0.5, len(ticks) - 0.5)  # every point has its place, results or not
    ax.set_xlabel(xlabel)
    right = ax.twinx()
    for part, xs, _, _, colour, label in series:
        pts = [(x, f) for x, f in zip(xs, part["flops_m"]) if not missing(f)]
        right.plot([p[0] for p in pts], [p[1] for p in pts], marker="s", markerfacecolor="none",
                   linestyle="--", color=colour, alpha=0.7, label=label)
    right.set_ylabel("FLOPs expected (M), squares", color="C7")
    right.set_ylim(0, 1.15 * max((f for s in series for f in s[0]["flops_m"] if not missing(f)), default=1.0))
    handles, labels = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    if handles + more[0]:
        ax.legend(handles + more[0], labels + more[1], fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.28),
                  ncol=2, frameon=False)
    fig.tight_layout()
    return fig


def _tick(value: float, state: str, baseline: bool) -> str:
    label = f"{value:g}" + ("\n(baseline)" if baseline else "")
    return label if state == "success" else f"{label}\n{state}"


def _value_label(point: GridPoint) -> str:
    if point.axis == "baseline":
        k = point.knobs
        return f"heads {k['heads']}, pruning {k['pruning']:g}, λ {k['lambda']:g}, squeeze {k['squeeze']}"
    if point.axis == "static_gc":
        return f"{point.value:g} (groups {point.knobs['groups']})"
    return f"{point.value:g}"
