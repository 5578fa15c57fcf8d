"""`dgc train-all` on submitit's local executor: the one scheduling loop with stand-in jobs, the options,
then the real command on tiny digits runs (a failed run, a preempted one requeued, `dvc repro`'s stage
finding the runs complete). The same command on a real Slurm cluster: tests/test_slurm.py."""

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from helpers import DGC, DGC_ENV, epochs_of, tiny_pipeline, wait_for

from dgc import cli
from dgc.commands.train_all import RunSpec, plan_runs, run_all, summary_lines
from dgc.config import load_params
from dgc.launch.local import LocalLauncher, visible_gpus
from dgc.runtime.checkpoint import load_checkpoint

TESTS = Path(__file__).parent
ROOT = TESTS.parent


def test_plan_runs_in_params_order(tiny_params_file):
    params = load_params(tiny_params_file, {"pipeline.models": ["resnet18", "densenet86"],
                                            "pipeline.datasets": ["digits", "cifar10"],
                                            "train.seeds": [0, 1]})
    runs = plan_runs(params)
    assert [r.name for r in runs[:3]] == ["digits-resnet18 seed 0", "digits-resnet18 seed 1",
                                          "digits-densenet86 seed 0"]
    assert len(runs) == 8 and runs[-1] == RunSpec("cifar10", "densenet86", 1)


def test_local_slots_are_the_gpus_one_run_each():
    assert LocalLauncher(None, [4, 5]).slots == [4, 5]  # default: one run per GPU
    assert LocalLauncher(3, [4, 5]).slots == [4, 5, 4]  # -j above the GPUs: they are shared
    assert LocalLauncher(None, None).slots == [None] and LocalLauncher(2, None).slots == [None, None]
    assert visible_gpus("4,5", 2) == [4, 5] and visible_gpus(None, 3) == [0, 1, 2]
    launcher = LocalLauncher(None, [4, 5])
    assert launcher.free_slot() == 4
    launcher.busy.append(4)
    assert launcher.free_slot() == 5
    launcher.busy.append(5)
    assert launcher.free_slot() is False


def test_run_all_keeps_at_most_j_jobs_and_reports_each_ending(tmp_path, monkeypatch):
    from stand_in_jobs import stand_in

    monkeypatch.setenv("PYTHONPATH", str(TESTS))  # the local jobs import stand_in_jobs from here
    running = tmp_path / "running"
    running.mkdir()
    endings = {"m0": "ok", "m1": "raise", "m2": "ok", "m3": "kill", "m4": "ok"}
    runs = [RunSpec("digits", m, 0) for m in endings]
    lines = []
    outcomes = run_all(runs, LocalLauncher(2, None), lambda r: (r.dataset, r.model, r.seed, str(running),
                                                                endings[r.model]),
                       tmp_path / "runs", log=lines.append, poll_seconds=0.1, fn=stand_in)
    assert sorted(o.run.model for o in outcomes) == sorted(endings)
    status = {o.run.model: o.ending.status for o in outcomes}
    assert status == {"m0": "done", "m1": "failed", "m2": "done", "m3": "interrupted", "m4": "done"}
    for o in outcomes:
        assert o.log_path.parent == tmp_path / "runs" / f"digits-{o.run.model}" / "seed0" / "job"
        text = o.log_path.read_text()
        assert int(text.split("concurrent ")[1].split()[0]) <= 2
        assert f"last words of {o.run.model}" in text
        record = json.loads((o.log_path.parent / "submitted.json").read_text())
        assert record["launcher"] == "local" and record["job_id"] == o.job_id
    failed = next(o for o in outcomes if o.run.model == "m1")
    assert failed.ending.tail[-1] == "ValueError: m1 went wrong"  # the end of its traceback
    killed = next(o for o in outcomes if o.run.model == "m3")
    assert killed.ending.tail[-1] == "last words of m3"  # the end of its log
    assert sum(": submitted job " in line for line in lines) == 5
    m1_line = next(line for line in lines if "digits-m1 seed 0: FAILED" in line)
    assert f"log {failed.log_path}:\n" in m1_line and m1_line.endswith("    ValueError: m1 went wrong")
    assert summary_lines(outcomes, skipped=2) == [
        "train-all: 7 runs: 2 already complete, 3 trained, 1 failed, 1 interrupted",
        f"  failed: digits-m1 seed 0 (job {failed.job_id}, FAILED), log {failed.log_path}: "
        "ValueError: m1 went wrong",
        f"  interrupted: digits-m3 seed 0 (job {killed.job_id}, ENDED), log {killed.log_path}: last words of m3",
        "  an interrupted run resumes from its checkpoint when `dgc train-all` runs again"]


