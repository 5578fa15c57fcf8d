"""The ablation grid (`dgc ablations queue`) and its page (`dgc ablations`): pure functions on a
params mapping and hand-made `dvc exp show --json` payloads, the notebook rendered from one, and
(slow) a two-point grid queued and run by DVC in a temporary copy of the project."""

import copy
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import copy_project

from dgc.experiments import ablations
from dgc.config import load_params, read_params_yaml
from dgc.stages.report import render

ROOT = Path(__file__).parents[1]
SMOKE = read_params_yaml(ROOT / "profiles" / "smoke.yaml")
PAPER = read_params_yaml(ROOT / "profiles" / "paper.yaml")
METRICS = "reports/metrics/digits-densenet86_dgc.json"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def smoke_points():
    return ablations.grid_points(SMOKE, "smoke")


def names(points):
    return [p.name for p in points]


# -- the grid ------------------------------------------------------------------------------------
def test_smoke_grid_varies_one_knob_of_the_profile_baseline(smoke_points):
    points = smoke_points
    assert names(points) == ["abl-baseline", "abl-heads-1", "abl-heads-2", "abl-heads-8", "abl-pruning-0.5",
                             "abl-pruning-0.9", "abl-lambda-0", "abl-lambda-0.0001", "abl-squeeze-4",
                             "abl-squeeze-32", "abl-gc-groups-2", "abl-gc-groups-4", "abl-gc-groups-10"]
    by = {p.name: p for p in points}
    common = {"train.seeds": [0, 1, 2], "pipeline.datasets": ["digits"]}
    assert by["abl-baseline"].overrides == {**common, "pipeline.models": ["densenet86_dgc"]}
    assert by["abl-heads-2"].overrides == {**common, "pipeline.models": ["densenet86_dgc"],
                                           "models.densenet86_dgc.heads": 2}
    assert by["abl-pruning-0.9"].overrides["models.densenet86_dgc.gate_factor"] == 0.1  # not 0.09999...
    assert by["abl-lambda-0"].overrides["train.sparsity_lambda"] == 0.0
    assert by["abl-gc-groups-4"].overrides == {**common, "pipeline.models": ["densenet86_gc"],
                                               "models.densenet86_gc.groups": 4}
    assert by["abl-baseline"].knobs == {"heads": 4, "pruning": 0.75, "lambda": 1e-5, "squeeze": 16}
    assert by["abl-heads-2"].knobs == {"heads": 2, "pruning": 0.75, "lambda": 1e-5, "squeeze": 16}


def test_smoke_grid_lists_what_cannot_be_built_with_the_builders_reason(smoke_points):
    points = {p.name: p for p in smoke_points}
    not_runnable = {n: p.reason for n, p in points.items() if not p.runnable}
    # growth [4, 8, 16] from 8 channels: the second dense layer's 1x1 conv reads 12 channels
    assert set(not_runnable) == {"abl-heads-8", "abl-gc-groups-10"}
    assert "heads=8 must divide in_channels=12" in not_runnable["abl-heads-8"]
    assert not_runnable["abl-gc-groups-10"].startswith("no group count gives DGC's FLOPs at pruning rate 0.9")
    assert points["abl-heads-8"].flops is None


def test_grid_flops_are_the_built_models_and_static_gc_is_near_dgc():
    from dgc.measure.flops import profile
    from dgc.models import create_model

    points = {p.name: p for p in ablations.grid_points(SMOKE, "smoke", only=["baseline", "static_gc"])}
    size = {k: SMOKE["models"]["densenet86_dgc"][k] for k in ("growth", "depth")}  # the smoke width
    side = SMOKE["data"]["digits_size"]  # the profile's input size
    gc4 = create_model("densenet86_gc", 10, **size, groups=4)
    assert points["abl-gc-groups-4"].flops == profile(gc4, (3, side, side))["flops_expected"]
    dgc = create_model("densenet86_dgc", 10, **size)
    assert points["abl-baseline"].flops == profile(dgc, (3, side, side))["flops_expected"]
    # equal 1x1-conv cost: the totals differ by DGC's gates only (a few percent)
    assert abs(points["abl-gc-groups-4"].flops / points["abl-baseline"].flops - 1) < 0.1


def test_paper_grid_builds_the_full_width_models():
    points = {p.name: p for p in ablations.grid_points(PAPER, "paper", seeds=[0])}
    assert {n for n, p in points.items() if not p.runnable} == {"abl-gc-groups-10"}  # 8 heads divide 16, 24...
    assert points["abl-heads-8"].overrides["pipeline.datasets"] == ["cifar10"]
    assert points["abl-baseline"].flops == 71_037_118  # the paper's DenseNet-86 DGC count (test_cli)
    assert "in_channels=16" in points["abl-gc-groups-10"].reason


