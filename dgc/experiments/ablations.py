"""The paper's ablations of densenet86_dgc as one grid of queued `dvc exp` experiments, and the
tables and figures of reports/ablations.html.

Every grid point changes ONE knob of the baseline in params.yaml (the profile's densenet86_dgc):
heads, pruning rate (= 1 - models.densenet86_dgc.gate_factor), the sparsity weight
train.sparsity_lambda or the saliency squeeze rate; the static group conv densenet86_gc with
groups = 1/g stands at DGC's FLOPs for each pruning rate; the baseline itself is a point too. Each
point is one experiment that trains its one model on one dataset (digits for the smoke grid, cifar10
for the paper grid) for every seed, so its metrics carry the mean and spread over seeds.

A point whose model cannot be built (heads must divide every DGC layer's channels, groups every
1x1 conv's) is listed with the builder's reason and never queued. Experiments are told apart by
their params, not their names: an experiment is a grid point when the keys of `signature` equal the
point's (the seeds apart, when rendering), so a point that is queued, running or done is not queued
again and an experiment queued by hand with the same settings counts as well.

Everything here is a pure function of a params mapping and the parsed `dvc exp show --json`; the
command line (`dgc ablations [queue]`) runs DVC and prints.
"""

from __future__ import annotations

import copy
import json
import math
import re
import statistics
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from dgc.errors import DGCError, MissingInput  # noqa: E402

DGC_MODEL = "densenet86_dgc"
GC_MODEL = "densenet86_gc"
GRID_DATASET = {"smoke": "digits", "paper": "cifar10"}
DEFAULT_SEEDS = (0, 1, 2)
# The values of each knob; a value equal to the baseline's is the baseline point itself.
HEADS = (1, 2, 4, 8)
GATE_FACTORS = (0.5, 0.25, 0.1)  # pruning rates 0.5, 0.75, 0.9
SPARSITY_LAMBDAS = (0.0, 1e-5, 1e-4)
SQUEEZE_RATES = (4, 16, 32)
AXES = ("heads", "pruning", "lambda", "squeeze")  # the DGC panels, in page order
AXIS_LABEL = {"baseline": "baseline", "heads": "heads", "pruning": "pruning rate (1 - g)",
              "lambda": "sparsity weight λ", "squeeze": "saliency squeeze rate",
              "static_gc": "static group conv at DGC's FLOPs (pruning rate; groups = 1/g)"}
# The knob each DGC axis sets (dotted params key) and the name prefix of its points.
AXIS_KEY = {"heads": f"models.{DGC_MODEL}.heads", "pruning": f"models.{DGC_MODEL}.gate_factor",
            "lambda": "train.sparsity_lambda", "squeeze": f"models.{DGC_MODEL}.squeeze_rate"}
# Besides the model's settings, the dataset, the model and the seeds: what makes two experiments
# the same training recipe.
RECIPE_KEYS = ("epochs", "batch_size", "lr", "max_batches", "sparsity_lambda")
STATE_ORDER = ("success", "running", "queued", "failed")  # which experiment stands for a point
NO_EXPERIMENTS = ("**No experiments have been run yet.** Queue the grid with "
                  "`dgc ablations queue --grid smoke` (or `--grid paper` after `dgc use-profile paper`), "
                  "run it with `dvc queue start -j 1`, then `dgc ablations` again (see README, Sweeps).")


class AblationError(DGCError, ValueError):
    """A grid, a point or seeds that do not exist or do not fit the params' profile."""


@dataclass(frozen=True)
class GridPoint:
    """One experiment of the grid. `overrides` are the dotted params keys it sets (`-S`), `knobs`
    its values of every knob (heads, pruning, lambda, squeeze; groups for the static group conv),
    `reason` why it cannot run (None: it can), `flops` its expected FLOPs (None when not buildable)."""

    name: str
    axis: str
    value: float | None
    model: str
    dataset: str
    overrides: dict[str, Any]
    knobs: dict[str, float]
    reason: str | None = None
    flops: int | None = None

    @property
    def runnable(self) -> bool:
        return self.reason is None


@dataclass(frozen=True)
class Experiment:
    """One experiment of `dvc exp show --json`: state is success, running, queued or failed."""

    name: str
    rev: str
    baseline: str
    state: str
    params: dict[str, Any]
    metrics: dict[str, dict] = field(default_factory=dict)


