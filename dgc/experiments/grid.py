"""The paper's ablations of densenet86_dgc as grid points, the experiments that run them, their results, and
the matching of experiments to points. Each point changes ONE knob of params.yaml's baseline (heads, pruning
rate = 1 - gate_factor, sparsity weight, squeeze rate), or is the static group conv densenet86_gc at DGC's
FLOPs (groups = 1/g), or the baseline itself; it trains one model on one dataset for every seed. Experiments
are told apart by their params (`signature`), not their names. The budget study reuses these functions.
"""

from __future__ import annotations

import copy
import json
import re
import statistics
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

from dgc.errors import DGCError

DGC_MODEL = "densenet86_dgc"
GC_MODEL = "densenet86_gc"
GRID_DATASET = {"smoke": "digits", "paper": "cifar10"}
DEFAULT_SEEDS = (0, 1, 2)
GATE_FACTORS = (0.5, 0.25, 0.1)  # pruning rates 0.5, 0.75, 0.9; the static group conv's groups 2, 4, 10
# The values of each knob (the DGC panels, in page order); a value equal to the baseline's is the baseline point.
AXIS_VALUES = {"heads": (1, 2, 4, 8), "pruning": (0.5, 0.75, 0.9), "lambda": (0.0, 1e-5, 1e-4), "squeeze": (4, 16, 32)}
AXES = tuple(AXIS_VALUES)
AXIS_LABEL = {"baseline": "baseline", "heads": "heads", "pruning": "pruning rate (1 - g)",
              "lambda": "sparsity weight λ", "squeeze": "saliency squeeze rate",
              "static_gc": "static group conv at DGC's FLOPs (pruning rate; groups = 1/g)"}
# The knob (dotted params key) each DGC axis sets.
AXIS_KEY = {"heads": f"models.{DGC_MODEL}.heads", "pruning": f"models.{DGC_MODEL}.gate_factor",
            "lambda": "train.sparsity_lambda", "squeeze": f"models.{DGC_MODEL}.squeeze_rate"}
# Besides the model's settings, dataset, model and seeds: what makes two experiments the same recipe.
RECIPE_KEYS = ("epochs", "batch_size", "lr", "max_batches", "sparsity_lambda")
STATE_ORDER = ("success", "running", "queued", "failed")  # which experiment stands for a point


class AblationError(DGCError, ValueError):
    """A grid, a point or seeds that do not exist or do not fit the params' profile."""


@dataclass(frozen=True)
class GridPoint:
    """One experiment of the grid: `overrides` the dotted params keys it sets (`-S`), `knobs` its value of
    every knob, `reason` why it cannot run (None: it can), `flops` its expected FLOPs (None: not buildable)."""

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
        """The point's model builds."""
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

    settings = {**model_defaults(DGC_MODEL), **(section(params, "models").get(DGC_MODEL) or {})}
    lam = section(params, "train").get("sparsity_lambda", 1e-5)
    return {"heads": settings["heads"], "pruning": _complement(settings["gate_factor"]),
            "lambda": float(lam), "squeeze": settings["squeeze_rate"]}


def grid_points(params: Mapping[str, Any], grid: str, seeds: Sequence[int] = DEFAULT_SEEDS,
                only: Sequence[str] | None = None) -> list[GridPoint]:
    """The points of the `grid` ('smoke': digits, 'paper': cifar10) around params' baseline, each built to
    find the ones that cannot run; `only` keeps the listed axes or names (without `abl-`, e.g. 'heads-2')."""
    if grid not in GRID_DATASET:
        raise AblationError(f"unknown grid {grid!r}; choose one of: {', '.join(GRID_DATASET)}")
    seeds = check_seeds(seeds)
    dataset = GRID_DATASET[grid]
    base = baseline_knobs(params)
    common = {"train.seeds": list(seeds), "pipeline.datasets": [dataset]}
    specs: list[tuple[str, str, float | None, str, dict[str, Any], dict[str, float]]] = [
        ("baseline", "baseline", None, DGC_MODEL, {}, base)]
    for axis, values in AXIS_VALUES.items():
        for value in (v for v in values if v != base[axis]):  # the baseline's value: the baseline point
            setting = _complement(value) if axis == "pruning" else value
            specs.append((f"{axis}-{value:g}", axis, value, DGC_MODEL, {AXIS_KEY[axis]: setting},
                          {**base, axis: value}))
    for gate in GATE_FACTORS:
        pruning, groups = _complement(gate), round(1 / gate)
        specs.append((f"gc-groups-{groups}", "static_gc", pruning, GC_MODEL,
                      {f"models.{GC_MODEL}.groups": groups}, {"pruning": pruning, "groups": groups}))
    points = []
    with one_torch_thread():
        for name, axis, value, model, knob, knobs in select_specs(specs, only):
            point = build_point(params, GridPoint(f"abl-{name}", axis, value, model, dataset,
                                                  {**common, "pipeline.models": [model], **knob}, knobs))
            if axis == "static_gc" and point.reason is not None:  # groups = 1/g is whole for every GATE_FACTORS
                point = replace(point, reason=f"no group count gives DGC's FLOPs at pruning rate {value:g}: "
                                              f"{point.reason}")
            points.append(point)
    return points


