"""Everything about `dvc exp` (the interpreter's own DVC): reading `dvc exp show --json`, live or saved, the
record of experiments the pages show, planning which points to queue (a failed one is queued again under a
new name) and queueing them as `dvc exp run --queue` experiments.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from dgc.config import load_params, read_params_yaml
from dgc.errors import DGCError, MissingInput
from dgc.experiments.grid import Experiment, GridPoint, flatten, format_value, point_params, section, signature
from dgc.io import write_json_atomic


class QueueError(DGCError, ValueError):
    """DVC failed or did not finish, or a params file cannot be queued."""


# -- dvc exp show --json -------------------------------------------------------------------------
def parse_experiments(exp_show: Any) -> list[Experiment]:
    """The experiments of `dvc exp show --json` (DVC 3), newest first; state is the executor's, else success unless
    DVC recorded an error; only successful ones keep metrics (a failed one shows its baseline commit's)."""
    found = []
    for commit in (c for c in exp_show or [] if isinstance(c, dict)):
        for group in (g for g in commit.get("experiments") or [] if g.get("revs")):
            rev = group["revs"][0]
            data = rev.get("data") or {}
            executor = group.get("executor") or {}
            state = executor.get("state") or ("failed" if rev.get("error") else "success")
            params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
            metrics = {path: m["data"] for path, m in (data.get("metrics") or {}).items()
                       if state == "success" and isinstance(m, dict) and "data" in m}
            found.append(Experiment(name=group.get("name") or rev.get("name") or rev.get("rev", "?")[:7],
                                    rev=rev.get("rev", ""), baseline=commit.get("rev", ""), state=state,
                                    params=params, metrics=metrics))
    return found


def read_inputs(experiments_json: str | Path, params_path: str | Path) -> tuple[dict[str, Any], list[Experiment]]:
    """params_path as a mapping and the experiments of `experiments_json` (see read_experiments)."""
    if not Path(params_path).exists():
        raise MissingInput(f"{params_path} does not exist: the grid's baseline comes from it")
    return read_params_yaml(params_path), read_experiments(experiments_json)


# -- the record: the experiments a page shows, kept in git ----------------------------------------------
# `dvc exp` keeps experiments as git refs of the clone that ran them (a new clone sees none): the pages are
# rendered from this record, which `dgc ablations` and `studies/budget.py page` update from `dvc exp show`
# (render_experiments), never shrink.
RECORD = "reports/experiments.json"
RECORD_NOTE = ("The dvc exp experiments that reports/ablations.html and reports/budget.html show, recorded by "
               "`dgc ablations` / `studies/budget.py page` from `dvc exp show --json` (baseline: the commit each "
               "ran at).")


def read_experiments(path: str | Path) -> list[Experiment]:
    """The experiments of a record ({"experiments": [...]}) or a saved `dvc exp show --json` (absent or empty: none)."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    if not text.strip():
        return []
    data = json.loads(text)
    if isinstance(data, dict):
        return [Experiment(**e) for e in data.get("experiments") or []]
    return parse_experiments(data)


def merge_experiments(recorded: Sequence[Experiment], live: Sequence[Experiment]) -> list[Experiment]:
    """The record updated by the live experiments, by name: a live one replaces the recorded one unless that
    succeeded and the live one did not (a re-queued copy must not hide a result); the rest are kept."""
    merged = {e.name: e for e in recorded}
    for exp in live:
        old = merged.get(exp.name)
        if old is None or exp.state == "success" or old.state != "success":
            merged[exp.name] = exp
    return sorted(merged.values(), key=lambda e: e.name)


def _trimmed(exp: Experiment) -> Experiment:
    """Only the metrics files of the experiment's own runs (DVC also lists the commit's others)."""
    pipeline = section(exp.params, "pipeline")
    own = {f"reports/metrics/{d}-{m}.json" for d in pipeline.get("datasets") or []
           for m in pipeline.get("models") or []}
    return replace(exp, metrics={k: v for k, v in exp.metrics.items() if k in own})


def record_experiments(record: str | Path, live: Sequence[Experiment]) -> list[Experiment]:
    """Merge `live` into the record file (written atomically) and return what it now holds."""
    merged = merge_experiments(read_experiments(record), [_trimmed(e) for e in live])
    write_json_atomic(record, {"note": RECORD_NOTE, "experiments": [asdict(e) for e in merged]})
    return merged


# -- the plan --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QueuePlan:
    """What `dgc ablations queue` does: points to queue (with experiment names), points it leaves (with why)."""

    queue: list[tuple[GridPoint, str]]
    skipped: list[tuple[GridPoint, str]]


def plan_queue(points: Iterable[GridPoint], experiments: Sequence[Experiment],
               params: Mapping[str, Any]) -> QueuePlan:
    """Queue every runnable point that no queued, running or successful experiment of its signature (seeds
    included) covers; a failed one is queued again, under a new name."""
    queue, skipped = [], []
    taken = {e.name for e in experiments}
    live: dict[tuple | None, Experiment] = {}  # per signature its first experiment that did not fail
    for exp in experiments:
        if exp.state != "failed":
            live.setdefault(signature(exp.params), exp)
    for point in points:
        if not point.runnable:
            skipped.append((point, f"not runnable: {point.reason}"))
            continue
        if (same := live.get(signature(point_params(params, point)))) is not None:
            skipped.append((point, f"already {same.state} as {same.name}"))
            continue
        names = (point.name if i == 1 else f"{point.name}-{i}" for i in itertools.count(1))
        name = next(n for n in names if n not in taken)
        taken.add(name)
        queue.append((point, name))
    return QueuePlan(queue, skipped)


def queue_args(point: GridPoint, name: str, params: Mapping[str, Any]) -> list[str]:
    """The arguments after `dvc` that queue `point` as experiment `name`: a key absent from params.yaml is
    set with Hydra's `+key=value`; the target `evaluate` skips the compare, plots and report stages."""
    args, keys = ["exp", "run", "--queue", "--name", name], flatten(params)
    for dotted, value in point.overrides.items():
        args += ["-S", f"{'' if dotted in keys else '+'}{dotted}={format_value(value)}"]
    return args + ["evaluate"]


