"""The training-budget study (reports/budget.html): DGC and its baselines trained for several budgets of epochs.

Is DGC's gap to the static group conv and the dense model a matter of training budget? Each family at
params.yaml's widths is trained as DGC, DGC with `gate_factor: 1.0` (the gates' cost apart from pruning's),
static group conv and dense, per budget and seed, on params' first dataset; its points are grid points
(dgc.experiments.grid), queued with dgc.experiments.queue.

    .venv/bin/python studies/budget.py queue [--budgets 10,30,60] [--seeds 0,1,2] [--dry-run] [--params FILE]
    .venv/bin/python studies/budget.py page [--budgets 10,30,60] [--notebook notebooks/budget.ipynb]
        [--reports reports] [--params FILE] [--all-commits] [--from FILE]

`queue` queues one `dvc exp run --queue` experiment per point (`--dry-run` prints the commands); `page` merges
`dvc exp show --json` into reports/experiments.json and renders reports/budget.html from it (see
docs/ablations.md). notebooks/budget.ipynb imports this file as `studies.budget` (from the project folder).
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from dgc import figures
from dgc.cli import ALL_COMMITS, DRY_RUN, FROM, ONLY, REPORTS, SEEDS, Command, arg
from dgc.cli import main as cli_main
from dgc.experiments import about
from dgc.experiments.about import mean_std, mflops_cell
from dgc.experiments.grid import (DEFAULT_SEEDS, AblationError, GridPoint, Matched, build_point, check_distinct,
                                  check_seeds, match_experiments, one_torch_thread, parse_ints, parse_seeds,
                                  point_state, section, select_specs)
from dgc.experiments.queue import queue_points, read_inputs, read_queue_params, render_experiments
from dgc.notebook import missing

FAMILIES = {"DenseNet-86": "densenet86", "ResNet-18": "resnet18", "MobileNetV2": "mobilenetv2"}
VARIANTS = ("dgc", "gates", "gc", "dense")  # table and legend order
VARIANT_LABEL = {"dgc": "DGC", "gates": "DGC gates, no pruning (g = 1)", "gc": "static group conv",
                 "dense": "dense"}
VARIANT_MODEL = {"dgc": "{}_dgc", "gates": "{}_dgc", "gc": "{}_gc", "dense": "{}"}
VARIANT_COLOUR = {"dgc": "C0", "gates": "C2", "gc": "C3", "dense": "C7"}
DEFAULT_BUDGETS = (10, 30, 60)
PREFIX = "budget-"
SCRIPT = "studies/budget.py"
NO_EXPERIMENTS = (f"**No experiments have been run yet.** Queue the study with `{SCRIPT} queue` "
                  "(`--budgets 10,30,60 --seeds 0,1,2` by default; `--dry-run` prints the commands), run it "
                  f"with `dvc queue start -j 1`, then `{SCRIPT} page` again (see docs/ablations.md).")


def study_dataset(params: Mapping[str, Any]) -> str:
    """The study's dataset: the first of params' pipeline.datasets."""
    datasets = list(section(params, "pipeline").get("datasets") or [])
    if not datasets:
        raise AblationError("params.yaml's pipeline.datasets is empty: the study trains on its first dataset")
    return datasets[0]


def family_of(point: GridPoint) -> str:
    """The family (a key of FAMILIES) of a study point's model."""
    return next(f for f, stem in FAMILIES.items() if point.model in {m.format(stem) for m in VARIANT_MODEL.values()})


def budget_points(params: Mapping[str, Any], budgets: Sequence[int] = DEFAULT_BUDGETS,
                  seeds: Sequence[int] = DEFAULT_SEEDS, only: Sequence[str] | None = None) -> list[GridPoint]:
    """The study's points per family, variant and budget (axis: the variant, value: the budget); `only` keeps
    the listed variants or names (without `budget-`). Each model is built once, for its reason and FLOPs."""
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
    """`budgets` sorted; an AblationError unless they are distinct positive integers."""
    return tuple(sorted(check_distinct(budgets, 1, "budgets must be distinct positive numbers of epochs")))


def parse_budgets(text: str) -> tuple[int, ...]:
    """'10,30,60' -> (10, 30, 60), with a one-line error for anything else."""
    return check_budgets(parse_ints(text, "--budgets", "10,30,60"))


def describe(point: GridPoint) -> str:
    """What a queued point is, for `studies/budget.py queue`."""
    return f"{VARIANT_LABEL[point.axis]} ({point.model}), {point.value} epochs"


def load_page(experiments_json: str | Path, params_path: str | Path = "params.yaml",
              budgets: Sequence[int] = DEFAULT_BUDGETS) -> Matched:
    """The study of params_path with the saved experiments sorted onto it (by settings, whatever their name)."""
    params, experiments = read_inputs(experiments_json, params_path)
    return match_experiments(budget_points(params, budgets), experiments, params)