def select_specs(specs: list[tuple], only: Sequence[str] | None) -> list[tuple]:
    """The specs (name, axis, ...) whose name or axis is in `only` (all when empty); else an AblationError."""
    if not only:
        return specs
    wanted = set(only)
    known = {spec[0] for spec in specs} | {spec[1] for spec in specs}
    if unknown := sorted(wanted - known):
        raise AblationError(f"no grid point or axis {unknown[0]!r}; choose from: {', '.join(sorted(known))}")
    return [spec for spec in specs if spec[0] in wanted or spec[1] in wanted]


@contextmanager
def one_torch_thread():
    """One torch thread while points are built and counted (tiny counts: more threads only contend)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def build_point(params: Mapping[str, Any], point: GridPoint) -> GridPoint:
    """`point` with its expected FLOPs when its model builds under its params, else the builder's message."""
    from dgc.config import NUM_CLASSES, input_size_of
    from dgc.measure.flops import count_flops
    from dgc.models import create_model

    raw = point_params(params, point)
    try:
        net = create_model(point.model, NUM_CLASSES[point.dataset], **(section(raw, "models").get(point.model) or {}))
    except ValueError as exc:
        return replace(point, reason=str(exc), flops=None)
    size = input_size_of(point.dataset, int(section(raw, "data").get("digits_size", 32)))
    return replace(point, reason=None, flops=count_flops(net, size)["flops_expected"])


def point_params(params: Mapping[str, Any], point: GridPoint) -> dict[str, Any]:
    """params.yaml as the point's experiment will see it (the point's overrides applied)."""
    from dgc.config import apply_override

    raw = copy.deepcopy(dict(params))
    for dotted, value in point.overrides.items():
        apply_override(raw, dotted, copy.deepcopy(value))
    return raw


def signature(params: Mapping[str, Any], with_seeds: bool = True) -> tuple | None:
    """What identifies a grid experiment: profile, its one dataset and model, the model's settings (defaults
    filled in), the recipe keys of `train` and (`with_seeds`) the seeds; None for several datasets or models."""
    from dgc.models import list_models, model_defaults

    pipeline = section(params, "pipeline")
    models, datasets = list(pipeline.get("models") or []), list(pipeline.get("datasets") or [])
    if len(models) != 1 or len(datasets) != 1 or models[0] not in list_models():
        return None
    model = models[0]
    train = section(params, "train")
    settings = {**model_defaults(model), **(section(params, "models").get(model) or {})}
    sig = {"profile": params.get("profile"), "dataset": datasets[0], "model": model, "settings": settings,
           **{f"train.{k}": train.get(k) for k in RECIPE_KEYS}}
    if with_seeds:
        sig["train.seeds"] = train.get("seeds")
    return _normalised(sig)


def describe(point: GridPoint) -> str:
    """What a queued point is, for `dgc ablations queue`."""
    return f"{AXIS_LABEL[point.axis]}{'' if point.value is None else f' = {point.value:g}'} ({point.model})"


def grid_of_profile(params: Mapping[str, Any]) -> str:
    """The grid that goes with params' profile (smoke or paper)."""
    profile = params.get("profile", "smoke")
    if profile not in GRID_DATASET:
        raise AblationError(f"params profile {profile!r} has no grid of its own; pass --grid smoke or --grid paper")
    return profile


def check_profile(params: Mapping[str, Any], grid: str) -> None:
    """The smoke grid is for the smoke profile, the paper grid for the paper profile (a custom one takes either)."""
    profile = params.get("profile", "smoke")
    if profile in GRID_DATASET and profile != grid:
        raise AblationError(f"params.yaml holds the {profile!r} profile but the {grid!r} grid was asked for; "
                            f"run `dgc use-profile {grid}` first")


def check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    """`seeds` as a tuple; an AblationError unless they are distinct non-negative integers."""
    return check_distinct(seeds, 0, "seeds must be distinct non-negative integers")


def check_distinct(values: Sequence[int], minimum: int, what: str) -> tuple[int, ...]:
    """`values` as a tuple; an AblationError ('`what`, got [...]') unless distinct integers >= minimum."""
    values = tuple(values)
    if not values or len(set(values)) != len(values) or not all(isinstance(v, int) and v >= minimum for v in values):
        raise AblationError(f"{what}, got {list(values)}")
    return values