# -- the grid ------------------------------------------------------------------------------------
def baseline_knobs(params: Mapping[str, Any]) -> dict[str, float]:
    """The baseline's heads, pruning rate, sparsity weight and squeeze rate from params.yaml."""
    from dgc.models import model_defaults

    settings = {**model_defaults(DGC_MODEL), **(_section(params, "models").get(DGC_MODEL) or {})}
    lam = _section(params, "train").get("sparsity_lambda", 1e-5)
    return {"heads": settings["heads"], "pruning": _pruning(settings["gate_factor"]),
            "lambda": float(lam), "squeeze": settings["squeeze_rate"]}


def grid_points(params: Mapping[str, Any], grid: str, seeds: Sequence[int] = DEFAULT_SEEDS,
                only: Sequence[str] | None = None) -> list[GridPoint]:
    """The points of the `grid` ('smoke': digits, 'paper': cifar10) around params' baseline.

    `only` keeps the points whose axis or name (without `abl-`) is listed, e.g. ['baseline',
    'heads-2'] (for tests and partial reruns). Each point is built with dgc.models.create_model to
    find the ones that cannot run.
    """
    if grid not in GRID_DATASET:
        raise AblationError(f"unknown grid {grid!r}; choose one of: {', '.join(GRID_DATASET)}")
    seeds = _check_seeds(seeds)
    dataset = GRID_DATASET[grid]
    base = baseline_knobs(params)
    common = {"train.seeds": list(seeds), "pipeline.datasets": [dataset]}
    specs: list[tuple[str, str, float | None, str, dict[str, Any], dict[str, float]]] = []
    specs.append(("baseline", "baseline", None, DGC_MODEL, {}, base))
    values = {"heads": HEADS, "pruning": [_pruning(g) for g in GATE_FACTORS], "lambda": SPARSITY_LAMBDAS,
              "squeeze": SQUEEZE_RATES}
    for axis in AXES:
        for value in values[axis]:
            if value == base[axis]:
                continue  # the baseline point
            setting = _gate_factor(value) if axis == "pruning" else value
            specs.append((f"{axis}-{_token(value)}", axis, value, DGC_MODEL, {AXIS_KEY[axis]: setting},
                          {**base, axis: value}))
    for gate in GATE_FACTORS:
        pruning = _pruning(gate)
        groups = round(1 / gate)
        specs.append((f"gc-groups-{groups}", "static_gc", pruning, GC_MODEL,
                      {f"models.{GC_MODEL}.groups": groups}, {"pruning": pruning, "groups": groups}))
    with one_torch_thread():
        return [_build_point(params, dataset, *spec, common) for spec in select_specs(specs, only)]


def select_specs(specs: list[tuple], only: Sequence[str] | None) -> list[tuple]:
    """The specs (name, axis, ...) whose name or axis is listed in `only` (all of them when `only` is
    empty); an entry that names none is an AblationError listing the known ones."""
    if not only:
        return specs
    wanted = set(only)
    known = {spec[0] for spec in specs} | {spec[1] for spec in specs}
    unknown = sorted(wanted - known)
    if unknown:
        raise AblationError(f"no grid point or axis {unknown[0]!r}; choose from: {', '.join(sorted(known))}")
    return [spec for spec in specs if spec[0] in wanted or spec[1] in wanted]


@contextmanager
def one_torch_thread():
    """One torch thread while points are built and counted: tiny one-image counts, on a shared CPU
    more threads only contend."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def build_point(params: Mapping[str, Any], point: GridPoint) -> GridPoint:
    """`point` with the builder's verdict on its model under the point's params: its expected FLOPs
    when the model builds, else the builder's message as `reason`."""
    reason, flops = _buildable(point_params(params, point), point.model, point.dataset)
    return replace(point, reason=reason, flops=flops)


def _build_point(params: Mapping[str, Any], dataset: str, name: str, axis: str, value: float | None,
                 model: str, knob: dict[str, Any], knobs: dict[str, float],
                 common: dict[str, Any]) -> GridPoint:
    overrides = {**common, "pipeline.models": [model], **knob}
    point = build_point(params, GridPoint(f"abl-{name}", axis, value, model, dataset, overrides, knobs))
    reason = point.reason
    if axis == "static_gc":
        gate = 1 - value
        if not math.isclose(1 / gate, round(1 / gate), rel_tol=1e-9):
            reason = f"1/g = {1 / gate:.3g} is not a whole number of groups"
        if reason is not None:
            reason = f"no group count gives DGC's FLOPs at pruning rate {value:g}: {reason}"
    return replace(point, reason=reason)