def next_commands(python: str, path_env: str, cwd: str, page: str = "ablations",
                  script: str | None = None) -> list[str]:
    """How to run the queue and render it (`dgc <page>`, or `python <script>` for a study of studies/), with the
    interpreter's own dvc, dgc and python; the environment's bin folder is put on PATH where missing (queue
    workers are looked up there)."""
    bindir = os.path.dirname(python)
    shown = os.path.relpath(bindir, cwd) if bindir.startswith(cwd.rstrip(os.sep) + os.sep) else bindir
    on_path = any(os.path.normpath(d) == os.path.normpath(bindir) for d in path_env.split(os.pathsep) if d)
    prefix = "" if on_path else f'PATH="{bindir}:$PATH" '
    dgc = f"{shown}/dgc" if os.path.exists(os.path.join(bindir, "dgc")) else f"{python} -m dgc"
    render = f"{shown}/{os.path.basename(python)} {script}" if script else f"{dgc} {page}"
    return [f"{prefix}{shown}/dvc queue start -j 1     # -j N: N at a time; then `{shown}/dvc queue status`",
            f"{render:<{len(dgc) + 27}s}# reports/{page}.html"]


# -- running DVC -----------------------------------------------------------------------------------
def run_dvc(*args: str) -> str:
    """Run `python -m dvc ARGS` (a user's PATH may have no DVC): its stdout, or a QueueError with its last error."""
    try:
        proc = subprocess.run([sys.executable, "-m", "dvc", *args], capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        raise QueueError(f"`dvc {' '.join(args[:3])}` did not finish in 600 s; if a queue worker is stuck, "
                         f"see `dvc queue status` and stop it with `dvc queue stop --kill`") from None
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr + proc.stdout).strip().splitlines() if line.strip()]
        raise QueueError(f"`dvc {' '.join(args[:3])}` failed: {lines[-1] if lines else f'exit {proc.returncode}'}")
    return proc.stdout