def parse_seeds(text: str) -> tuple[int, ...]:
    """'0,1,2' -> (0, 1, 2), with a one-line error for anything else."""
    return check_seeds(parse_ints(text, "--seeds", "0,1,2"))


def parse_ints(text: str, option: str, example: str) -> tuple[int, ...]:
    """Comma-separated integers of a command-line `option` (unchecked), with a one-line error for anything else."""
    try:
        return tuple(int(s) for s in text.split(",") if s.strip() != "")
    except ValueError:
        raise AblationError(f"{option} must be comma-separated integers like {example}, got {text!r}") from None


# -- results -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Result:
    """Best top-1 accuracy (%) over a successful experiment's seeds, its spread and FLOPs."""

    mean: float
    std: float | None
    seeds: int
    flops: int | None


def result_of(exp: Experiment, model: str, dataset: str) -> Result | None:
    """The experiment's result for `dataset`-`model` (None unless it succeeded with that metrics file)."""
    if exp.state != "success":
        return None
    return metrics_result(exp.metrics.get(f"reports/metrics/{dataset}-{model}.json"))


def metrics_result(m: Mapping[str, Any] | None) -> Result | None:
    """A metrics file's Result (None without best top-1); the std is best_std's, else per_seed's, else None."""
    if not m or "top1_acc" not in (m.get("best") or {}):
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
    """Experiments sorted onto the grid: per point name its experiments (best first); the others, what they change."""

    points: list[GridPoint]
    by_point: dict[str, list[Experiment]]
    others: list[tuple[Experiment, str]]
    experiments: list[Experiment] = field(default_factory=list)


def match_experiments(points: Sequence[GridPoint], experiments: Sequence[Experiment],
                      params: Mapping[str, Any]) -> Matched:
    """Each experiment to the point of the same signature (seeds aside); per point ordered success, running,
    queued, failed, then more seeds, then newest."""
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
                                 -len(section(e.params, "train").get("seeds") or []), order[id(e)]))
    return Matched(list(points), by_point, others, list(experiments))


def describe_difference(exp_params: Mapping[str, Any], params: Mapping[str, Any],
                        points: Sequence[GridPoint], limit: int = 4) -> str:
    """What an experiment changes with respect to the grid's baseline point (seeds aside)."""
    base = next((p for p in points if p.axis == "baseline"), None)
    reference = flatten(point_params(params, base) if base else params)
    mine = flatten(exp_params)
    keys = sorted(k for k in set(reference) | set(mine)
                  if k != "train.seeds" and _normalised(reference.get(k)) != _normalised(mine.get(k))
                  and (k.split(".")[0] in ("profile", "pipeline", "train", "data", "models")))
    diffs = [f"{k}: {_short(reference.get(k))} → {_short(mine.get(k))}" for k in keys]
    diffs = diffs[:limit] + ([f"(+{len(diffs) - limit} more)"] if len(diffs) > limit else [])
    return "; ".join(diffs) or "same settings as the baseline in another form"


def point_state(point: GridPoint, experiments: Sequence[Experiment]) -> str:
    """'not runnable', else the state of the point's first experiment, else 'not queued'."""
    if not point.runnable:
        return "not runnable"
    return experiments[0].state if experiments else "not queued"


def point_result(point: GridPoint, exps: Sequence[Experiment]) -> tuple[str, Result | None]:
    """The experiment that stands for a point (the first with a result, else the first; '-': none), its result."""
    for exp in exps:
        result = result_of(exp, point.model, point.dataset)
        if result:
            return exp.name, result
    return (exps[0].name if exps else "-"), None


# -- helpers ---------------------------------------------------------------------------------------
def section(params: Mapping[str, Any] | None, name: str) -> dict:
    """params[name] when it is a mapping, else {} (an absent or malformed section)."""
    value = (params or {}).get(name)
    return value if isinstance(value, dict) else {}


def _complement(value: float) -> float:
    """1 - value: a pruning rate of a gate factor and back (rounded: 1 - 0.1 is 0.8999999999999999)."""
    return round(1.0 - float(value), 6)


def format_value(value: Any) -> str:
    """A value as Hydra reads it back: lists as [a,b], numbers in Python's shortest form, names bare."""
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(format_value(v) for v in value) + "]"
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


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{dotted key: value} of every leaf (a non-mapping or an empty mapping) of nested params."""
    out = {}
    for key, value in params.items():
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _short(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, (list, tuple)) and len(value) > 3:
        return f"[{len(value)} items]"
    numeric = isinstance(value, (list, tuple, int, float)) and not isinstance(value, bool)
    return format_value(value) if numeric else str(value)