def _buildable(params: Mapping[str, Any], model: str, dataset: str) -> tuple[str | None, int | None]:
    """(None, expected FLOPs) when the model of `params` builds, else (the builder's message, None)."""
    from dgc.stages.architecture import input_size_of
    from dgc.config import NUM_CLASSES
    from dgc.measure.flops import profile
    from dgc.models import create_model

    settings = dict(_section(params, "models").get(model) or {})
    try:
        net = create_model(model, NUM_CLASSES[dataset], **settings)
    except ValueError as exc:
        return str(exc), None
    size = input_size_of(dataset, int(_section(params, "data").get("digits_size", 32)))
    return None, profile(net, size)["flops_expected"]


def point_params(params: Mapping[str, Any], point: GridPoint) -> dict[str, Any]:
    """params.yaml as the point's experiment will see it (the point's overrides applied)."""
    from dgc.config import apply_override

    raw = copy.deepcopy(dict(params))
    for dotted, value in point.overrides.items():
        apply_override(raw, dotted, copy.deepcopy(value))
    return raw


def signature(params: Mapping[str, Any], with_seeds: bool = True) -> tuple | None:
    """What identifies a grid experiment: profile, its one dataset and one model, that model's
    settings (defaults filled in), the recipe keys of `train` and (`with_seeds`) the seeds.
    None when params train several datasets or models (not a grid experiment)."""
    from dgc.models import list_models, model_defaults

    pipeline = _section(params, "pipeline")
    models, datasets = list(pipeline.get("models") or []), list(pipeline.get("datasets") or [])
    if len(models) != 1 or len(datasets) != 1 or models[0] not in list_models():
        return None
    model = models[0]
    train = _section(params, "train")
    settings = {**model_defaults(model), **(_section(params, "models").get(model) or {})}
    sig = {"profile": params.get("profile"), "dataset": datasets[0], "model": model, "settings": settings,
           **{f"train.{k}": train.get(k) for k in RECIPE_KEYS}}
    if with_seeds:
        sig["train.seeds"] = train.get("seeds")
    return _normalised(sig)


# -- dvc exp show --json -------------------------------------------------------------------------
def parse_experiments(exp_show: Any) -> list[Experiment]:
    """The experiments of `dvc exp show --json` (DVC 3), newest first as DVC lists them; the
    workspace and the commits they hang from are not experiments.

    State is the executor's (queued, running, success, failed); an experiment without executor
    (run with a plain `dvc exp run`) is success unless DVC recorded an error. Metrics are kept only
    for successful experiments: a failed experiment shows its baseline commit's metrics files and a
    running one errors, which must not pass for results.
    """
    found = []
    for commit in exp_show or []:
        if not isinstance(commit, dict):
            continue
        for group in commit.get("experiments") or []:
            revs = group.get("revs") or []
            if not revs:
                continue
            rev = revs[0]
            data = rev.get("data") or {}
            executor = group.get("executor") or {}
            state = executor.get("state") or ("failed" if rev.get("error") else "success")
            params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
            metrics = {}
            if state == "success":
                metrics = {path: m["data"] for path, m in (data.get("metrics") or {}).items()
                           if isinstance(m, dict) and "data" in m}
            found.append(Experiment(name=group.get("name") or rev.get("name") or rev.get("rev", "?")[:7],
                                    rev=rev.get("rev", ""), baseline=commit.get("rev", ""), state=state,
                                    params=params, metrics=metrics))
    return found


@dataclass(frozen=True)
class QueuePlan:
    """What `dgc ablations queue` does: points to queue (with their experiment names) and the
    points it leaves, each with why."""

    queue: list[tuple[GridPoint, str]]
    skipped: list[tuple[GridPoint, str]]


def plan_queue(points: Iterable[GridPoint], experiments: Sequence[Experiment],
               params: Mapping[str, Any]) -> QueuePlan:
    """Queue every runnable point that no queued, running or successful experiment already covers
    (same signature, seeds included); a failed one is queued again, under a new name."""
    queue, skipped = [], []
    taken = {e.name for e in experiments}
    by_signature: dict[tuple, list[Experiment]] = {}
    for exp in experiments:
        sig = signature(exp.params)
        if sig is not None:
            by_signature.setdefault(sig, []).append(exp)
    for point in points:
        if not point.runnable:
            skipped.append((point, f"not runnable: {point.reason}"))
            continue
        same = by_signature.get(signature(point_params(params, point)), [])
        live = [e for e in same if e.state != "failed"]
        if live:
            skipped.append((point, f"already {live[0].state} as {live[0].name}"))
            continue
        name = point.name
        for i in range(2, 1000):
            if name not in taken:
                break
            name = f"{point.name}-{i}"
        taken.add(name)
        queue.append((point, name))
    return QueuePlan(queue, skipped)