def _one_line_error(capsys) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert len(lines) == 1, captured.err
    return lines[0]


def test_bad_options_exit_2_with_one_line_naming_the_option(tmp_path, tiny_params_file, capsys, monkeypatch):
    args = ["train-all", "--params", str(tiny_params_file), "--runs", str(tmp_path / "runs")]
    cases = [
        (["--launcher", "slurm", "--time-limit", "0"],
         "slurm.time_limit (--time-limit) must be at least 1 minute, got 0"),
        (["--launcher", "slurm", "--cpus-per-job", "0"], "slurm.cpus_per_job (--cpus-per-job) must be at least 1"),
        (["--launcher", "slurm", "--sbatch", "qos"], "--sbatch 'qos' must look like OPTION=VALUE"),
        (["--partition", "gpu"], "--partition applies to --launcher slurm only"),
        (["-S", "slurm.partitions=gpu"], "unknown setting slurm.partitions; valid: account,"),
        (["-j", "0"], "-j must be at least 1, got 0"),
        (["-S", "pipeline.datasets=[cifar10]"], "cifar10 is missing: prepare it first"),
    ]
    for extra, message in cases:
        assert cli.main([*args, *extra]) == 2, extra
        assert message in _one_line_error(capsys), extra
    monkeypatch.setenv("PATH", str(tmp_path))  # no sinfo: no Slurm here
    assert cli.main([*args, "--launcher", "slurm"]) == 2
    assert "--launcher slurm: no Slurm on this machine (sinfo is not on PATH)" in _one_line_error(capsys)
    assert not (tmp_path / "runs").exists()


def test_dry_run_prints_the_jobs_and_submits_nothing(tmp_path, tiny_params_file, capsys):
    runs = tmp_path / "runs"
    args = ["train-all", "--params", str(tiny_params_file), "--runs", str(runs), "--dry-run",
            "-S", "pipeline.models=[resnet18, resnet18_dgc]", "-S", "train.seeds=[0, 1]"]
    assert cli.main([*args, "--launcher", "slurm", "--partition", "gpu", "--time-limit", "90",
                     "--gpus-per-job", "2", "--cpus-per-job", "8", "--account", "lab", "--sbatch", "qos=high",
                     "-j", "3"]) == 0
    out = capsys.readouterr().out
    assert ("0 complete, 0 still queued or running (re-attached), 4 to submit; slurm: one sbatch job per run, "
            "--partition=gpu --time=90 --cpus-per-task=8 --gpus-per-node=2 --account=lab --qos=high; "
            "at most 3 jobs at once") in out
    assert f"  submit   digits-resnet18_dgc seed 1: job folder {runs}/digits-resnet18_dgc/seed1/job" in out
    assert out.count("  submit   ") == 4
    assert cli.main(args) == 0
    assert "4 to submit; local: 1 at a time on this host (no GPU: on the CPU)" in capsys.readouterr().out
    assert not runs.exists()


