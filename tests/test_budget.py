"""The training-budget study (`studies/budget.py queue`) and its page (`studies/budget.py page`): the points, the dry
run, the queue plan against hand-made `dvc exp show --json` payloads, the table's gaps and standard
errors, the rendered page, and (slow) one tiny point queued and run by DVC in a temporary copy."""

import json
import math
import os
import re
import statistics
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from dvc_exp import entry, exp_params, metrics, run, stop_queue
from helpers import copy_project

from dgc.config import read_params_yaml
from dgc.experiments import grid, queue
from dgc.stages.report import render
from studies import budget
from studies.budget import main

ROOT = Path(__file__).parents[1]
SMOKE = read_params_yaml(ROOT / "profiles" / "smoke.yaml")
PAPER = read_params_yaml(ROOT / "profiles" / "paper.yaml")
FAMILY_MODELS = {"densenet86": ["densenet86_dgc", "densenet86_dgc-gates", "densenet86_gc", "densenet86"],
                 "resnet18": ["resnet18_dgc", "resnet18_dgc-gates", "resnet18_gc", "resnet18"],
                 "mobilenetv2": ["mobilenetv2_dgc", "mobilenetv2_dgc-gates", "mobilenetv2_gc", "mobilenetv2"]}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def points():
    return budget.budget_points(SMOKE)


def metrics_path(model):
    return f"reports/metrics/digits-{model}.json"


# -- the points ------------------------------------------------------------------------------------
def test_36_points_per_family_variant_and_budget_with_their_overrides(points):
    assert len(points) == 36 == len({p.name for p in points})
    assert [p.name for p in points] == [f"budget-{m}-e{b}" for models in FAMILY_MODELS.values()
                                        for m in models for b in (10, 30, 60)]
    assert all(p.runnable and p.flops and p.dataset == "digits" for p in points)
    by = {p.name: p for p in points}
    common = {"train.seeds": [0, 1, 2], "pipeline.datasets": ["digits"]}
    assert by["budget-resnet18_dgc-e30"].overrides == {**common, "pipeline.models": ["resnet18_dgc"],
                                                       "train.epochs": 30}
    assert by["budget-mobilenetv2_dgc-gates-e60"].overrides == {
        **common, "pipeline.models": ["mobilenetv2_dgc"], "models.mobilenetv2_dgc.gate_factor": 1.0,
        "train.epochs": 60}
    assert [p.axis for p in points[:12]] == ["dgc"] * 3 + ["gates"] * 3 + ["gc"] * 3 + ["dense"] * 3
    assert {budget.family_of(p) for p in points} == set(budget.FAMILIES)
    # g = 1 keeps every channel: the gates' cost on top of the dense 1x1 convs, more than DGC at g = 0.25
    assert by["budget-densenet86_dgc-gates-e10"].flops > by["budget-densenet86-e10"].flops \
        > by["budget-densenet86_dgc-e10"].flops
    args = queue.queue_args(by["budget-densenet86_dgc-gates-e10"], "x", SMOKE)
    assert args == ["exp", "run", "--queue", "--name", "x", "-S", "train.seeds=[0,1,2]", "-S",
                    "pipeline.datasets=[digits]", "-S", "pipeline.models=[densenet86_dgc]", "-S",
                    "models.densenet86_dgc.gate_factor=1.0", "-S", "train.epochs=10", "evaluate"]


def test_budgets_seeds_only_and_the_dataset_of_the_profile():
    got = budget.budget_points(PAPER, budgets=[5, 2], seeds=[4], only=["resnet18_dgc-gates-e5", "dense"])
    assert [p.name for p in got] == ["budget-densenet86-e2", "budget-densenet86-e5", "budget-resnet18_dgc-gates-e5",
                                     "budget-resnet18-e2", "budget-resnet18-e5", "budget-mobilenetv2-e2",
                                     "budget-mobilenetv2-e5"]  # the study's order; budgets sorted
    assert got[0].overrides["pipeline.datasets"] == ["cifar10"] and got[0].overrides["train.seeds"] == [4]
    assert budget.parse_budgets("10, 30,60") == (10, 30, 60)
    for bad in ("0", "10,10", "", "ten"):
        with pytest.raises(ValueError, match="budgets"):
            budget.parse_budgets(bad)
    with pytest.raises(ValueError, match="no grid point or axis 'e10'"):
        budget.budget_points(SMOKE, only=["e10"])


