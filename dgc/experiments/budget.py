"""The training-budget study as queued `dvc exp` experiments, and the table and figure of
reports/budget.html.

Is DGC's gap to the static group conv and to the dense model a matter of training budget? Each of the
three model families at the widths of params.yaml's `models:` section (DenseNet-86, ResNet-18,
MobileNetV2) is trained in four variants: DGC, DGC with `gate_factor: 1.0` (the gates and saliencies
but no pruning: what the gates cost apart from what pruning costs), the static group conv and the
dense model, each for 10, 30 and 60 epochs (`--budgets`), every seed (`--seeds`), on the first
dataset of params' `pipeline.datasets` (digits in the smoke profile, cifar10 in the paper profile).

Each point is a grid point of the ablation grid's kind (dgc.experiments.grid): it sets the one model,
the one dataset, the seeds, `train.epochs` and, for the gates variant, the DGC model's gate factor;
it is queued (`dgc budget queue`), skipped when an experiment with the same settings is queued,
running or done, and read back from `dvc exp show --json` with the functions of
dgc.experiments.queue, and matched to its point with those of dgc.experiments.grid. An ablation
experiment with the same settings (the grid's baseline is densenet86_dgc at the profile's epochs)
stands for its budget point. The table's cells are formatted as on reports/ablations.html
(dgc.experiments.page).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from dgc import figures
from dgc.experiments import about
from dgc.experiments.grid import (
    DEFAULT_SEEDS,
    AblationError,
    GridPoint,
    Matched,
    Result,
    build_point,
    check_seeds,
    match_experiments,
    one_torch_thread,
    parse_ints,
    point_result,
    point_state,
    section,
    select_specs,
)
from dgc.experiments.page import flops_m, mean_std, missing
from dgc.experiments.queue import read_inputs
from dgc.measure.verdict import Sample, standard_error

FAMILIES = {"DenseNet-86": "densenet86", "ResNet-18": "resnet18", "MobileNetV2": "mobilenetv2"}
VARIANTS = ("dgc", "gates", "gc", "dense")  # table and legend order
VARIANT_LABEL = {"dgc": "DGC", "gates": "DGC gates, no pruning (g = 1)", "gc": "static group conv",
                 "dense": "dense"}
VARIANT_MODEL = {"dgc": "{}_dgc", "gates": "{}_dgc", "gc": "{}_gc", "dense": "{}"}
VARIANT_COLOUR = {"dgc": "C0", "gates": "C2", "gc": "C3", "dense": "C7"}
DEFAULT_BUDGETS = (10, 30, 60)
PREFIX = "budget-"
NO_EXPERIMENTS = ("**No experiments have been run yet.** Queue the study with `dgc budget queue` "
                  "(`--budgets 10,30,60 --seeds 0,1,2` by default; `--dry-run` prints the commands), run it "
                  "with `dvc queue start -j 1`, then `dgc budget` again (see docs/ablations.md).")


def study_dataset(params: Mapping[str, Any]) -> str:
    """The study's dataset: the first of params' pipeline.datasets."""
    datasets = list(section(params, "pipeline").get("datasets") or [])
    if not datasets:
        raise AblationError("params.yaml's pipeline.datasets is empty: the study trains on its first dataset")
    return datasets[0]


def family_of(point: GridPoint) -> str:
    return next(f for f, stem in FAMILIES.items() if point.model in {m.format(stem) for m in VARIANT_MODEL.values()})


def budget_points(params: Mapping[str, Any], budgets: Sequence[int] = DEFAULT_BUDGETS,
                  seeds: Sequence[int] = DEFAULT_SEEDS, only: Sequence[str] | None = None) -> list[GridPoint]:
    """The study's points: per family, variant and budget, in that order. A point's axis is its
    variant, its value the budget in epochs; `only` keeps the points whose variant or name (without
    `budget-`, e.g. 'resnet18_dgc-gates-e10') is listed. Each model is built once (dgc.models) to
    find what cannot run and its expected FLOPs."""
    budgets, seeds = check_budgets(budgets), check_seeds(seeds)
    dataset = study_dataset(params)
    common = {"train.seeds": list(seeds), "pipeline.datasets": [dataset]}
    specs = []
    for stem in FAMILIES.values():
        for variant in VARIANTS:
            model = VARIANT_MODEL[variant].format(stem)
            gates = {f"models.{model}.gate_factor": 1.0} if variant == "gates" else {}
            for budget in budgets:
                name = f"{model}{'-gates' if gates else ''}-e{budget}"
                specs.append((name, variant, budget, model, {**gates, "train.epochs": budget}))
    built: dict[tuple[str, str], GridPoint] = {}  # (model, variant) -> the first point built
    points = []
    with one_torch_thread():
        for name, variant, budget, model, knob in select_specs(specs, only):
            point = GridPoint(f"{PREFIX}{name}", variant, budget, model, dataset,
                              {**common, "pipeline.models": [model], **knob}, {"epochs": budget})
            first = built.get((model, variant))
            if first is None:
                first = built[model, variant] = build_point(params, point)
            points.append(replace(point, reason=first.reason, flops=first.flops))
    return points


def check_budgets(budgets: Sequence[int]) -> tuple[int, ...]:
    budgets = tuple(budgets)
    if not budgets or len(set(budgets)) != len(budgets) or not all(isinstance(b, int) and b > 0 for b in budgets):
        raise AblationError(f"budgets must be distinct positive numbers of epochs, got {list(budgets)}")
    return tuple(sorted(budgets))


def parse_budgets(text: str) -> tuple[int, ...]:
    """'10,30,60' -> (10, 30, 60), with a one-line error for anything else."""
    return check_budgets(parse_ints(text, "--budgets", "10,30,60"))


def describe(point: GridPoint) -> str:
    """What a queued point is, for `dgc budget queue`."""
    return f"{VARIANT_LABEL[point.axis]} ({point.model}), {point.value} epochs"


def load_page(experiments_json: str | Path, params_path: str | Path = "params.yaml",
              budgets: Sequence[int] = DEFAULT_BUDGETS) -> Matched:
    """What reports/budget.html shows: the study of params_path with the experiments of the saved
    `dvc exp show --json` sorted onto its points (seeds aside)."""
    params, experiments = read_inputs(experiments_json, params_path)
    return match_experiments(budget_points(params, budgets), experiments, params)


# -- results ---------------------------------------------------------------------------------------
def results_frame(matched: Matched) -> pd.DataFrame:
    """One row per point: family, variant, model, budget, the experiment standing for it, its state,
    best top-1 mean, std and n over seeds, and the gaps (mean difference, percentage points) to the
    static group conv and to the dense model of the same family and budget with their standard
    error sqrt(s_a²/n_a + s_b²/n_b) (None without two results, or with one seed on either side)."""
    rows = []
    for point in matched.points:
        exps = matched.by_point[point.name]
        experiment, result = point_result(point, exps)
        rows.append({"family": family_of(point), "variant": point.axis, "model": point.model,
                     "budget": point.value, "point": point.name, "experiment": experiment,
                     "state": point_state(point, exps), "why": point.reason or "",
                     "mean": result.mean if result else None,
                     "std": result.std if result and result.seeds > 1 else None,  # 1 seed: no spread
                     "n": result.seeds if result else None,
                     "flops_m": flops_m(result.flops if result and result.flops else point.flops)})
    frame = pd.DataFrame(rows, columns=["family", "variant", "model", "budget", "point", "experiment", "state",
                                        "why", "mean", "std", "n", "flops_m"])
    by_key = {(r["family"], r["variant"], r["budget"]): r for r in rows}
    for reference in ("gc", "dense"):
        gaps = [_gap(r, by_key.get((r["family"], reference, r["budget"])), r["variant"] == reference)
                for r in rows]
        frame[f"gap_{reference}"] = [g[0] for g in gaps]
        frame[f"se_{reference}"] = [g[1] for g in gaps]
    return frame


def _gap(row: Mapping[str, Any], ref: Mapping[str, Any] | None, itself: bool) -> tuple[float | None, float | None]:
    if itself or ref is None or row["mean"] is None or ref["mean"] is None:
        return None, None
    gap = row["mean"] - ref["mean"]
    if row["std"] is None or ref["std"] is None:
        return gap, None
    return gap, standard_error(Sample(row["mean"], row["std"], row["n"]), Sample(ref["mean"], ref["std"], ref["n"]))


def results_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The page's table: per family, variant and budget, best top-1 mean ± std (n) and the gaps ± SE."""
    return pd.DataFrame({
        "family": frame["family"],
        "variant": [VARIANT_LABEL[v] for v in frame["variant"]],
        "model": frame["model"],
        "epochs": frame["budget"],
        "best top-1 (%)": [_cell(m, s, n) for m, s, n in zip(frame["mean"], frame["std"], frame["n"])],
        "n": [_int(n) for n in frame["n"]],
        "FLOPs expected (M)": ["-" if missing(f) else f"{f:.2f}" for f in frame["flops_m"]],
        "vs static group conv (pp)": [_signed(g, s) for g, s in zip(frame["gap_gc"], frame["se_gc"])],
        "vs dense (pp)": [_signed(g, s) for g, s in zip(frame["gap_dense"], frame["se_dense"])],
        "experiment": frame["experiment"],
        "state": frame["state"],
        **({"why": frame["why"]} if frame["why"].any() else {}),
    })