def live_experiments(all_commits: bool = False) -> list[Experiment]:
    """The experiments `dvc exp show --json` lists now (`all_commits`: of every commit, not only HEAD's)."""
    return parse_experiments(json.loads(run_dvc("exp", "show", "--json", *(["--all-commits"] if all_commits else []))
                                        or "[]"))


def read_queue_params(params_path: str | Path, dry_run: bool) -> dict:
    """params.yaml of a `queue` command as a mapping, checked here (not in every experiment)."""
    if not dry_run and Path(params_path).resolve() != Path("params.yaml").resolve():
        raise QueueError("`dvc exp run` reads params.yaml: --params names another file, use it with --dry-run only")
    if not Path(params_path).is_file():
        raise QueueError(f"{params_path} does not exist: the points' settings come from it")
    load_params(params_path)
    return read_params_yaml(params_path)


def queue_points(points: Sequence[GridPoint], params: Mapping[str, Any], seeds: int, dry_run: bool, page: str,
                 describe: Callable[[GridPoint], str], script: str | None = None) -> int:
    """Queue (or with `dry_run` print) one `dvc exp run --queue` per point of `plan_queue`, list the skipped
    ones and how to go on (see next_commands); `describe(point)` says what a point is, `seeds` counts the runs.
    Returns 0."""
    plan = plan_queue(points, live_experiments(), params)
    width = max([22, *(len(name) for _, name in plan.queue), *(len(p.name) for p, _ in plan.skipped)])
    for point, name in plan.queue:
        command = ["dvc", *queue_args(point, name, params)]
        if dry_run:
            print(f"would queue {name:{width}s} {' '.join(command)}")
        else:
            run_dvc(*command[1:])
            print(f"queued      {name:{width}s} {describe(point)}")
    for point, why in plan.skipped:
        print(f"skipped     {point.name:{width}s} {why}")
    verb = "would queue" if dry_run else "queued"
    print(f"{verb} {len(plan.queue)} experiments ({len(plan.queue) * seeds} training runs), "
          f"skipped {len(plan.skipped)}")
    if plan.queue and not dry_run:
        print("next:")
        for line in next_commands(sys.executable, os.environ.get("PATH", ""), os.getcwd(), page, script):
            print(f"  {line}")
    return 0


# -- the pages -------------------------------------------------------------------------------------
def render_experiments(notebook: str | Path, reports: str | Path, params_path: str | Path, parameters: dict,
                       title: str, from_json: str | Path | None = None, all_commits: bool = False) -> list[str]:
    """Merge `dvc exp show`'s experiments (or from_json's) into <reports>/experiments.json, which never loses
    one, and render `notebook` from it (`dgc ablations`, `studies/budget.py page`); returns the files' lines."""
    from dgc.measure.provenance import git_commit
    from dgc.stages.report import render

    if from_json and not Path(from_json).is_file():
        raise MissingInput(f"--from {from_json}: no such file (save one with `dvc exp show --json > FILE`)")
    live = read_experiments(from_json) if from_json else live_experiments(all_commits)
    record = Path(reports) / "experiments.json"
    page = Path(reports) / f"{Path(notebook).stem}.html"
    if not live and not read_experiments(record) and page.exists():
        raise MissingInput(f"no experiment in `dvc exp show` nor in {record}: {page} is kept; queue and run the "
                           f"study first (docs/ablations.md)")
    record_experiments(record, live)
    parameters = {"experiments_json": str(record), "params_path": str(params_path), **parameters,
                  "commit": git_commit()}
    return [str(path) for path in render(notebook, reports, parameters, title)]