# -- dvc exp show --json ---------------------------------------------------------------------------
def study_params(model, epochs, gates=False, seeds=(0, 1, 2)):
    """A study experiment's params.yaml written out by hand."""
    changes = {"train__epochs": epochs}
    if gates:
        changes[f"models__{model}__gate_factor"] = 1.0
    return exp_params(seeds=seeds, model=model, **changes)


RESNET = {  # (variant, budget): best top-1 per seed
    ("resnet18_dgc", 10): [60.0, 62.0, 64.0], ("resnet18_gc", 10): [70.0, 71.0, 75.0],
    ("resnet18", 10): [80.0, 82.0, 81.0], ("resnet18_dgc", 30): [88.0],
}


def exp_show():
    """Newest first: four resnet18 experiments done (one of them with seed 0 only), the gates variant
    at 30 epochs running, densenet86_dgc at 60 epochs queued, mobilenetv2 at 10 epochs failed,
    densenet86_dgc at 10 epochs done under a name of its own (the study's point all the same), and an
    ablation point (2 heads: no point of the study)."""
    experiments = [
        entry("abl-heads-2", exp_params(models__densenet86_dgc__heads=2), "success",
              {metrics_path("densenet86_dgc"): metrics([90.0, 91.0, 92.5])}),
        entry("by-hand-dgc-10", study_params("densenet86_dgc", 10), "success",
              {metrics_path("densenet86_dgc"): metrics([91.0, 92.0, 90.5])}),
        entry("budget-mobilenetv2-e10", study_params("mobilenetv2", 10), "failed", {},
              error={"msg": "Experiment run failed", "type": ""}),
        entry("budget-densenet86_dgc-e60", study_params("densenet86_dgc", 60), "queued", {}),
        entry("budget-resnet18_dgc-gates-e30", study_params("resnet18_dgc", 30, gates=True), "running"),
    ]
    for (model, epochs), accs in RESNET.items():
        experiments.append(entry(f"mine-{model}-{epochs}", study_params(model, epochs, seeds=range(len(accs))),
                                 "success", {metrics_path(model): metrics(accs, std_key=len(accs) > 1)}))
    return [{"rev": "workspace", "name": None, "data": {"params": {"params.yaml": {"data": SMOKE}}},
             "error": None, "experiments": None},
            {"rev": "abc1234def", "name": "main", "data": {"params": {"params.yaml": {"data": SMOKE}}},
             "error": None, "experiments": experiments}]


def test_plan_skips_points_already_queued_running_or_done(points):
    plan = queue.plan_queue(points, queue.parse_experiments(exp_show()), SMOKE)
    skipped = {p.name: why for p, why in plan.skipped}
    assert skipped == {
        "budget-densenet86_dgc-e10": "already success as by-hand-dgc-10",
        "budget-densenet86_dgc-e60": "already queued as budget-densenet86_dgc-e60",
        "budget-resnet18_dgc-gates-e30": "already running as budget-resnet18_dgc-gates-e30",
        "budget-resnet18_dgc-e10": "already success as mine-resnet18_dgc-10",
        "budget-resnet18_gc-e10": "already success as mine-resnet18_gc-10",
        "budget-resnet18-e10": "already success as mine-resnet18-10"}
    queued = dict((p.name, name) for p, name in plan.queue)
    assert len(queued) == 30
    assert queued["budget-mobilenetv2-e10"] == "budget-mobilenetv2-e10-2"  # failed: again, under a free name
    assert queued["budget-resnet18_dgc-e30"] == "budget-resnet18_dgc-e30"  # done with seed 0 only


