import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def sh(*args, cwd, check=True):
    proc = subprocess.run(list(args), cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode:
        raise AssertionError(f"{args} failed: {proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture
def repo(tmp_path):
    """A git + DVC repo with this project's dvc.yaml, params, claims and one metrics file of ours."""
    root = tmp_path / "repo"
    root.mkdir()
    for name in ("dvc.yaml", "params.yaml", "claims"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, root / name)
    sh("git", "init", "-q", cwd=root)
    sh("git", "config", "user.email", "t@example.com", cwd=root)
    sh("git", "config", "user.name", "t", cwd=root)
    sh(sys.executable, "-m", "dvc", "init", "-q", cwd=root)
    sh(sys.executable, "-m", "dvc", "config", "core.analytics", "false", cwd=root)
    metrics = root / "reports" / "metrics"
    metrics.mkdir(parents=True)
    (metrics / "cifar10-densenet86_dgc.json").write_text(json.dumps(
        {"best": {"top1_err": 5.01}, "flops_expected": 71037118, "params": 4264810}))
    sh("git", "add", "-A", cwd=root)
    sh("git", "commit", "-qm", "init", cwd=root)
    return root


def metrics_diff(repo, tag):
    return json.loads(sh(sys.executable, "-m", "dvc", "metrics", "diff", tag, "--json", cwd=repo).stdout)


def test_metrics_diff_against_the_paper_tag(repo):
    out = sh(sys.executable, "-m", "dgc", "paper-ref", cwd=repo).stdout
    assert "(created)" in out
    # the suggested command runs in a new user's shell: the environment's own dvc, by its path
    suggested = out.splitlines()[0].split("now run: ")[1]
    assert Path(suggested.split()[0]).is_file() and suggested.endswith("metrics diff paper --all")
    diff = metrics_diff(repo, "paper")
    ours = diff["reports/metrics/cifar10-densenet86_dgc.json"]
    assert ours["best.top1_err"]["old"] == 4.77 and ours["best.top1_err"]["new"] == 5.01
    c100 = diff["reports/metrics/cifar100-densenet86_dgc.json"]
    assert c100["best.top1_err"]["old"] == 23.41
    assert diff["reports/metrics/imagenet-resnet18_dgc.json"]["flops_expected"]["old"] == 890396782
    arch = diff["reports/architecture.json"]
    assert arch["imagenet-resnet18_dgc.flops_expected"]["old"] == 890396782


def test_paper_ref_is_idempotent(repo):
    first = sh(sys.executable, "-m", "dgc", "paper-ref", cwd=repo).stdout
    second = sh(sys.executable, "-m", "dgc", "paper-ref", cwd=repo).stdout
    assert "(created)" in first and "(unchanged)" in second
    assert first.split()[3] == second.split()[3]  # the same commit


def test_paper_ref_outside_a_commit_exits_2(tmp_path):
    sh("git", "init", "-q", cwd=tmp_path)
    proc = sh(sys.executable, "-m", "dgc", "paper-ref", "--claims", str(ROOT / "claims" / "paper.yaml"),
              cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "no commit" in proc.stderr


def test_metrics_diff_against_the_earlier_reproduction_tag(repo):
    out = sh(sys.executable, "-m", "dgc", "paper-ref", cwd=repo).stdout
    assert "tag mlrc2020 -> " in out
    diff = metrics_diff(repo, "mlrc2020")
    assert diff["reports/metrics/cifar10-densenet86_dgc.json"]["best.top1_err"] == {"old": 4.87, "new": 5.01,
                                                                                 "diff": pytest.approx(0.14)}
    assert diff["reports/metrics/cifar100-densenet86_dgc.json"]["best.top5_err"]["old"] == 6.5


def test_a_failing_git_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys):
    from dgc.cli import main

    monkeypatch.setenv("PATH", str(tmp_path))  # no git to run
    monkeypatch.chdir(tmp_path)
    assert main(["paper-ref", "--claims", str(ROOT / "claims" / "paper.yaml")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs git" in err and "Traceback" not in err