def queue_args(point: GridPoint, name: str, params: Mapping[str, Any]) -> list[str]:
    """The arguments after `dvc` that queue `point` as experiment `name`.

    A key absent from params.yaml is set with Hydra's `+key=value`. The target `evaluate` runs the
    data, train and evaluate stages of the point's one dataset and model only: the compare, plots and
    report stages read the whole pipeline and would only cost time in every experiment.
    """
    args = ["exp", "run", "--queue", "--name", name]
    for dotted, value in point.overrides.items():
        prefix = "" if _has_key(params, dotted) else "+"
        args += ["-S", f"{prefix}{dotted}={_format(value)}"]
    return args + ["evaluate"]


# -- results ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Result:
    """Best top-1 accuracy (%) over a successful experiment's seeds, its spread and FLOPs."""

    mean: float
    std: float | None
    seeds: int
    flops: int | None


def result_of(exp: Experiment, model: str, dataset: str) -> Result | None:
    """The experiment's result for `dataset`-`model` (None unless it succeeded with that metrics file).
    The spread is the metrics' best_std, else the standard deviation of per_seed, else None (1 seed)."""
    m = exp.metrics.get(f"reports/metrics/{dataset}-{model}.json")
    if exp.state != "success" or not m or "top1_acc" not in (m.get("best") or {}):
        return None
    seeds = int(m.get("seeds", 1))
    std = (m.get("best_std") or {}).get("top1_acc")
    per_seed = m.get("per_seed") or {}
    if std is None and len(per_seed) > 1:
        std = statistics.stdev(100.0 - s["best_top1_err"] for s in per_seed.values())
    return Result(float(m["best"]["top1_acc"]), None if std is None else float(std), seeds,
                  m.get("flops_expected"))


@dataclass(frozen=True)
class Matched:
    """Experiments sorted onto the grid: per point name its experiments (best first), and the
    experiments that are no grid point with what they change."""

    points: list[GridPoint]
    by_point: dict[str, list[Experiment]]
    others: list[tuple[Experiment, str]]
    experiments: list[Experiment] = field(default_factory=list)


def match_experiments(points: Sequence[GridPoint], experiments: Sequence[Experiment],
                      params: Mapping[str, Any]) -> Matched:
    """Each experiment to the grid point of the same signature (seeds aside); per point the
    experiments are ordered success, running, queued, failed, then more seeds, then newest."""
    index = {signature(point_params(params, p), with_seeds=False): p.name for p in points}
    by_point: dict[str, list[Experiment]] = {p.name: [] for p in points}
    others = []
    for exp in experiments:
        name = index.get(signature(exp.params, with_seeds=False))
        if name is None:
            others.append((exp, describe_difference(exp.params, params, points)))
        else:
            by_point[name].append(exp)
    for exps in by_point.values():
        order = {id(e): i for i, e in enumerate(exps)}
        exps.sort(key=lambda e: (STATE_ORDER.index(e.state) if e.state in STATE_ORDER else len(STATE_ORDER),
                                 -len(_section(e.params, "train").get("seeds") or []), order[id(e)]))
    return Matched(list(points), by_point, others, list(experiments))


def grid_of_profile(params: Mapping[str, Any]) -> str:
    """The grid that goes with params' profile (smoke or paper)."""
    profile = params.get("profile", "smoke")
    if profile not in GRID_DATASET:
        raise AblationError(f"params profile {profile!r} has no grid of its own; pass --grid smoke or --grid paper")
    return profile


def check_profile(params: Mapping[str, Any], grid: str) -> None:
    """The smoke grid is for the smoke profile and the paper grid for the paper profile (a custom
    profile may take either): the other way round trains the wrong recipe."""
    profile = params.get("profile", "smoke")
    if profile in GRID_DATASET and profile != grid:
        raise AblationError(f"params.yaml holds the {profile!r} profile but the {grid!r} grid was asked for; "
                         f"run `dgc use-profile {grid}` first")


def load_page(experiments_json: str | Path, params_path: str | Path = "params.yaml",
              grid: str | None = None) -> Matched:
    """What reports/ablations.html shows: the grid of params_path (the grid of its profile unless
    `grid`), with the experiments of the saved `dvc exp show --json` sorted onto it. An absent or
    empty experiments file means no experiments."""
    params, experiments = read_inputs(experiments_json, params_path)
    points = grid_points(params, grid or grid_of_profile(params))
    return match_experiments(points, experiments, params)