def test_dry_run_prints_the_commands_and_queues_nothing(monkeypatch, capsys):
    calls = []

    def dvc(*args):
        calls.append(args)
        return json.dumps(exp_show())

    monkeypatch.setattr("dgc.experiments.queue.run_dvc", dvc)
    params = str(ROOT / "profiles" / "smoke.yaml")
    assert main(["queue", "--dry-run", "--params", params]) == 0
    out = capsys.readouterr().out.splitlines()
    assert calls == [("exp", "show", "--json")]
    assert out[0] == (f"budget study on digits: 3 families x 4 variants x budgets [10, 30, 60] epochs, "
                      f"seeds [0, 1, 2]; models at the widths of {params}")
    would = [line for line in out if line.startswith("would queue budget-")]
    assert len(would) == 30
    gates = next(line for line in would if "budget-densenet86_dgc-gates-e30 " in line)
    assert re.sub(" +", " ", gates) == (
        "would queue budget-densenet86_dgc-gates-e30 dvc exp run --queue --name budget-densenet86_dgc-gates-e30 "
        "-S train.seeds=[0,1,2] -S pipeline.datasets=[digits] -S pipeline.models=[densenet86_dgc] "
        "-S models.densenet86_dgc.gate_factor=1.0 -S train.epochs=30 evaluate")
    assert any(re.fullmatch(r"skipped +budget-densenet86_dgc-e10 +already success as by-hand-dgc-10", line)
               for line in out)
    assert out[-1] == "would queue 30 experiments (90 training runs), skipped 6"
    assert main(["queue", "--dry-run", "--params", params, "--budgets", "1,x"]) == 2
    assert main(["queue", "--params", params]) == 2  # dvc exp run reads params.yaml only
    assert "--params names another file" in capsys.readouterr().err


# -- results ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def page(points):
    return grid.match_experiments(points, queue.parse_experiments(exp_show()), SMOKE)


def test_table_has_mean_std_n_and_the_gaps_with_their_standard_error(page):
    frame = budget.results_frame(page).set_index("point")
    dgc, gc, dense = (RESNET[m, 10] for m in ("resnet18_dgc", "resnet18_gc", "resnet18"))
    row = frame.loc["budget-resnet18_dgc-e10"]
    assert row["mean"] == pytest.approx(statistics.fmean(dgc)) and row["n"] == 3
    assert row["std"] == pytest.approx(statistics.stdev(dgc))
    assert row["gap_gc"] == pytest.approx(statistics.fmean(dgc) - statistics.fmean(gc))
    assert row["se_gc"] == pytest.approx(math.sqrt(statistics.variance(dgc) / 3 + statistics.variance(gc) / 3))
    assert row["gap_dense"] == pytest.approx(statistics.fmean(dgc) - statistics.fmean(dense))
    assert row["se_dense"] == pytest.approx(math.sqrt(statistics.variance(dgc) / 3 + statistics.variance(dense) / 3))
    assert frame.loc["budget-resnet18-e10", "gap_gc"] == pytest.approx(statistics.fmean(dense) - statistics.fmean(gc))
    assert pd.isna(frame.loc["budget-resnet18-e10", "gap_dense"])  # not against itself
    assert pd.isna(frame.loc["budget-resnet18_dgc-e30", "gap_gc"])  # no static group conv at 30 epochs
    assert pd.isna(frame.loc["budget-resnet18_dgc-e10", "gap_gc"]) is False
    table = budget.results_table(budget.results_frame(page)).set_index("experiment")
    mine = table.loc["mine-resnet18_dgc-10"]
    assert mine["best top-1 (%)"] == f"62.00 ± {statistics.stdev(dgc):.2f}" and mine["n"] == "3"
    se = math.sqrt(statistics.variance(dgc) / 3 + statistics.variance(gc) / 3)
    assert mine["vs static group conv (pp)"] == f"-10.00 ± {se:.2f}"
    assert table.loc["mine-resnet18_dgc-30", "best top-1 (%)"] == "88.00 (1 seed)"
    assert table.loc["by-hand-dgc-10", "family"] == "DenseNet-86" and "abl-heads-2" not in table.index
    states = dict(zip(table.index, table["state"]))
    assert states["budget-resnet18_dgc-gates-e30"] == "running"
    assert states["budget-densenet86_dgc-e60"] == "queued" and states["budget-mobilenetv2-e10"] == "failed"
    assert list(table["state"]).count("not queued") == 28


