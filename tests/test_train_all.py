"""`dgc train-all`: the scheduler with stand-in processes, then the real command on tiny digits runs."""

import os
import subprocess
import sys

import pytest
import yaml

from dgc import cli
from dgc.commands.train_all import RunSpec, log_path_of, plan_runs, run_all, summary_lines, train_command
from dgc.config import load_params
from dgc.runtime.checkpoint import load_checkpoint

# Each stand-in run marks itself running, notes how many runs are running, then exits with its code.
STAND_IN = """
import os, sys, time
from pathlib import Path
running = Path(sys.argv[1]); me = running / sys.argv[2]
me.touch()
print("concurrent", len(list(running.iterdir())), flush=True)
time.sleep(0.3)
me.unlink()
print("last words of", sys.argv[2])
sys.exit(int(sys.argv[3]))
"""


def test_run_all_keeps_at_most_jobs_processes_and_reports_each_exit(tmp_path):
    running = tmp_path / "running"
    running.mkdir()
    runs = [RunSpec("digits", f"m{i}", 0) for i in range(5)]
    codes = {"m0": 0, "m1": 3, "m2": 0, "m3": 0, "m4": 1}
    log_path = lambda r: log_path_of(r, tmp_path / "runs")
    command = lambda r: [sys.executable, "-c", STAND_IN, str(running), r.model, str(codes[r.model])]
    lines = []
    outcomes = run_all(runs, command, log_path, jobs=2, log=lines.append, poll_seconds=0.02)
    assert sorted(o.run.model for o in outcomes) == [f"m{i}" for i in range(5)]
    assert {o.run.model: o.returncode for o in outcomes} == codes
    for o in outcomes:
        text = o.log_path.read_text()
        assert o.log_path == tmp_path / "runs" / f"digits-{o.run.model}" / "seed0" / "train.log"
        assert int(text.split("concurrent ")[1].split()[0]) <= 2
        assert o.last_line == f"last words of {o.run.model}"
    assert sum(" start " in l for l in lines) == 5 and sum("FAILED" in l for l in lines) == 2
    failed_m1 = next(l for l in lines if "FAILED digits-m1 seed 0" in l)
    assert "exit 3" in failed_m1 and "train.log: last words of m1" in failed_m1
    summary = summary_lines(outcomes)
    assert summary[0] == "train-all: 5 runs, 3 finished, 2 failed"
    assert sorted(summary[1:]) == [
        f"  failed: digits-m1 seed 0 (exit 3), log {log_path(runs[1])}",
        f"  failed: digits-m4 seed 0 (exit 1), log {log_path(runs[4])}"]
    # a second round appends to the logs (a resumed run keeps its earlier output)
    run_all(runs[:1], command, log_path, jobs=1, log=lambda s: None, poll_seconds=0.02)
    assert log_path(runs[0]).read_text().count("last words of m0") == 2


def test_plan_and_command(tiny_params_file):
    params = load_params(tiny_params_file, {"pipeline.models": ["resnet18", "densenet86"],
                                            "pipeline.datasets": ["digits", "cifar10"],
                                            "train.seeds": [0, 1]})
    runs = plan_runs(params)
    assert [r.name for r in runs[:3]] == ["digits-resnet18 seed 0", "digits-resnet18 seed 1",
                                          "digits-densenet86 seed 0"]
    assert len(runs) == 8 and runs[-1] == RunSpec("cifar10", "densenet86", 1)
    cmd = train_command(runs[1], "p.yaml", ["train.epochs=3"], "r")
    assert cmd == [sys.executable, "-m", "dgc", "train", "digits", "resnet18", "--seed", "1",
                   "--params", "p.yaml", "--runs", "r", "--history-dir", "", "-S", "train.epochs=3"]


def test_missing_data_and_bad_jobs_exit_2(tmp_path, tiny_params_file, capsys):
    args = ["train-all", "--params", str(tiny_params_file), "--runs", str(tmp_path / "runs")]
    assert cli.main([*args, "-S", "pipeline.datasets=[cifar10]"]) == 2
    assert "cifar10 is missing" in capsys.readouterr().err
    assert cli.main([*args, "-j", "0"]) == 2
    assert "-j must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_train_all_then_the_train_stage_records_the_runs_without_training(tmp_path, tiny_params_file):
    raw = yaml.safe_load(tiny_params_file.read_text())
    raw["pipeline"] = {"datasets": ["digits"], "models": ["resnet18", "resnet18_dgc"]}
    raw["train"]["epochs"] = 1
    tiny_params_file.write_text(yaml.safe_dump(raw))
    runs = tmp_path / "runs"
    # this run will fail: its checkpoint cannot be read
    (runs / "digits-resnet18" / "seed0" / "checkpoint.pt").mkdir(parents=True)
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1",
           "DGC_GPU_LOCK_DIR": str(tmp_path / "locks")}
    dgc = [sys.executable, "-m", "dgc"]
    proc = subprocess.run([*dgc, "train-all", "-j", "2", "--params", str(tiny_params_file),
                           "--runs", str(runs)], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "train-all: 2 runs, 1 finished, 1 failed" in proc.stdout
    assert "FAILED digits-resnet18 seed 0: exit 2" in proc.stdout
    assert "not a readable checkpoint" in proc.stdout  # the failed run's last log line
    assert proc.stderr.strip().endswith("1 of 2 runs failed: digits-resnet18 seed 0")
    good = runs / "digits-resnet18_dgc" / "seed0"
    assert "epoch 1/1" in (good / "train.log").read_text()
    mtime = (good / "checkpoint.pt").stat().st_mtime_ns
    assert load_checkpoint(good / "checkpoint.pt")["epoch"] == 1
    assert not (tmp_path / "hist").exists()  # the merged history is the train stage's job

    # what `dvc repro` runs next: the stage's own command, which finds the run complete
    stage = subprocess.run([*dgc, "train", "digits", "resnet18_dgc", "--params", str(tiny_params_file),
                            "--runs", str(runs), "--history-dir", str(tmp_path / "hist")],
                           capture_output=True, text=True, env=env, timeout=300)
    assert stage.returncode == 0, stage.stderr
    assert "already complete" in stage.stdout and "epoch 1/1" not in stage.stdout
    assert (good / "checkpoint.pt").stat().st_mtime_ns == mtime
    merged = (tmp_path / "hist" / "digits-resnet18_dgc.csv").read_text().splitlines()
    assert merged[0].startswith("seed,epoch,") and len(merged) == 2 and merged[1].startswith("0,1,")