def test_the_baseline_value_of_a_knob_is_no_separate_point():
    params = copy.deepcopy(SMOKE)
    params["models"]["densenet86_dgc"]["heads"] = 2
    params["train"]["sparsity_lambda"] = 0.0001
    got = names(ablations.grid_points(params, "smoke", only=["heads", "lambda"]))
    assert got == ["abl-heads-1", "abl-heads-4", "abl-heads-8", "abl-lambda-0", "abl-lambda-1e-05"]


def test_only_and_seeds_are_checked():
    assert names(ablations.grid_points(SMOKE, "smoke", only=["baseline", "heads-2"])) == ["abl-baseline",
                                                                                         "abl-heads-2"]
    with pytest.raises(ValueError, match="no grid point or axis 'heads-3'"):
        ablations.grid_points(SMOKE, "smoke", only=["heads-3"])
    with pytest.raises(ValueError, match="unknown grid 'tiny'"):
        ablations.grid_points(SMOKE, "tiny")
    assert ablations.parse_seeds("0, 1,2") == (0, 1, 2)
    for bad in ("0,0", "", "a"):
        with pytest.raises(ValueError, match="seeds"):
            ablations.parse_seeds(bad)
    with pytest.raises(ValueError, match="run `dgc use-profile paper` first"):
        ablations.check_profile(SMOKE, "paper")


def test_queue_args_set_only_the_points_keys_and_add_absent_ones_with_plus():
    points = {p.name: p for p in ablations.grid_points(SMOKE, "smoke", seeds=[0, 1],
                                                       only=["lambda-0.0001", "gc-groups-2"])}
    args = ablations.queue_args(points["abl-lambda-0.0001"], "abl-lambda-0.0001", SMOKE)
    assert args == ["exp", "run", "--queue", "--name", "abl-lambda-0.0001", "-S", "train.seeds=[0,1]",
                    "-S", "pipeline.datasets=[digits]", "-S", "pipeline.models=[densenet86_dgc]",
                    "-S", "train.sparsity_lambda=0.0001", "evaluate"]
    gc = ablations.queue_args(points["abl-gc-groups-2"], "x", SMOKE)
    assert "+models.densenet86_gc.groups=2" in gc  # not in params.yaml: Hydra needs the +


def test_params_reads_the_1e05_dvc_writes_as_a_number(tmp_path):
    # `dvc exp run -S train.sparsity_lambda=1e-5` writes `1e-05` (YAML 1.2), a string to YAML 1.1
    text = (ROOT / "params.yaml").read_text().replace("sparsity_lambda: 1.0e-05", "sparsity_lambda: 1e-05")
    assert "sparsity_lambda: 1e-05" in text
    (tmp_path / "params.yaml").write_text(text)
    assert load_params(tmp_path / "params.yaml").train.sparsity_lambda == 1e-5


def test_next_commands_put_the_venv_on_path_when_it_is_missing(tmp_path):
    python = str(tmp_path / ".venv" / "bin" / "python")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "dgc").write_text("")
    start, render_cmd = ablations.next_commands(python, "/usr/bin:/bin", str(tmp_path))
    # an absolute PATH entry: DVC's queue workers look `dvc` up from their own working directory
    assert start.startswith(f'PATH="{tmp_path}/.venv/bin:$PATH" .venv/bin/dvc queue start -j 1')
    assert render_cmd.startswith(".venv/bin/dgc ablations")
    start, _ = ablations.next_commands(python, f"{tmp_path}/.venv/bin:/usr/bin", str(tmp_path))
    assert start.startswith(".venv/bin/dvc queue start -j 1")


# -- dvc exp show --json -------------------------------------------------------------------------
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


def test_parse_experiments_keeps_states_and_only_successful_metrics():
    exps = {e.name: e for e in ablations.parse_experiments(exp_show())}
    assert list(exps) == ["readme-heads-1", "abl-squeeze-4", "abl-lambda-0", "abl-pruning-0.5", "abl-heads-1",
                          "abl-heads-2", "abl-baseline"]  # the workspace and the commit are no experiments
    assert {n: e.state for n, e in exps.items()} == {
        "readme-heads-1": "success", "abl-squeeze-4": "success", "abl-lambda-0": "running",
        "abl-pruning-0.5": "failed", "abl-heads-1": "queued", "abl-heads-2": "success", "abl-baseline": "success"}
    assert exps["abl-pruning-0.5"].metrics == {}  # its files are the baseline commit's
    assert exps["abl-lambda-0"].metrics == {}
    assert exps["abl-baseline"].baseline == "abc123"