def _cell(mean: Any, std: Any, n: Any) -> str:
    if missing(mean):
        return "-"
    return mean_std(Result(mean, None if missing(std) else std, 0 if missing(n) else int(n), None))


def _signed(gap: Any, se: Any) -> str:
    if missing(gap):
        return "-"
    return f"{gap:+.2f}" + (" (1 seed: no SE)" if missing(se) else f" ± {se:.2f}")


def _int(value: Any) -> str:
    return "-" if missing(value) else str(int(value))


def states(matched: Matched) -> tuple[Counter, Counter]:
    """(experiments of the study by state, points by state: success, running, queued, failed, not
    queued, not runnable)."""
    study = {id(e) for exps in matched.by_point.values() for e in exps}
    experiments = Counter(e.state for e in matched.experiments if id(e) in study)
    points = Counter(point_state(p, matched.by_point[p.name]) for p in matched.points)
    return experiments, points


def summary(matched: Matched) -> str:
    """The page's opening lines: dataset, budgets, and how many experiments in which state."""
    points = matched.points
    dataset = points[0].dataset if points else "-"
    budgets = sorted({p.value for p in points})
    exps, by_point = states(matched)
    return (f"Study on **{dataset}** at budgets {', '.join(map(str, budgets))} epochs: {len(points)} points "
            f"({len(FAMILIES)} families x {len(VARIANTS)} variants x {len(budgets)} budgets). "
            f"{len(matched.experiments)} experiments recorded; {sum(exps.values())} of them are points of this "
            f"study" + (f" ({_counts(exps)})" if exps else "") + f". Points: {_counts(by_point)}.")


