"""What the tests of the `dvc exp` studies share (dgc.experiments: the ablation grid, its queue and
page, the training-budget study): hand-made `dvc exp show --json` payloads, the smoke grid built
once, and the helpers that run a command and stop DVC's queue in a temporary copy of the project."""

import copy
import functools
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from dgc.config import read_params_yaml

ROOT = Path(__file__).parents[1]
SMOKE = read_params_yaml(ROOT / "profiles" / "smoke.yaml")
METRICS = "reports/metrics/digits-densenet86_dgc.json"


@functools.cache
def smoke_points() -> tuple:
    """The points of the smoke grid around profiles/smoke.yaml, built once (each point builds its model)."""
    from dgc.experiments.grid import grid_points

    return tuple(grid_points(SMOKE, "smoke"))


def exp_params(seeds=(0, 1, 2), model="densenet86_dgc", **changes):
    """A grid experiment's params.yaml written out by hand (not with the code under test)."""
    params = copy.deepcopy(SMOKE)
    params["pipeline"] = {"datasets": ["digits"], "models": [model]}
    params["train"]["seeds"] = list(seeds)
    for dotted, value in changes.items():
        section, *rest = dotted.split("__")
        node = params[section]
        for key in rest[:-1]:
            node = node.setdefault(key, {})
        node[rest[-1]] = value
    return params


def metrics(accs, flops=2_339_226, std_key=True):
    m = {"best": {"top1_acc": statistics.fmean(accs), "top1_err": 100 - statistics.fmean(accs)},
         "seeds": len(accs), "flops_expected": flops}
    if len(accs) > 1:
        per_seed = {str(i): {"best_top1_err": 100 - a, "final_top1_err": 100 - a} for i, a in enumerate(accs)}
        m["per_seed"] = per_seed
        if std_key:
            m["best_std"] = {"top1_acc": statistics.stdev(accs)}
    return m


def entry(name, params, state, metrics_data=None, error=None, executor=True):
    """One experiment as DVC 3.67 prints it in `dvc exp show --json`."""
    files = {} if metrics_data is None else {path: {"data": data} for path, data in metrics_data.items()}
    if state == "running":
        files = {METRICS: {"error": {"type": "FileNotFoundError", "msg": "No such file"}}}
    rev = {"rev": f"{name}-sha", "name": name,
           "data": {"rev": f"{name}-sha", "timestamp": "2026-01-01T00:00:00",
                    "params": {"params.yaml": {"data": params}}, "metrics": files, "deps": {}, "outs": {}, "meta": {}},
           "error": error, "experiments": None}
    return {"revs": [rev], "name": name,
            "executor": {"state": state, "name": "dvc-task", "local": {"root": None, "log": None, "pid": None,
                                                                         "returncode": None, "task_id": "t"}}
            if executor else None}


BASELINE_COMMIT_METRICS = {METRICS: metrics([91.39])}  # what a failed experiment shows: its commit's


def exp_show():
    """Newest first, like DVC: baseline done (3 seeds), heads 2 done (3 seeds, std from per_seed only),
    heads 1 queued, pruning 0.5 failed, lambda 0 running, squeeze 4 done with 1 seed, and an
    experiment of the README's kind that trains every model with 1 head (no grid point)."""
    all_models = copy.deepcopy(SMOKE)
    all_models["models"]["densenet86_dgc"]["heads"] = 1
    experiments = [
        entry("readme-heads-1", all_models, "success", {METRICS: metrics([80.0])}, executor=False),
        entry("abl-squeeze-4", exp_params(seeds=[0], models__densenet86_dgc__squeeze_rate=4), "success",
              {METRICS: metrics([88.0], flops=2_383_562)}),
        entry("abl-lambda-0", exp_params(train__sparsity_lambda=0), "running"),
        entry("abl-pruning-0.5", exp_params(models__densenet86_dgc__gate_factor=0.5), "failed",
              BASELINE_COMMIT_METRICS, error={"msg": "Experiment run failed", "type": ""}),
        entry("abl-heads-1", exp_params(models__densenet86_dgc__heads=1), "queued", {}),
        entry("abl-heads-2", exp_params(models__densenet86_dgc__heads=2), "success",
              {METRICS: metrics([90.0, 91.0, 92.5], flops=2_330_782, std_key=False)}),
        entry("abl-baseline", exp_params(), "success", {METRICS: metrics([91.0, 92.0, 90.5])}),
    ]
    return [{"rev": "workspace", "name": None, "data": {"params": {"params.yaml": {"data": SMOKE}}},
             "error": None, "experiments": None},
            {"rev": "abc123", "name": "main", "data": {"params": {"params.yaml": {"data": SMOKE}}},
             "error": None, "experiments": experiments}]


def run(*args, cwd, env=None, check=True, timeout=300):
    proc = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)
    if check and proc.returncode:
        raise AssertionError(f"{' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def stop_queue(dest, env):
    """`dvc queue stop --kill`, then end any worker of this project's queue still alive after 15 s
    (by the pid DVC recorded; a worker that shuts down as the queue empties can hang, holding DVC's
    experiment lock so that `dvc exp show` waits)."""
    import signal

    try:
        run(sys.executable, "-m", "dvc", "queue", "stop", "--kill", cwd=dest, env=env, check=False, timeout=60)
    except subprocess.TimeoutExpired:
        pass  # the workers are ended below
    pids = []
    for pid_file in (dest / ".dvc" / "tmp" / "exps" / "celery").glob("dvc-exp-worker-*.pid"):
        pid = int(pid_file.read_text().strip() or 0)
        try:  # ours: its working directory is this copy of the project
            if pid and Path(f"/proc/{pid}/cwd").resolve() == dest.resolve():
                pids.append(pid)
        except OSError:
            pass
    deadline = time.monotonic() + 15
    while pids and time.monotonic() < deadline:
        time.sleep(1)
        pids = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    return pids
