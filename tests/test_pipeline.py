"""`dvc repro` end to end on a tiny configuration, in a temporary copy of the project."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import copy_project

ROOT = Path(__file__).parents[1]
TINY = {
    "pipeline": {"datasets": ["digits"], "models": ["densenet86_dgc", "densenet86", "resnet18_dgc"]},
    "train": {"epochs": 1, "batch_size": 32, "max_batches": 2, "eval_batch_size": 256, "wandb": "disabled"},
    "evaluate": {"latency_batch_sizes": [1, 8], "latency_repeats": 1},
}


def run(*args, cwd, check=True):
    # PYTHONPATH: the stages' `dgc` must import the copy's package, not the installed checkout.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "WANDB_MODE": "disabled", "PYTHONPATH": str(cwd)}
    proc = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, env=env)
    if check and proc.returncode:
        raise AssertionError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A fresh git repository holding this project's files with a tiny params.yaml, already reproduced."""
    dest = tmp_path_factory.mktemp("clone") / "dgc"
    copy_project(dest)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    for name in TINY["pipeline"]["models"]:
        params["models"][name] = {"growth": [4, 4, 8], "depth": [1, 1, 1]} if "densenet" in name else \
            {"width": 8, "blocks": [1, 1, 1, 1], "stem": "cifar"}
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run("git", "init", "-q", cwd=dest)
    run("git", "config", "user.email", "ci@example.com", cwd=dest)
    run("git", "config", "user.name", "ci", cwd=dest)
    run("git", "add", "-A", cwd=dest)
    run("git", "commit", "-qm", "tiny", cwd=dest)
    first = run("dvc", "repro", cwd=dest)
    return dest, first


@pytest.mark.slow
def test_repro_writes_every_stage_output(project):
    dest, first = project
    for path in ["data/digits", "runs/digits-densenet86_dgc/seed0/best.pt",
                 "reports/metrics/digits-resnet18_dgc.json", "reports/info/digits-densenet86.json",
                 "reports/history/digits-densenet86_dgc.csv", "reports/architecture.json",
                 "reports/vs_paper.json", "reports/vs_paper.md", "reports/figures/accuracy_vs_flops.png",
                 "reports/report.html"]:
        assert (dest / path).exists(), path
    metrics = json.loads((dest / "reports/metrics/digits-densenet86_dgc.json").read_text())
    assert 0 < metrics["flops_expected"] < metrics["flops_dense"] and metrics["recipe_matches_paper"] == 0
    verdicts = json.loads((dest / "reports/vs_paper.json").read_text())["summary"]
    assert verdicts["reproduced"] == 10 and verdicts["not comparable"] == 0


@pytest.mark.slow
def test_second_repro_does_nothing(project):
    dest, _ = project
    second = run("dvc", "repro", cwd=dest)
    assert "Running stage" not in second.stdout
    assert "up to date" in second.stdout


@pytest.mark.slow
def test_metrics_diff_against_the_paper_tag_in_the_clone(project):
    dest, _ = project
    run(sys.executable, "-m", "dgc", "paper-ref", cwd=dest)
    diff = json.loads(run("dvc", "metrics", "diff", "paper", "--all", "--json", cwd=dest).stdout)
    assert diff["reports/metrics/cifar10-densenet86_dgc.json"]["best.top1_err"]["old"] == 4.77
    assert diff["reports/metrics/cifar100-densenet86_dgc.json"]["best.top1_err"]["old"] == 23.41
    arch = diff["reports/architecture.json"]["cifar10-densenet86_dgc.flops_expected"]
    assert arch["old"] == arch["new"] == 71037118


@pytest.mark.slow
def test_a_failing_stage_keeps_earlier_outputs_and_repro_continues_from_it(project):
    dest, _ = project
    plots = dest / "dgc" / "stages" / "plots.py"
    good = plots.read_text()
    plots.write_text(good + "\nraise RuntimeError('broken on purpose')\n")
    try:
        failed = run("dvc", "repro", cwd=dest, check=False)
    finally:
        plots.write_text(good)
    assert failed.returncode != 0 and "broken on purpose" in failed.stderr + failed.stdout
    assert "up to date" in run("dvc", "status", "evaluate@digits-densenet86_dgc", cwd=dest).stdout
    again = run("dvc", "repro", cwd=dest)
    ran = [line for line in again.stdout.splitlines() if line.startswith("Running stage")]
    assert ran and all("train@" not in line and "evaluate@" not in line for line in ran)
    assert any("'plots'" in line for line in ran)
