"""The tables and figures of reports/ablations.html (notebooks/ablations.ipynb, `dgc ablations`):
the ablation grid of params.yaml with the experiments of a saved `dvc exp show --json` sorted onto
it, one panel per knob, DGC against the static group conv, every point with its experiments and the
experiments that are no point; and the cell formats (mean ± std, FLOPs in millions) that
reports/budget.html shares (dgc.experiments.budget).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from dgc.experiments import about  # noqa: E402
from dgc.experiments.grid import (  # noqa: E402
    AXES,
    AXIS_LABEL,
    DGC_MODEL,
    Experiment,
    GridPoint,
    Matched,
    Result,
    grid_of_profile,
    grid_points,
    match_experiments,
    point_result,
    point_state,
    result_of,
    section,
)
from dgc.experiments.queue import read_inputs  # noqa: E402

NO_EXPERIMENTS = ("**No experiments have been run yet.** Queue the grid with "
                  "`dgc ablations queue --grid smoke` (or `--grid paper` after `dgc use-profile paper`), "
                  "run it with `dvc queue start -j 1`, then `dgc ablations` again (see docs/ablations.md).")


def load_page(experiments_json: str | Path, params_path: str | Path = "params.yaml",
              grid: str | None = None) -> Matched:
    """What reports/ablations.html shows: the grid of params_path (the grid of its profile unless
    `grid`), with the experiments of the saved `dvc exp show --json` sorted onto it. An absent or
    empty experiments file means no experiments."""
    params, experiments = read_inputs(experiments_json, params_path)
    points = grid_points(params, grid or grid_of_profile(params))
    return match_experiments(points, experiments, params)


# -- tables ----------------------------------------------------------------------------------------
def experiments_table(matched: Matched) -> pd.DataFrame:
    """Every grid point with every experiment of it (a point without one: a row saying so), then
    nothing else: experiments that are no grid point are in `others_table`."""
    rows = []
    for point in matched.points:
        exps = matched.by_point[point.name] or [None]
        for exp in exps:
            result = result_of(exp, point.model, point.dataset) if exp else None
            seeds = len(section(exp.params, "train").get("seeds") or []) if exp else None
            rows.append({"experiment": exp.name if exp else point.name,
                         "knob": AXIS_LABEL[point.axis],
                         "value": _value_label(point),
                         "model": point.model,
                         "seeds": "-" if seeds is None else str(seeds),
                         "best top-1 (%)": mean_std(result),
                         "FLOPs expected (M)": _mflops(result.flops if result and result.flops else point.flops),
                         "state": exp.state if exp else point_state(point, []),
                         "why": point.reason or ""})
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
    rows = []
    for point in matched.points:
        if point.model != DGC_MODEL or point.axis not in (axis, "baseline"):
            continue
        rows.append(_panel_row(point, matched.by_point[point.name], point.knobs[axis]))
    return pd.DataFrame(rows).sort_values("value", kind="stable").reset_index(drop=True) if rows else pd.DataFrame()


def static_gc_panel(matched: Matched) -> pd.DataFrame:
    """Per pruning rate: DGC (the baseline or the pruning point) next to the static group conv."""
    rows = []
    dgc = {p.knobs["pruning"]: p for p in matched.points
           if p.model == DGC_MODEL and p.axis in ("baseline", "pruning")}
    for point in matched.points:
        if point.axis != "static_gc":
            continue
        for kind, p in (("DGC", dgc.get(point.value)), ("static group conv", point)):
            if p is not None:
                row = _panel_row(p, matched.by_point[p.name], point.value)
                rows.append({"model": kind, **row,
                             "groups": point.knobs["groups"] if kind != "DGC" else "-"})
    return pd.DataFrame(rows)


def _panel_row(point: GridPoint, exps: Sequence[Experiment], value: float) -> dict[str, Any]:
    experiment, result = point_result(point, exps)
    return {"value": value, "point": point.name, "baseline": point.axis == "baseline",
            "experiment": experiment,
            "state": point_state(point, exps),
            "mean": result.mean if result else None,
            "std": result.std if result else None,
            "seeds": result.seeds if result else None,
            "flops_m": flops_m(result.flops if result and result.flops else point.flops),
            "reason": point.reason or ""}


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
        "best top-1 (%)": [mean_std(Result(m, None if s is None or _nan(s) else s, 0, None))
                           if m is not None and not _nan(m) else "-"
                           for m, s in zip(panel["mean"], panel["std"])],
        "FLOPs expected (M)": [_mflops(f * 1e6) if f and not _nan(f) else "-" for f in panel["flops_m"]],
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
        base = _result_of_row(panel[panel["baseline"]].iloc[0]) if panel["baseline"].any() else None
        found, measured = [], 0
        for _, row in panel[~panel["baseline"]].iterrows():
            diff = about.compare(_result_of_row(row), base)
            if diff is None:
                continue
            measured += 1
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
            diff = about.compare(_result_of_row(part.loc["DGC"]), _result_of_row(part.loc["static group conv"]))
            if diff is not None:
                lines.append(f"- **DGC − static group conv at pruning rate {rate:g}** (equal FLOPs): "
                             f"{about.difference_in_words(diff)}.")
    return "\n".join(lines)


def _result_of_row(row) -> Result | None:
    if missing(row["mean"]):
        return None
    return Result(float(row["mean"]), None if missing(row["std"]) else float(row["std"]),
                  0 if missing(row["seeds"]) else int(row["seeds"]), None)


# -- figures ---------------------------------------------------------------------------------------
def figure_panel(panel: pd.DataFrame, axis: str):
    """Best top-1 (mean ± std over seeds) against one knob, the baseline starred, FLOPs on the right
    axis; categorical x so that λ = 0 sits next to 1e-5. Points without a result are named by state."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    _plot_series(ax, panel, "C0", "DGC (densenet86_dgc)")
    xs = range(len(panel))
    ax.set_xticks(list(xs), [_tick(v, s, b) for v, s, b in zip(panel["value"], panel["state"], panel["baseline"])],
                  fontsize=8)
    ax.set_xlim(-0.5, len(panel) - 0.5)  # every point has its place, results or not
    ax.set_xlabel(AXIS_LABEL[axis])
    _legend(ax, _flops_axis(ax, [(list(xs), panel["flops_m"], "C7", "FLOPs expected (right axis)")]))
    fig.tight_layout()
    return fig