def others_line(matched: Matched, limit: int = 12) -> str:
    """The experiments that are no point of the study (the ablation grid's, other sweeps'), by name;
    '' when there are none."""
    names = [exp.name for exp, _ in matched.others]
    if not names:
        return ""
    shown = ", ".join(f"`{n}`" for n in names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")
    return (f"{len(names)} experiments in `dvc exp show` are no point of this study (other settings, e.g. the "
            f"ablation grid's: `dgc ablations`): {shown}.")


def _counts(counter: Counter) -> str:
    order = ("success", "running", "queued", "failed", "not queued", "not runnable")
    keys = sorted(counter, key=lambda k: order.index(k) if k in order else len(order))
    return ", ".join(f"{counter[k]} {k}" for k in keys)


# -- the answer ------------------------------------------------------------------------------------
def answer(frame: pd.DataFrame) -> str:
    """The page's answer in words (Markdown): per family, DGC's gap to the static group conv and to
    the dense model at each budget (mean difference ± its standard error, beyond or within two
    standard errors), and whether the gap to the group conv closes by the largest budget."""
    lines = []
    for family in FAMILIES:
        rows = frame[(frame["family"] == family) & (frame["variant"] == "dgc")].sort_values("budget")
        parts = []
        for reference, name in (("gc", "the static group conv"), ("dense", "the dense model")):
            gaps = [(int(r["budget"]), None if missing(r[f"gap_{reference}"]) else
                     (float(r[f"gap_{reference}"]), None if missing(r[f"se_{reference}"]) else float(r[f"se_{reference}"])))
                    for _, r in rows.iterrows()]
            said = [f"{about.difference_in_words(g)} at {b} epochs" for b, g in gaps if g is not None]
            if said:
                parts.append(f"DGC − {name}: " + "; ".join(said))
        if not parts:
            lines.append(f"- **{family}**: no result yet.")
            continue
        last = rows[rows["gap_gc"].notna()].tail(1)
        verdict = ""
        if len(last):
            r = last.iloc[0]
            diff = (float(r["gap_gc"]), None if missing(r["se_gc"]) else float(r["se_gc"]))
            verdict = (f" At {int(r['budget'])} epochs DGC is "
                       + ("still behind the static group conv beyond the seeds' spread." if about.beyond(diff)
                          and diff[0] < 0 else "ahead of the static group conv beyond the seeds' spread."
                          if about.beyond(diff) else "within the seeds' spread of the static group conv."))
        lines.append(f"- **{family}**: " + ". ".join(parts) + "." + verdict)
    return "\n".join(lines)


# -- figure ----------------------------------------------------------------------------------------
def figure(frame: pd.DataFrame):
    """One panel per family: best top-1 (mean ± std over seeds) against the budget, one line per
    variant; a panel without results says so."""
    fig, axes = figures.figure(1, len(FAMILIES), height=3.6)
    axes = axes[0]
    budgets = sorted(frame["budget"].unique()) if len(frame) else []
    step = 0.012 * (max(budgets) - min(budgets) or max(budgets, default=1))
    for ax, family in zip(axes, FAMILIES):
        part = frame[frame["family"] == family]
        drawn = False
        for i, variant in enumerate(VARIANTS):
            rows = part[(part["variant"] == variant) & part["mean"].notna()]
            if rows.empty:
                continue
            drawn = True
            xs = [b + (i - 1.5) * step for b in rows["budget"]]  # side by side: error bars stay apart
            ax.errorbar(xs, rows["mean"], yerr=[0.0 if missing(s) else s for s in rows["std"]], marker="o",
                        capsize=3, color=VARIANT_COLOUR[variant],
                        label=VARIANT_LABEL[variant])
        if not drawn:
            ax.text(0.5, 0.5, "no results yet", ha="center", va="center", transform=ax.transAxes, color="C7")
        ax.set_title(f"{family} ({FAMILIES[family]}*)")
        ax.set_xticks(budgets)
        ax.set_xlabel("training budget (epochs)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("best test top-1 accuracy (%)")
    figures.legend_below(fig, axes, ncol=4, title="mean ± std over seeds (bars); points side by side at each budget")
    return fig