# -- results ---------------------------------------------------------------------------------------
def results_frame(matched: Matched) -> pd.DataFrame:
    """One row per point: its result over seeds and its gaps (pp) ± SE to the static group conv and the dense model
    of the same family and budget (None without both results; no SE with one seed on either side)."""
    rows = []
    for point in matched.points:
        row = about.point_row(point, matched.by_point[point.name])
        rows.append({"family": family_of(point), "variant": point.axis, "model": point.model, "budget": point.value,
                     **row, "why": row["reason"], "n": row["seeds"]})
    frame = pd.DataFrame(rows, columns=["family", "variant", "model", "budget", "point", "experiment", "state",
                                        "why", "result", "mean", "std", "n", "flops_m"])
    results = {(r["family"], r["variant"], r["budget"]): r["result"] for r in rows}
    for reference in ("gc", "dense"):
        gaps = [None if r["variant"] == reference else
                about.compare(results[r["family"], r["variant"], r["budget"]],
                              results.get((r["family"], reference, r["budget"]))) for r in rows]
        frame[f"gap_{reference}"] = [g and g[0] for g in gaps]
        frame[f"se_{reference}"] = [g and g[1] for g in gaps]
    return frame


def results_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The page's table: per family, variant and budget, best top-1 mean ± std (n) and the gaps ± SE."""
    return pd.DataFrame({
        "family": frame["family"],
        "variant": [VARIANT_LABEL[v] for v in frame["variant"]],
        "model": frame["model"],
        "epochs": frame["budget"],
        "best top-1 (%)": [mean_std(r) for r in frame["result"]],
        "n": ["-" if missing(n) else str(int(n)) for n in frame["n"]],
        "FLOPs expected (M)": [mflops_cell(f) for f in frame["flops_m"]],
        "vs static group conv (pp)": [_signed(g, s) for g, s in zip(frame["gap_gc"], frame["se_gc"])],
        "vs dense (pp)": [_signed(g, s) for g, s in zip(frame["gap_dense"], frame["se_dense"])],
        "experiment": frame["experiment"],
        "state": frame["state"],
        **({"why": frame["why"]} if frame["why"].any() else {}),
    })


def _signed(gap: Any, se: Any) -> str:
    if missing(gap):
        return "-"
    return f"{gap:+.2f}" + (" (1 seed: no SE)" if missing(se) else f" ± {se:.2f}")


def summary(matched: Matched) -> str:
    """The page's opening lines: dataset, budgets, and how many experiments and points in which state."""
    points = matched.points
    dataset = points[0].dataset if points else "-"
    budgets = sorted({p.value for p in points})
    exps = Counter(e.state for mine in matched.by_point.values() for e in mine)  # each experiment is of one point
    by_point = Counter(point_state(p, matched.by_point[p.name]) for p in points)
    return (f"Study on **{dataset}** at budgets {', '.join(map(str, budgets))} epochs: {len(points)} points "
            f"({len(FAMILIES)} families x {len(VARIANTS)} variants x {len(budgets)} budgets). "
            f"{len(matched.experiments)} experiments recorded; {sum(exps.values())} of them are points of this "
            f"study" + (f" ({_counts(exps)})" if exps else "") + f". Points: {_counts(by_point)}.")


def others_line(matched: Matched, limit: int = 12) -> str:
    """The experiments that are no point of the study (the ablation grid's, other sweeps'), by name; or ''."""
    names = [exp.name for exp, _ in matched.others]
    if not names:
        return ""
    shown = ", ".join(f"`{n}`" for n in names[:limit])
    shown += f" and {len(names) - limit} more" if len(names) > limit else ""
    return (f"{len(names)} experiments in `dvc exp show` are no point of this study (other settings, e.g. the "
            f"ablation grid's: `dgc ablations`): {shown}.")


def _counts(counter: Counter) -> str:
    order = ("success", "running", "queued", "failed", "not queued", "not runnable")
    keys = sorted(counter, key=lambda k: order.index(k) if k in order else len(order))
    return ", ".join(f"{counter[k]} {k}" for k in keys)