def read_inputs(experiments_json: str | Path, params_path: str | Path) -> tuple[dict[str, Any], list[Experiment]]:
    """params_path as a mapping and the experiments of a saved `dvc exp show --json` (an absent or
    empty file: none)."""
    from dgc.config import read_params_yaml

    if not Path(params_path).exists():
        raise MissingInput(f"{params_path} does not exist: the grid's baseline comes from it")
    path = Path(experiments_json)
    text = path.read_text() if path.exists() else ""
    return read_params_yaml(params_path), parse_experiments(json.loads(text)) if text.strip() else []


def describe_difference(exp_params: Mapping[str, Any], params: Mapping[str, Any],
                        points: Sequence[GridPoint], limit: int = 4) -> str:
    """What an experiment changes with respect to the grid's baseline point (seeds aside)."""
    base = next((p for p in points if p.axis == "baseline"), None)
    reference = _flatten(point_params(params, base) if base else params)
    mine = _flatten(exp_params)
    keys = sorted(k for k in set(reference) | set(mine)
                  if k != "train.seeds" and _normalised(reference.get(k)) != _normalised(mine.get(k))
                  and (k.split(".")[0] in ("profile", "pipeline", "train", "data", "models")))
    diffs = [f"{k}: {_short(reference.get(k))} → {_short(mine.get(k))}" for k in keys]
    if len(diffs) > limit:
        diffs = diffs[:limit] + [f"(+{len(diffs) - limit} more)"]
    return "; ".join(diffs) or "same settings as the baseline in another form"


def point_state(point: GridPoint, experiments: Sequence[Experiment]) -> str:
    if not point.runnable:
        return "not runnable"
    return experiments[0].state if experiments else "not queued"


def experiments_table(matched: Matched) -> pd.DataFrame:
    """Every grid point with every experiment of it (a point without one: a row saying so), then
    nothing else: experiments that are no grid point are in `others_table`."""
    rows = []
    for point in matched.points:
        exps = matched.by_point[point.name] or [None]
        for exp in exps:
            result = result_of(exp, point.model, point.dataset) if exp else None
            seeds = len(_section(exp.params, "train").get("seeds") or []) if exp else None
            rows.append({"experiment": exp.name if exp else point.name,
                         "knob": AXIS_LABEL[point.axis],
                         "value": _value_label(point),
                         "model": point.model,
                         "seeds": "-" if seeds is None else str(seeds),
                         "best top-1 (%)": _mean_std(result),
                         "FLOPs expected (M)": _mflops(result.flops if result and result.flops else point.flops),
                         "state": (exp.state if exp else point_state(point, [])) +
                                  (f": {point.reason}" if not point.runnable else "")})
    return pd.DataFrame(rows)