def test_plan_queue_skips_points_already_queued_running_or_done(smoke_points):
    points = smoke_points
    plan = ablations.plan_queue(points, ablations.parse_experiments(exp_show()), SMOKE)
    queued = dict((p.name, name) for p, name in plan.queue)
    skipped = {p.name: why for p, why in plan.skipped}
    assert skipped == {
        "abl-baseline": "already success as abl-baseline", "abl-heads-2": "already success as abl-heads-2",
        "abl-heads-1": "already queued as abl-heads-1", "abl-lambda-0": "already running as abl-lambda-0",
        "abl-heads-8": f"not runnable: {skipped['abl-heads-8'].removeprefix('not runnable: ')}",
        "abl-gc-groups-10": f"not runnable: {skipped['abl-gc-groups-10'].removeprefix('not runnable: ')}"}
    assert "heads=8 must divide" in skipped["abl-heads-8"]
    # failed: queued again under a free name; squeeze 4 ran with seed 0 only: not the 3-seed point
    assert queued["abl-pruning-0.5"] == "abl-pruning-0.5-2"
    assert queued["abl-squeeze-4"] == "abl-squeeze-4-2"
    assert set(queued) == {"abl-pruning-0.5", "abl-pruning-0.9", "abl-lambda-0.0001", "abl-squeeze-4",
                           "abl-squeeze-32", "abl-gc-groups-2", "abl-gc-groups-4"}


def test_plan_queue_compares_values_not_spelling():
    # lambda 0 written as the integer 0, the model settings in another key order: still the point
    params = exp_params(train__sparsity_lambda=0)
    params["models"]["densenet86_dgc"] = dict(reversed(list(params["models"]["densenet86_dgc"].items())))
    exps = ablations.parse_experiments([{"rev": "c", "experiments": [entry("mine", params, "queued", {})]}])
    plan = ablations.plan_queue(ablations.grid_points(SMOKE, "smoke", only=["lambda-0"]), exps, SMOKE)
    assert plan.queue == [] and plan.skipped[0][1] == "already queued as mine"
    # another epoch count is another recipe: queued
    params["train"]["epochs"] = 2
    exps = ablations.parse_experiments([{"rev": "c", "experiments": [entry("mine", params, "queued", {})]}])
    plan = ablations.plan_queue(ablations.grid_points(SMOKE, "smoke", only=["lambda-0"]), exps, SMOKE)
    assert [name for _, name in plan.queue] == ["abl-lambda-0"]


def test_table_aggregates_seeds_and_keeps_failed_queued_and_running(smoke_points):
    page = ablations.match_experiments(smoke_points,
                                       ablations.parse_experiments(exp_show()), SMOKE)
    table = ablations.experiments_table(page).set_index("experiment")
    base_std = statistics.stdev([91.0, 92.0, 90.5])
    assert table.loc["abl-baseline", "best top-1 (%)"] == f"{statistics.fmean([91.0, 92.0, 90.5]):.2f} ± {base_std:.2f}"
    # no best_std in the metrics: the spread of per_seed
    assert table.loc["abl-heads-2", "best top-1 (%)"] == f"91.17 ± {statistics.stdev([90.0, 91.0, 92.5]):.2f}"
    assert table.loc["abl-squeeze-4", "best top-1 (%)"] == "88.00 (1 seed)"
    assert table.loc["abl-squeeze-4", "seeds"] == "1" and table.loc["abl-baseline", "seeds"] == "3"
    assert table.loc["abl-pruning-0.5", "state"] == "failed"
    assert table.loc["abl-pruning-0.5", "best top-1 (%)"] == "-"  # not the commit's 91.39
    assert table.loc["abl-heads-1", "state"] == "queued" and table.loc["abl-lambda-0", "state"] == "running"
    assert table.loc["abl-squeeze-32", "state"] == "not queued"
    assert table.loc["abl-heads-8", "state"].startswith("not runnable: heads=8 must divide")
    assert table.loc["abl-heads-2", "FLOPs expected (M)"] == "2.33"
    assert "readme-heads-1" not in table.index
    others = ablations.others_table(page)
    assert list(others["experiment"]) == ["readme-heads-1"]
    changes = others.loc[0, "changes"]
    assert "models.densenet86_dgc.heads: 4 → 1" in changes and "pipeline.models" in changes
    assert others.loc[0, "densenet86_dgc best top-1 (%)"] == "digits-densenet86_dgc: 80.00 (1 seed)"


