"""The ablation grid's page (`dgc ablations`, dgc.experiments.page): its tables, panels and figures
from hand-made `dvc exp show --json` payloads, the notebook rendered from one, and (slow) a
two-point grid queued (`dgc ablations queue`) and run by DVC in a temporary copy of the project."""

import json
import os
import re
import statistics
import sys
import time
from pathlib import Path

import pytest
import yaml
from dvc_exp import METRICS, SMOKE, exp_show, run, smoke_points, stop_queue
from helpers import copy_project

from dgc.config import read_params_yaml
from dgc.experiments import grid, page, queue
from dgc.stages.report import render

ROOT = Path(__file__).parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def matched_smoke():
    """The smoke grid with the experiments of `exp_show()` sorted onto it."""
    return grid.match_experiments(smoke_points(), queue.parse_experiments(exp_show()), SMOKE)


# -- tables and figures ----------------------------------------------------------------------------
def test_table_aggregates_seeds_and_keeps_failed_queued_and_running():
    matched = matched_smoke()
    table = page.experiments_table(matched).set_index("experiment")
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
    assert table.loc["abl-heads-8", "state"] == "not runnable"  # short: the reason has a column of its own
    assert table.loc["abl-heads-8", "why"].startswith("heads=8 must divide")
    assert table.loc["abl-heads-2", "FLOPs expected (M)"] == "2.33"
    assert "readme-heads-1" not in table.index
    others = page.others_table(matched)
    assert list(others["experiment"]) == ["readme-heads-1"]
    changes = others.loc[0, "changes"]
    assert "models.densenet86_dgc.heads: 4 → 1" in changes and "pipeline.models" in changes
    assert others.loc[0, "densenet86_dgc best top-1 (%)"] == "digits-densenet86_dgc: 80.00 (1 seed)"


def test_every_axis_panel_holds_the_baseline_at_its_own_value():
    matched = matched_smoke()
    heads = page.axis_panel(matched, "heads")
    assert list(heads["value"]) == [1, 2, 4, 8]
    assert list(heads["state"]) == ["queued", "success", "success", "not runnable"]
    assert heads.loc[heads["baseline"], "value"].item() == 4
    assert heads.loc[1, "mean"] == pytest.approx(statistics.fmean([90.0, 91.0, 92.5]))
    for axis, value in (("pruning", 0.75), ("lambda", 1e-5), ("squeeze", 16)):
        panel = page.axis_panel(matched, axis)
        assert panel.loc[panel["baseline"], "value"].item() == value
        assert panel.loc[panel["baseline"], "mean"].item() == pytest.approx(91.1666666)
    gc = page.static_gc_panel(matched)
    assert list(zip(gc["model"], gc["value"], gc["state"])) == [
        ("DGC", 0.5, "failed"), ("static group conv", 0.5, "not queued"),
        ("DGC", 0.75, "success"), ("static group conv", 0.75, "not queued"),
        ("DGC", 0.9, "not queued"), ("static group conv", 0.9, "not runnable")]


def test_every_marker_of_the_ablation_figures_is_in_their_legend():
    matched = matched_smoke()
    figures = [page.figure_panel(page.axis_panel(matched, "heads"), "heads"),
               page.figure_static_gc(page.static_gc_panel(matched))]
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
def rendered(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ablations")
    (folder / "experiments.json").write_text(json.dumps(exp_show()))
    (folder / "params.yaml").write_text(yaml.safe_dump(SMOKE, sort_keys=False))
    parameters = {"experiments_json": str(folder / "experiments.json"), "params_path": str(folder / "params.yaml")}
    ipynb, html = render(ROOT / "notebooks" / "ablations.ipynb", folder, parameters, "DGC ablations", cwd=ROOT)
    return folder, parameters, ipynb, html


def test_page_has_every_panel_the_states_and_the_error_bars(rendered):
    _, _, _, html = rendered
    text = html.read_text()
    for title in ("heads", "pruning rate (1 - g)", "sparsity weight λ", "saliency squeeze rate",
                  "DGC vs static group conv at equal FLOPs", "Every grid point and its experiments",
                  "Experiments that are no grid point"):
        assert title in text, title
    assert text.count('src="data:image/png') == 5
    assert f"91.17 ± {statistics.stdev([90.0, 91.0, 92.5]):.2f}" in text
    for state in ("queued", "running", "failed", "not runnable", "heads=8 must divide"):
        assert state in text
    words = re.sub(r'src="data:image/png;base64,[^"]*"', "", text)  # base64 may spell anything
    assert "88.00 (1 seed)" in words and "nan" not in words
    assert "https://cdn" not in text and "No experiments have been run yet" not in text


def test_page_is_byte_identical_when_re_executed(rendered):
    folder, parameters, ipynb, html = rendered
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

    queue_cmd = [*dgc, "ablations", "queue", "--grid", "smoke", "--seeds", "0,1", "--only", "baseline,heads-2,heads-8"]
    first = run(*queue_cmd, cwd=dest, env=env).stdout
    assert "queued      abl-baseline" in first and "queued      abl-heads-2" in first
    assert "skipped     abl-heads-8            not runnable: heads=8 must divide in_channels=12" in first
    assert "dvc queue start -j 1" in first
    again = run(*queue_cmd, cwd=dest, env=env).stdout
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
    exps = {e.name: e for e in queue.parse_experiments(
        json.loads(run(*dvc, "exp", "show", "--json", cwd=dest, env=env, timeout=120).stdout))}
    assert {"abl-baseline", "abl-heads-2"} <= set(exps)
    points = {p.name: p for p in grid.grid_points(params, "smoke", seeds=[0, 1], only=["baseline", "heads-2"])}
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