@pytest.mark.slow
def test_train_all_then_the_train_stage_records_the_runs_without_training(tmp_path, tiny_params_file):
    params = tiny_pipeline(tiny_params_file, ["resnet18", "resnet18_dgc"], 1)
    runs = tmp_path / "runs"
    # this run will fail: its checkpoint cannot be read
    (runs / "digits-resnet18" / "seed0" / "checkpoint.pt").mkdir(parents=True)
    base = [*DGC, "train-all", "--params", str(params), "--runs", str(runs), "--poll", "0.2"]
    proc = subprocess.run([*base, "-j", "2"], capture_output=True, text=True, env=DGC_ENV, timeout=300, cwd=ROOT)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "0 complete, 0 still queued or running (re-attached), 2 to submit" in proc.stdout
    assert "train-all: 2 runs: 0 already complete, 1 trained, 1 failed, 0 interrupted" in proc.stdout
    failed = next(line for line in proc.stdout.split("\n[") if "digits-resnet18 seed 0: FAILED" in line)
    assert "/digits-resnet18/seed0/job/" in failed and "is not a readable checkpoint" in failed  # its traceback's end
    assert proc.stderr.strip().endswith("1 of 2 runs did not finish: digits-resnet18 seed 0")
    good = runs / "digits-resnet18_dgc" / "seed0"
    assert "epoch 1/1" in next((good / "job").glob("*_log.out")).read_text()
    mtime = (good / "checkpoint.pt").stat().st_mtime_ns
    assert load_checkpoint(good / "checkpoint.pt")["epoch"] == 1
    assert not (tmp_path / "hist").exists()  # the merged history is the train stage's job

    # what `dvc repro` runs next: the stage's own command, which finds the run complete
    stage = subprocess.run([*DGC, "train", "digits", "resnet18_dgc", "--params", str(params),
                            "--runs", str(runs), "--history-dir", str(tmp_path / "hist")],
                           capture_output=True, text=True, env=DGC_ENV, timeout=300, cwd=ROOT)
    assert stage.returncode == 0, stage.stderr
    assert "already complete" in stage.stdout and "epoch 1/1" not in stage.stdout
    assert (good / "checkpoint.pt").stat().st_mtime_ns == mtime
    merged = (tmp_path / "hist" / "digits-resnet18_dgc.csv").read_text().splitlines()
    assert merged[0].startswith("seed,epoch,") and len(merged) == 2 and merged[1].startswith("0,1,")

    # train-all again: the complete run is skipped, the failed one submitted again (and fails again)
    again = subprocess.run(base, capture_output=True, text=True, env=DGC_ENV, timeout=300, cwd=ROOT)
    assert "1 complete, 0 still queued or running (re-attached), 1 to submit" in again.stdout
    assert "train-all: 2 runs: 1 already complete, 0 trained, 1 failed, 0 interrupted" in again.stdout
    assert (good / "checkpoint.pt").stat().st_mtime_ns == mtime


@pytest.mark.slow
def test_a_preempted_local_job_is_requeued_and_resumes_from_its_checkpoint(tmp_path, tiny_params_file):
    """SIGUSR2, the signal Slurm sends before a time limit or a preemption, reaches the job's training
    process: submitit checkpoints (resubmits the call) and the local controller starts it again."""
    epochs = 30
    params = tiny_pipeline(tiny_params_file, ["resnet18"], epochs)
    runs = tmp_path / "runs"
    run = runs / "digits-resnet18" / "seed0"
    proc = subprocess.Popen([*DGC, "train-all", "--params", str(params), "--runs", str(runs), "--poll", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=DGC_ENV, cwd=ROOT)
    try:
        wait_for(lambda: len(epochs_of(run)) >= 2, "two epochs")
        controller = json.loads((run / "job" / "submitted.json").read_text())["job_id"]
        children = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
        assert len(children) == 1  # the controller runs one task: the training process
        os.kill(int(children[0]), signal.SIGUSR2)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, out + err
    assert "train-all: 1 runs: 0 already complete, 1 trained, 0 failed, 0 interrupted" in out
    log = next((run / "job").glob("*_log.out")).read_text()
    assert "preempted or at the time limit: requeued" in log
    resumed = int(log.split("resuming ")[1].split(" from epoch ")[1].split("/")[0])
    assert 2 <= resumed < epochs
    assert epochs_of(run) == list(range(1, epochs + 1))  # every epoch once: nothing lost, nothing redone
    assert load_checkpoint(run / "checkpoint.pt")["epoch"] == epochs