def test_summary_states_the_points_and_the_experiments_states(page):
    text = budget.summary(page)
    assert "36 points (3 families x 4 variants x 3 budgets)" in text
    assert "9 experiments recorded" in text
    assert "8 of them are points of this study (5 success, 1 running, 1 queued, 1 failed)" in text
    assert "Points: 5 success, 1 running, 1 queued, 1 failed, 28 not queued." in text
    assert budget.others_line(page).startswith("1 experiments in `dvc exp show` are no point of this study")
    assert "`abl-heads-2`" in budget.others_line(page)


def test_figure_has_a_panel_per_family_and_a_line_per_variant_with_results(page):
    fig = budget.figure(budget.results_frame(page))
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["DenseNet-86 (densenet86*)", "ResNet-18 (resnet18*)", "MobileNetV2 (mobilenetv2*)"]
    resnet = fig.axes[1]
    assert [line.get_label() for line in resnet.containers] == ["DGC", "static group conv", "dense"]
    # one legend for the figure, under the panels: every variant drawn once, none over the data
    assert all(ax.get_legend() is None for ax in fig.axes)
    drawn = {c.get_label() for ax in fig.axes for c in ax.containers}
    assert [t.get_text() for t in fig.legends[0].get_texts()] == [
        v for v in budget.VARIANT_LABEL.values() if v in drawn]
    assert [t.get_text() for t in fig.axes[2].texts] == ["no results yet"]


# -- the page --------------------------------------------------------------------------------------
def run_cells(parameters, monkeypatch):
    """The notebook's code cells run in this process (no kernel: a second, not ten), `parameters`
    set after its parameters cell; returns what it displayed."""
    import IPython.display
    import nbformat

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs, **kwargs: shown.extend(objs))
    namespace = {}
    for cell in nbformat.read(ROOT / "notebooks" / "budget.ipynb", as_version=4).cells:
        if cell.cell_type == "code":
            exec(cell.source, namespace)
            if "parameters" in cell.metadata.get("tags", []):
                namespace.update(parameters)
    return shown


def inputs(folder, payload):
    (folder / "experiments.json").write_text(json.dumps(payload))
    (folder / "params.yaml").write_text(yaml.safe_dump(SMOKE, sort_keys=False))
    return {"experiments_json": str(folder / "experiments.json"), "params_path": str(folder / "params.yaml"),
            "commit": "f00baa"}


def test_notebook_shows_the_summary_the_figure_and_the_table(tmp_path, monkeypatch):
    from IPython.display import Image

    shown = run_cells(inputs(tmp_path, exp_show()), monkeypatch)
    assert sum(isinstance(obj, Image) for obj in shown) == 1
    text = "\n".join(obj.data for obj in shown if not isinstance(obj, Image))
    assert "rendered at commit `f00baa`" in text and "queued at commit `abc1234`" in text
    assert "mine-resnet18_dgc-10" in text and "`abl-heads-2`" in text and "No experiments" not in text


@pytest.mark.slow
def test_page_renders_the_figure_the_table_and_the_states(tmp_path):
    parameters = inputs(tmp_path, exp_show())
    _, html = render(ROOT / "notebooks" / "budget.ipynb", tmp_path, parameters, "budget", cwd=ROOT)
    text = html.read_text()
    assert text.count('src="data:image/png') == 1
    words = re.sub(r'src="data:image/png;base64,[^"]*"', "", text)
    for needle in ("Accuracy against budget", "f00baa", "abc1234", "mine-resnet18_dgc-10", "62.00 ± 2.00",
                   "88.00 (1 seed)", "running", "queued", "failed", "not queued", "DGC gates, no pruning (g = 1)"):
        assert needle in words, needle
    assert "nan" not in words and "No experiments have been run yet" not in words and "https://cdn" not in text