def figure_static_gc(panel: pd.DataFrame):
    """DGC against the static group conv at the same FLOPs, per pruning rate."""
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    rates = sorted(panel["value"].unique())
    position = {v: i for i, v in enumerate(rates)}
    series = []
    for (kind, colour) in (("DGC", "C0"), ("static group conv", "C3")):
        part = panel[panel["model"] == kind].copy()
        part["x"] = [position[v] for v in part["value"]]
        _plot_series(ax, part, colour, kind, x=part["x"])
        series.append((list(part["x"]), part["flops_m"], colour, f"{kind}: FLOPs expected (right axis)"))
    ax.set_xticks(list(range(len(rates))), [f"{v:g}" for v in rates])
    ax.set_xlim(-0.5, len(rates) - 0.5)
    ax.set_xlabel("pruning rate (1 - g); static group conv: groups = 1/g")
    _legend(ax, _flops_axis(ax, series))
    fig.tight_layout()
    return fig


def _plot_series(ax, panel: pd.DataFrame, colour: str, label: str, x=None) -> None:
    xs = list(range(len(panel))) if x is None else list(x)
    done = [(xi, m, s, b) for xi, m, s, b in zip(xs, panel["mean"], panel["std"], panel["baseline"])
            if m is not None and not _nan(m)]
    if done:
        ax.errorbar([d[0] for d in done], [d[1] for d in done],
                    yerr=[0.0 if d[2] is None or _nan(d[2]) else d[2] for d in done],
                    marker="o", capsize=4, color=colour, label=f"{label}: best top-1, mean ± std")
        base = [d for d in done if d[3]]
        if base:
            ax.plot([d[0] for d in base], [d[1] for d in base], marker="*", markersize=16, color="gold",
                    markeredgecolor="black", linestyle="none", label="baseline", zorder=5)
    ax.set_ylabel("best top-1 accuracy (%)")
    ax.grid(alpha=0.3)


def _flops_axis(ax, series: list[tuple[list[int], Any, str, str]]):
    """FLOPs (M) of each (x, flops, colour, label) series as open squares on a right-hand axis;
    returns that axis (its lines carry labels for the legend)."""
    right = ax.twinx()
    for xs, flops, colour, label in series:
        pts = [(x, f) for x, f in zip(xs, flops) if f is not None and not _nan(f)]
        right.plot([p[0] for p in pts], [p[1] for p in pts], marker="s", markerfacecolor="none",
                   linestyle="--", color=colour, alpha=0.7, label=label)
    right.set_ylabel("FLOPs expected (M), squares", color="C7")
    top = max((f for _, flops, _, _ in series for f in flops if f is not None and not _nan(f)),
              default=1.0)
    right.set_ylim(0, 1.15 * top)
    return right


def _legend(ax, right) -> None:
    """Every marker of both axes in one legend, under the axes, so that it hides no point."""
    handles, labels = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    handles, labels = handles + more[0], labels + more[1]
    if handles:
        ax.legend(handles, labels, fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=2,
                  frameon=False)


def _tick(value: float, state: str, baseline: bool) -> str:
    label = f"{value:g}" + ("\n(baseline)" if baseline else "")
    return label if state == "success" else f"{label}\n{state}"


# -- cell formats ----------------------------------------------------------------------------------
def _value_label(point: GridPoint) -> str:
    if point.axis == "baseline":
        k = point.knobs
        return f"heads {k['heads']}, pruning {k['pruning']:g}, λ {k['lambda']:g}, squeeze {k['squeeze']}"
    if point.axis == "static_gc":
        return f"{point.value:g} (groups {point.knobs['groups']})"
    return f"{point.value:g}"


def mean_std(result: Result | None) -> str:
    """A result's best top-1 as 'mean ± std', 'mean (1 seed)' without spread, '-' without result."""
    if result is None:
        return "-"
    if result.std is None:
        return f"{result.mean:.2f} (1 seed)"
    return f"{result.mean:.2f} ± {result.std:.2f}"


def _mflops(flops: float | None) -> str:
    return "-" if not flops else f"{flops / 1e6:.2f}"


def flops_m(flops: int | None) -> float | None:
    """FLOPs in millions (None for none)."""
    return flops / 1e6 if flops else None


def missing(value: Any) -> bool:
    """No value in a table's cell: None, or NaN (what pandas makes of None in a float column)."""
    return value is None or _nan(value)


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
