"""Queueing with `dvc exp` (dgc.experiments.queue): the `dvc exp run --queue` arguments of a point,
the parsing of hand-made `dvc exp show --json` payloads, which points a plan queues or skips, the
next commands it prints, and the checks of DVC's failures and of the params file to queue."""

from pathlib import Path

import pytest
from dvc_exp import METRICS, SMOKE, entry, exp_params, exp_show, smoke_points

from dgc.config import load_params
from dgc.experiments import grid, queue

ROOT = Path(__file__).parents[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_queue_args_set_only_the_points_keys_and_add_absent_ones_with_plus():
    points = {p.name: p for p in grid.grid_points(SMOKE, "smoke", seeds=[0, 1],
                                                  only=["lambda-0.0001", "gc-groups-2"])}
    args = queue.queue_args(points["abl-lambda-0.0001"], "abl-lambda-0.0001", SMOKE)
    assert args == ["exp", "run", "--queue", "--name", "abl-lambda-0.0001", "-S", "train.seeds=[0,1]",
                    "-S", "pipeline.datasets=[digits]", "-S", "pipeline.models=[densenet86_dgc]",
                    "-S", "train.sparsity_lambda=0.0001", "evaluate"]
    gc = queue.queue_args(points["abl-gc-groups-2"], "x", SMOKE)
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
    start, render_cmd = queue.next_commands(python, "/usr/bin:/bin", str(tmp_path))
    # an absolute PATH entry: DVC's queue workers look `dvc` up from their own working directory
    assert start.startswith(f'PATH="{tmp_path}/.venv/bin:$PATH" .venv/bin/dvc queue start -j 1')
    assert render_cmd.startswith(".venv/bin/dgc ablations")
    start, _ = queue.next_commands(python, f"{tmp_path}/.venv/bin:/usr/bin", str(tmp_path))
    assert start.startswith(".venv/bin/dvc queue start -j 1")
    _, render_cmd = queue.next_commands(python, "/usr/bin", str(tmp_path), "budget", "studies/budget.py page")
    assert render_cmd.startswith(".venv/bin/python studies/budget.py page") and render_cmd.endswith("# reports/budget.html")


def test_parse_experiments_keeps_states_and_only_successful_metrics():
    exps = {e.name: e for e in queue.parse_experiments(exp_show())}
    assert list(exps) == ["readme-heads-1", "abl-squeeze-4", "abl-lambda-0", "abl-pruning-0.5", "abl-heads-1",
                          "abl-heads-2", "abl-baseline"]  # the workspace and the commit are no experiments
    assert {n: e.state for n, e in exps.items()} == {
        "readme-heads-1": "success", "abl-squeeze-4": "success", "abl-lambda-0": "running",
        "abl-pruning-0.5": "failed", "abl-heads-1": "queued", "abl-heads-2": "success", "abl-baseline": "success"}
    assert exps["abl-pruning-0.5"].metrics == {}  # its files are the baseline commit's
    assert exps["abl-lambda-0"].metrics == {}
    assert exps["abl-baseline"].baseline == "abc123"


def test_plan_queue_skips_points_already_queued_running_or_done():
    plan = queue.plan_queue(smoke_points(), queue.parse_experiments(exp_show()), SMOKE)
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
    exps = queue.parse_experiments([{"rev": "c", "experiments": [entry("mine", params, "queued", {})]}])
    plan = queue.plan_queue(grid.grid_points(SMOKE, "smoke", only=["lambda-0"]), exps, SMOKE)
    assert plan.queue == [] and plan.skipped[0][1] == "already queued as mine"
    # another epoch count is another recipe: queued
    params["train"]["epochs"] = 2
    exps = queue.parse_experiments([{"rev": "c", "experiments": [entry("mine", params, "queued", {})]}])
    plan = queue.plan_queue(grid.grid_points(SMOKE, "smoke", only=["lambda-0"]), exps, SMOKE)
    assert [name for _, name in plan.queue] == ["abl-lambda-0"]


def test_a_failing_dvc_command_is_one_line_with_dvcs_last_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no DVC repository here
    with pytest.raises(queue.QueueError, match=r"^`dvc exp show --json` failed: .+") as caught:
        queue.run_dvc("exp", "show", "--json")
    assert "\n" not in str(caught.value) and caught.value.exit_status == 2


def test_only_params_yaml_is_queued_and_a_missing_file_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    other = ROOT / "profiles" / "smoke.yaml"
    with pytest.raises(queue.QueueError, match="--params names another file, use it with --dry-run only"):
        queue.read_queue_params(other, dry_run=False)
    assert queue.read_queue_params(other, dry_run=True) == SMOKE
    with pytest.raises(queue.QueueError, match="params.yaml does not exist"):
        queue.read_queue_params("params.yaml", dry_run=False)


# -- the record: reports/experiments.json --------------------------------------------------------
def _exp(name, state, top1=None, rev="r1"):
    metrics = {METRICS: {"best": {"top1_acc": top1}, "seeds": 1}} if top1 is not None else {}
    params = {"pipeline": {"datasets": ["digits"], "models": ["densenet86_dgc"]}}
    return grid.Experiment(name=name, rev=rev, baseline="c" * 40, state=state, params=params, metrics=metrics)


def test_the_record_keeps_what_dvc_no_longer_lists_and_a_result_over_a_requeued_copy(tmp_path):
    record = tmp_path / "experiments.json"
    queue.record_experiments(record, [_exp("abl-a", "success", 90.0), _exp("abl-b", "queued")])
    # a later listing: abl-a re-queued (not done), abl-b done, abl-c new; nothing is lost
    merged = queue.record_experiments(record, [_exp("abl-a", "queued", rev="r2"), _exp("abl-b", "success", 80.0),
                                               _exp("abl-c", "running")])
    by = {e.name: e for e in merged}
    assert (by["abl-a"].state, by["abl-a"].rev) == ("success", "r1")
    assert by["abl-b"].state == "success" and by["abl-c"].state == "running"
    assert {e.name for e in queue.read_experiments(record)} == {"abl-a", "abl-b", "abl-c"}
    assert queue.record_experiments(record, []) == merged  # an empty listing (a fresh clone) changes nothing


def test_the_record_keeps_only_the_experiments_own_metrics(tmp_path):
    exp = _exp("abl-a", "success", 90.0)
    exp.metrics["reports/metrics/digits-densenet86.json"] = {"best": {"top1_acc": 99.0}}  # the commit's other run
    (kept,) = queue.record_experiments(tmp_path / "r.json", [exp])
    assert set(kept.metrics) == {METRICS}


def test_ablations_without_any_experiment_keeps_the_committed_page(tmp_path, monkeypatch, capsys):
    from dgc.cli import main

    page = tmp_path / "ablations.html"
    page.write_text("the measured page")
    monkeypatch.setattr(queue, "live_experiments", lambda all_commits=False: [])
    status = main(["ablations", "--reports", str(tmp_path)])
    assert status == 2 and page.read_text() == "the measured page"
    assert "is kept" in capsys.readouterr().err