@pytest.mark.slow
def test_page_says_how_to_queue_when_no_experiment_ran(tmp_path):
    _, html = render(ROOT / "notebooks" / "budget.ipynb", tmp_path,
                     {"experiments_json": str(tmp_path / "absent.json")}, "budget", cwd=ROOT)
    text = html.read_text()
    assert "No experiments have been run yet" in text and "studies/budget.py queue" in text
    assert "0 experiments recorded" in text and "36 not queued" in text and 'src="data:image/png' not in text


def test_source_notebook_is_stripped_and_parameterised():
    import nbformat

    nb = nbformat.read(ROOT / "notebooks" / "budget.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code)
    assert sum("parameters" in c.metadata.get("tags", []) for c in code) == 1


# -- end to end: one tiny point through the dvc queue in a temporary copy of the project -----------
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_one_point_runs_through_the_dvc_queue_up_to_evaluate_and_renders(tmp_path):
    dest = copy_project(tmp_path / "dgc")
    params = read_params_yaml(dest / "params.yaml")
    params["train"].update(max_batches=2, batch_size=32, wandb="disabled", threads=1)
    params["evaluate"].update(latency_batch_sizes=[1], latency_repeats=1)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    calls = tmp_path / "stages.log"  # every bin/dgc call of the experiment's stages
    wrapper = tmp_path / "python-wrapper"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> {calls}\nexec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "DGC_PYTHON": str(wrapper), "PYTHONPATH": "", "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    dvc, study = [sys.executable, "-m", "dvc"], [sys.executable, "studies/budget.py"]
    study_env = {**env, "PYTHONPATH": str(dest)}  # the script imports the copy's dgc, as a clone's own install
    for args in (["git", "init", "-q"], ["git", "config", "user.email", "ci@example.com"],
                 ["git", "config", "user.name", "ci"], [*dvc, "repro", "data@digits"],
                 ["git", "add", "-A"], ["git", "commit", "-qm", "tiny"]):
        run(*args, cwd=dest, env=env)
    calls.write_text("")
    # one seed: after 2 steps BatchNorm's running statistics are still near their start and the test loss
    # overflows to nan, which dgc/stages/evaluate.py's spread over seeds (statistics.stdev) cannot take
    queue_cmd = [*study, "queue", "--budgets", "1", "--seeds", "0", "--only", "resnet18_dgc-gates-e1"]
    out = run(*queue_cmd, cwd=dest, env=study_env).stdout
    assert "queued      budget-resnet18_dgc-gates-e1" in out and "dvc queue start -j 1" in out, out
    assert "studies/budget.py page" in out, out
    started = time.monotonic()
    try:
        run(*dvc, "queue", "start", "-j", "1", cwd=dest, env=env)
        while time.monotonic() - started < 200:
            time.sleep(3)
            status = run(*dvc, "queue", "status", cwd=dest, env=env, timeout=60).stdout
            if "Success" in status or "Failed" in status:
                break
    finally:
        stop_queue(dest, env)
    print(f"one experiment through the queue: {time.monotonic() - started:.0f} s")
    if "Success" not in status:
        logs = run(*dvc, "queue", "logs", "budget-resnet18_dgc-gates-e1", cwd=dest, env=env, check=False)
        raise AssertionError(f"{status}\n{logs.stdout[-3000:]}{logs.stderr[-2000:]}")
    stages = calls.read_text().splitlines()
    assert stages == ["-m dgc train digits resnet18_dgc", "-m dgc evaluate digits resnet18_dgc"]  # no report
    run(*study, "page", "--budgets", "1", cwd=dest, env=study_env, timeout=180)
    recorded = {e.name: e for e in queue.read_experiments(dest / "reports" / "experiments.json")}
    exp = recorded["budget-resnet18_dgc-gates-e1"]  # merged into the committed record, which keeps its own
    assert exp.params["models"]["resnet18_dgc"]["gate_factor"] == 1.0 and exp.params["train"]["epochs"] == 1
    m = exp.metrics[metrics_path("resnet18_dgc")]
    text = (dest / "reports" / "budget.html").read_text()
    assert m["seeds"] == 1 and f"{m['best']['top1_acc']:.2f} (1 seed)" in text
    assert "budget-resnet18_dgc-gates-e1" in text and "1 success, 11 not queued" in text