def test_every_axis_panel_holds_the_baseline_at_its_own_value(smoke_points):
    page = ablations.match_experiments(smoke_points,
                                       ablations.parse_experiments(exp_show()), SMOKE)
    heads = ablations.axis_panel(page, "heads")
    assert list(heads["value"]) == [1, 2, 4, 8]
    assert list(heads["state"]) == ["queued", "success", "success", "not runnable"]
    assert heads.loc[heads["baseline"], "value"].item() == 4
    assert heads.loc[1, "mean"] == pytest.approx(statistics.fmean([90.0, 91.0, 92.5]))
    for axis, value in (("pruning", 0.75), ("lambda", 1e-5), ("squeeze", 16)):
        panel = ablations.axis_panel(page, axis)
        assert panel.loc[panel["baseline"], "value"].item() == value
        assert panel.loc[panel["baseline"], "mean"].item() == pytest.approx(91.1666666)
    gc = ablations.static_gc_panel(page)
    assert list(zip(gc["model"], gc["value"], gc["state"])) == [
        ("DGC", 0.5, "failed"), ("static group conv", 0.5, "not queued"),
        ("DGC", 0.75, "success"), ("static group conv", 0.75, "not queued"),
        ("DGC", 0.9, "not queued"), ("static group conv", 0.9, "not runnable")]


def test_every_marker_of_the_ablation_figures_is_in_their_legend(smoke_points):
    page = ablations.match_experiments(smoke_points,
                                       ablations.parse_experiments(exp_show()), SMOKE)
    figures = [ablations.figure_panel(ablations.axis_panel(page, "heads"), "heads"),
               ablations.figure_static_gc(ablations.static_gc_panel(page))]
    wanted = [{"baseline", "DGC (densenet86_dgc): best top-1, mean ± std", "FLOPs expected (right axis)"},
              {"baseline", "DGC: best top-1, mean ± std", "DGC: FLOPs expected (right axis)",
               "static group conv: FLOPs expected (right axis)"}]
    for fig, labels in zip(figures, wanted):
        legend = [text.get_text() for ax in fig.axes if ax.get_legend() for text in ax.get_legend().get_texts()]
        drawn = {line.get_label() for ax in fig.axes for line in ax.get_lines() if line.get_xydata().size
                 and not line.get_label().startswith("_")}
        assert labels <= set(legend), legend
        assert drawn <= set(legend), drawn - set(legend)
        assert all(not line.get_label().startswith("_") for ax in fig.axes for line in ax.get_lines()
                   if line.get_marker() in ("s", "*")), "an unlabelled square or star"


# -- the page --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def page(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ablations")
    (folder / "experiments.json").write_text(json.dumps(exp_show()))
    (folder / "params.yaml").write_text(yaml.safe_dump(SMOKE, sort_keys=False))
    parameters = {"experiments_json": str(folder / "experiments.json"), "params_path": str(folder / "params.yaml")}
    ipynb, html = render(ROOT / "notebooks" / "ablations.ipynb", folder, parameters, "DGC ablations", cwd=ROOT)
    return folder, parameters, ipynb, html


def test_page_has_every_panel_the_states_and_the_error_bars(page):
    _, _, _, html = page
    text = html.read_text()
    for title in ("heads", "pruning rate (1 - g)", "sparsity weight λ", "saliency squeeze rate",
                  "DGC vs static group conv at equal FLOPs", "Every grid point and its experiments",
                  "Experiments that are no grid point"):
        assert title in text, title
    assert text.count('src="data:image/png') == 5
    assert f"91.17 ± {statistics.stdev([90.0, 91.0, 92.5]):.2f}" in text
    for state in ("queued", "running", "failed", "not runnable: heads=8 must divide"):
        assert state in text
    words = re.sub(r'src="data:image/png;base64,[^"]*"', "", text)  # base64 may spell anything
    assert "88.00 (1 seed)" in words and "nan" not in words
    assert "https://cdn" not in text and "No experiments have been run yet" not in text


def test_page_is_byte_identical_when_re_executed(page):
    folder, parameters, ipynb, html = page
    first = (ipynb.read_bytes(), html.read_bytes())
    render(ROOT / "notebooks" / "ablations.ipynb", folder, parameters, "DGC ablations", cwd=ROOT)
    assert (ipynb.read_bytes(), html.read_bytes()) == first


def test_page_says_plainly_when_no_experiment_ran(tmp_path):
    workspace_only = [{"rev": "workspace", "name": None, "experiments": None,
                       "data": {"params": {"params.yaml": {"data": SMOKE}}, "metrics": {}}}]
    (tmp_path / "experiments.json").write_text(json.dumps(workspace_only))
    _, html = render(ROOT / "notebooks" / "ablations.ipynb", tmp_path,
                     {"experiments_json": str(tmp_path / "experiments.json")}, "ablations", cwd=ROOT)
    text = html.read_text()
    assert "No experiments have been run yet" in text
    assert "abl-heads-8" in text and "not queued" in text  # the grid that could be queued