def others_table(matched: Matched) -> pd.DataFrame:
    """Experiments that are no point of the grid, with what they change and their state."""
    rows = []
    for exp, diff in matched.others:
        pipeline = _section(exp.params, "pipeline")
        results = [f"{d}-{m}: {_mean_std(r)}" for d in pipeline.get("datasets") or []
                   for m in pipeline.get("models") or [] if m == DGC_MODEL
                   for r in [result_of(exp, m, d)] if r]
        rows.append({"experiment": exp.name, "changes": diff,
                     "seeds": len(_section(exp.params, "train").get("seeds") or []),
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


def point_result(point: GridPoint, exps: Sequence[Experiment]) -> tuple[str, Result | None]:
    """The experiment that stands for a point (the first with a result, else the first; '-' when
    none) and its result."""
    for exp in exps:
        result = result_of(exp, point.model, point.dataset)
        if result:
            return exp.name, result
    return (exps[0].name if exps else "-"), None


def _panel_row(point: GridPoint, exps: Sequence[Experiment], value: float) -> dict[str, Any]:
    experiment, result = point_result(point, exps)
    return {"value": value, "point": point.name, "baseline": point.axis == "baseline",
            "experiment": experiment,
            "state": point_state(point, exps),
            "mean": result.mean if result else None,
            "std": result.std if result else None,
            "seeds": result.seeds if result else None,
            "flops_m": _flops_m(result.flops if result and result.flops else point.flops),
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
        "best top-1 (%)": [_mean_std(Result(m, None if s is None or _nan(s) else s, 0, None))
                           if m is not None and not _nan(m) else "-"
                           for m, s in zip(panel["mean"], panel["std"])],
        "FLOPs expected (M)": [_mflops(f * 1e6) if f and not _nan(f) else "-" for f in panel["flops_m"]],
        "state": [s + (f": {r}" if r else "") for s, r in zip(panel["state"], panel["reason"])],
    })
    return out


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


# -- helpers ---------------------------------------------------------------------------------------
def _section(params: Mapping[str, Any] | None, name: str) -> dict:
    value = (params or {}).get(name)
    return value if isinstance(value, dict) else {}


def _pruning(gate_factor: float) -> float:
    return round(1.0 - float(gate_factor), 6)  # 1 - 0.1 is 0.8999999999999999 in floats


def _gate_factor(pruning: float) -> float:
    return round(1.0 - float(pruning), 6)


def _token(value: float) -> str:
    return f"{value:g}"


def _check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    seeds = tuple(seeds)
    if not seeds or len(set(seeds)) != len(seeds) or not all(isinstance(s, int) and s >= 0 for s in seeds):
        raise AblationError(f"seeds must be distinct non-negative integers, got {list(seeds)}")
    return seeds


def parse_seeds(text: str) -> tuple[int, ...]:
    """'0,1,2' -> (0, 1, 2), with a one-line error for anything else."""
    return _check_seeds(parse_ints(text, "--seeds", "0,1,2"))


def parse_ints(text: str, option: str, example: str) -> tuple[int, ...]:
    """Comma-separated integers of a command-line `option` (unchecked), with a one-line error for
    anything else."""
    try:
        return tuple(int(s) for s in text.split(",") if s.strip() != "")
    except ValueError:
        raise AblationError(f"{option} must be comma-separated integers like {example}, got {text!r}") from None


def _has_key(params: Mapping[str, Any], dotted: str) -> bool:
    node: Any = params
    for key in dotted.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return False
        node = node[key]
    return True


def _format(value: Any) -> str:
    """A value as Hydra reads it back: lists as [a,b], numbers in Python's shortest form, names bare."""
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_format(v) for v in value) + "]"
    if isinstance(value, str):
        return value if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value) else json.dumps(value)
    return repr(value)


def _normalised(value: Any) -> Any:
    """A hashable, order-free form in which 4 == 4.0 and [1, 2] == (1, 2)."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _normalised(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_normalised(v) for v in value)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    return repr(value)


def _flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in params.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(_flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def _short(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, (list, tuple)) and len(value) > 3:
        return f"[{len(value)} items]"
    return _format(value) if isinstance(value, (list, tuple, int, float)) and not isinstance(value, bool) else str(value)


def _value_label(point: GridPoint) -> str:
    if point.axis == "baseline":
        k = point.knobs
        return f"heads {k['heads']}, pruning {k['pruning']:g}, λ {k['lambda']:g}, squeeze {k['squeeze']}"
    if point.axis == "static_gc":
        return f"{point.value:g} (groups {point.knobs['groups']})"
    return f"{point.value:g}"


def _mean_std(result: Result | None) -> str:
    if result is None:
        return "-"
    if result.std is None:
        return f"{result.mean:.2f} (1 seed)"
    return f"{result.mean:.2f} ± {result.std:.2f}"


def _mflops(flops: float | None) -> str:
    return "-" if not flops else f"{flops / 1e6:.2f}"


def _flops_m(flops: int | None) -> float | None:
    return flops / 1e6 if flops else None


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def next_commands(python: str, path_env: str, cwd: str, page: str = "ablations") -> list[str]:
    """How to run the queue and render it (`dgc <page>`), with the interpreter's own dvc and dgc.

    `dvc queue start` starts its workers as `dvc exp queue-worker` looked up on PATH: without the
    environment's bin folder on PATH they fail to start and the queue stays queued, so the command
    puts it there when it is missing.
    """
    import os

    bindir = os.path.dirname(python)
    shown = os.path.relpath(bindir, cwd) if bindir.startswith(cwd.rstrip(os.sep) + os.sep) else bindir
    on_path = any(os.path.normpath(d) == os.path.normpath(bindir) for d in path_env.split(os.pathsep) if d)
    prefix = "" if on_path else f'PATH="{bindir}:$PATH" '
    dgc = f"{shown}/dgc" if os.path.exists(os.path.join(bindir, "dgc")) else f"{python} -m dgc"
    return [f"{prefix}{shown}/dvc queue start -j 1     # -j N: N at a time; then `{shown}/dvc queue status`",
            f"{dgc} {page:<26s}# reports/{page}.html"]