# -- the answer ------------------------------------------------------------------------------------
def answer(frame: pd.DataFrame) -> str:
    """The page's answer in words (Markdown): per family, DGC's gap ± SE to the static group conv and to the
    dense model at each budget, and whether the gap to the group conv closes by the largest budget."""
    lines = []
    for family in FAMILIES:
        rows = frame[(frame["family"] == family) & (frame["variant"] == "dgc")].sort_values("budget")
        parts = []
        for reference, name in (("gc", "the static group conv"), ("dense", "the dense model")):
            said = [f"{about.difference_in_words(d)} at {int(r['budget'])} epochs" for _, r in rows.iterrows()
                    for d in [_diff(r, reference)] if d is not None]
            if said:
                parts.append(f"DGC − {name}: " + "; ".join(said))
        if not parts:
            lines.append(f"- **{family}**: no result yet.")
            continue
        last = rows[rows["gap_gc"].notna()].tail(1)
        verdict = ""
        if len(last):
            r = last.iloc[0]
            diff = _diff(r, "gc")
            side = "still behind" if diff[0] < 0 else "ahead of"
            verdict = f" At {int(r['budget'])} epochs DGC is " + (
                f"{side} the static group conv beyond the seeds' spread." if about.beyond(diff)
                else "within the seeds' spread of the static group conv.")
        lines.append(f"- **{family}**: " + ". ".join(parts) + "." + verdict)
    return "\n".join(lines)


def _diff(row, reference: str) -> tuple[float, float | None] | None:
    gap, se = row[f"gap_{reference}"], row[f"se_{reference}"]
    return None if missing(gap) else (float(gap), None if missing(se) else float(se))


# -- figure ----------------------------------------------------------------------------------------
def figure(frame: pd.DataFrame):
    """One panel per family: best top-1 (mean ± std) against the budget per variant; an empty panel says so."""
    fig, axes = figures.figure(1, len(FAMILIES), height=3.6)
    axes = axes[0]
    budgets = sorted(frame["budget"].unique()) if len(frame) else []
    step = 0.012 * (max(budgets) - min(budgets) or max(budgets, default=1))
    for ax, family in zip(axes, FAMILIES):
        part = frame[frame["family"] == family]
        for i, variant in enumerate(VARIANTS):
            rows = part[(part["variant"] == variant) & part["mean"].notna()]
            if rows.empty:
                continue
            xs = [b + (i - 1.5) * step for b in rows["budget"]]  # side by side: error bars stay apart
            ax.errorbar(xs, rows["mean"], yerr=[0.0 if missing(s) else s for s in rows["std"]], marker="o",
                        capsize=3, color=VARIANT_COLOUR[variant], label=VARIANT_LABEL[variant])
        if not part["mean"].notna().any():
            ax.text(0.5, 0.5, "no results yet", ha="center", va="center", transform=ax.transAxes, color="C7")
        ax.set_title(f"{family} ({FAMILIES[family]}*)")
        ax.set_xticks(budgets)
        ax.set_xlabel("training budget (epochs)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("best test top-1 accuracy (%)")
    figures.legend_below(fig, axes, ncol=4, title="mean ± std over seeds (bars); points side by side at each budget")
    return fig


# -- the command line ------------------------------------------------------------------------------
def cmd_queue(args) -> int:
    params = read_queue_params(args.params, args.dry_run)
    budgets, seeds = parse_budgets(args.budgets), parse_seeds(args.seeds)
    points = budget_points(params, budgets, seeds, args.only.split(",") if args.only else None)
    print(f"budget study on {study_dataset(params)}: {len(FAMILIES)} families x {len(VARIANTS)} variants x "
          f"budgets {list(budgets)} epochs, seeds {list(seeds)}; models at the widths of {args.params}")
    return queue_points(points, params, len(seeds), args.dry_run, "budget", describe, f"{SCRIPT} page")


def cmd_page(args) -> int:
    budgets = parse_budgets(args.budgets)  # a bad list fails here, not in the notebook
    print(*render_experiments(args.notebook, args.reports, args.params, {"budgets": ",".join(map(str, budgets))},
                              "DGC training-budget study", args.from_json, args.all_commits), sep="\n")
    return 0


STUDY_PARAMS = arg("--params", default="params.yaml", check="file",
                   help="the study's models and dataset (default params.yaml)")
COMMANDS = (
    Command("queue", "queue one `dvc exp run --queue` experiment per family, variant (DGC, DGC with g = 1, static "
            "group conv, dense) and budget", (
                arg("--budgets", default="10,30,60", help="training epochs of every point (default 10,30,60)"),
                SEEDS, DRY_RUN, STUDY_PARAMS, ONLY)),
    Command("page", "`dvc exp show --json` + reports/experiments.json -> reports/budget.html", (
        arg("--notebook", default="notebooks/budget.ipynb", check="file"), REPORTS, STUDY_PARAMS,
        arg("--budgets", default="10,30,60", help="the budgets to show, in epochs (default 10,30,60)"),
        ALL_COMMITS, FROM)),
)


def main(argv: Sequence[str] | None = None) -> int:
    return cli_main(argv, sys.modules[__name__], SCRIPT)


if __name__ == "__main__":
    sys.exit(main())