# -- end to end: dvc exp queue in a temporary copy of the project --------------------------------
TINY = {
    "train": {"epochs": 1, "batch_size": 32, "max_batches": 2, "eval_batch_size": 256, "wandb": "disabled",
              "threads": 1},
    "evaluate": {"latency_batch_sizes": [1, 8], "latency_repeats": 1},
}


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


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_two_point_grid_runs_through_the_dvc_queue_and_renders(tmp_path):
    dest = tmp_path / "dgc"
    copy_project(dest)
    params = read_params_yaml(dest / "params.yaml")
    for section, values in TINY.items():
        params[section].update(values)
    params["models"]["densenet86_dgc"].update(growth=[4, 4, 8], depth=[1, 1, 1])
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # The queue's workers are `dvc` looked up on PATH; stages run bin/dgc with DGC_PYTHON, here a
    # wrapper that logs each call, to see that the worker passed the variable on.
    calls = tmp_path / "dgc_python_calls.log"
    wrapper = tmp_path / "python-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DGC_PYTHON": str(wrapper), "PYTHONPATH": "", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    dvc = [sys.executable, "-m", "dvc"]
    dgc = [sys.executable, "-m", "dgc"]
    for args in (["git", "init", "-q"], ["git", "config", "user.email", "ci@example.com"],
                 ["git", "config", "user.name", "ci"], [*dvc, "repro", "data@digits"],
                 ["git", "add", "-A"], ["git", "commit", "-qm", "tiny"]):
        run(*args, cwd=dest, env=env)

    queue = [*dgc, "ablations", "queue", "--grid", "smoke", "--seeds", "0,1", "--only", "baseline,heads-2,heads-8"]
    first = run(*queue, cwd=dest, env=env).stdout
    assert "queued      abl-baseline" in first and "queued      abl-heads-2" in first
    assert "skipped     abl-heads-8            not runnable: heads=8 must divide in_channels=12" in first
    assert "dvc queue start -j 1" in first
    again = run(*queue, cwd=dest, env=env).stdout
    assert "already queued as abl-baseline" in again and "queued 0 experiments" in again

    started = time.monotonic()
    try:
        run(*dvc, "queue", "start", "-j", "2", cwd=dest, env=env)
        status = ""
        while time.monotonic() - started < 240:
            time.sleep(5)
            status = run(*dvc, "queue", "status", cwd=dest, env=env, timeout=60).stdout
            rows = [line for line in status.splitlines() if line.startswith(tuple("0123456789abcdef"))]
            if len(rows) == 2 and all(("Success" in r or "Failed" in r) for r in rows):
                break
        else:
            raise AssertionError(f"the queue did not finish in 240 s:\n{status}")
        elapsed = time.monotonic() - started
    finally:
        killed = stop_queue(dest, env)
    print(f"two experiments x 2 seeds through the queue: {elapsed:.0f} s; workers killed: {killed}")
    assert "Failed" not in status, status
    exps = {e.name: e for e in ablations.parse_experiments(
        json.loads(run(*dvc, "exp", "show", "--json", cwd=dest, env=env, timeout=120).stdout))}
    assert {"abl-baseline", "abl-heads-2"} <= set(exps)
    points = {p.name: p for p in ablations.grid_points(params, "smoke", seeds=[0, 1], only=["baseline", "heads-2"])}
    for name in ("abl-baseline", "abl-heads-2"):
        exp = exps[name]
        assert exp.state == "success"
        m = exp.metrics[METRICS]
        assert m["seeds"] == 2 and "best_std" in m and set(m["per_seed"]) == {"0", "1"}
        assert m["flops_expected"] == points[name].flops  # the grid's count is what evaluate measured
        assert exp.params["models"]["densenet86_dgc"]["heads"] == (2 if name == "abl-heads-2" else 4)
    assert "train digits densenet86_dgc" in calls.read_text()  # the stages ran through DGC_PYTHON

    run(*dgc, "ablations", cwd=dest, env=env, timeout=180)
    text = (dest / "reports" / "ablations.html").read_text()
    for name in ("abl-baseline", "abl-heads-2"):
        m = exps[name].metrics[METRICS]
        assert name in text
        assert f"{m['best']['top1_acc']:.2f} ± {m['best_std']['top1_acc']:.2f}" in text  # the error bar's size
    assert text.count('src="data:image/png') == 5
