"""`dgc train-all --launcher slurm` on a real Slurm cluster: two tiny runs, one cancelled mid-run and
resumed from its checkpoint (with train-all interrupted and re-attached on the way), a job preempted
and requeued by Slurm, bad options named in one line. Needs a reachable cluster whose default
partition runs CPU jobs: `bash .ci/slurm.sh` starts a one-node one on this machine (.ci/run does,
before the tests); without one, every test here is skipped with the reason."""

import json
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
from helpers import DGC, DGC_ENV, epochs_of, tiny_pipeline, wait_for

from dgc.runtime.checkpoint import load_checkpoint

ROOT = Path(__file__).parents[1]
EPOCHS = 25  # a tiny run trains ~1 epoch/s here: time to cancel it mid-run, little to finish it


def _no_slurm() -> str | None:
    """Why no Slurm cluster can run these tests, or None when one can."""
    if shutil.which("sinfo") is None:
        return "no Slurm cluster reachable: sinfo is not on PATH (`bash .ci/slurm.sh` starts one)"
    for command in (["sinfo", "-h", "-o", "%R"], ["sacct", "-n", "-X", "-j", "1"]):
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"no Slurm cluster reachable: `{' '.join(command)}`: {exc}"
        if proc.returncode:
            why = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [f"exit {proc.returncode}"]
            return f"no Slurm cluster reachable: `{' '.join(command)}` fails: {why[0]}"
    return None


NO_SLURM = _no_slurm()
pytestmark = [pytest.mark.slurm, pytest.mark.skipif(NO_SLURM is not None, reason=NO_SLURM or "")]


def _train_all(params: Path, runs: Path, *extra: str) -> list[str]:
    return [*DGC, "train-all", "--launcher", "slurm", "--params", str(params), "--runs", str(runs),
            "--poll", "0.5", *extra]


def _job_id(run_folder: Path) -> str | None:
    try:
        return json.loads((run_folder / "job" / "submitted.json").read_text())["job_id"]
    except (OSError, ValueError, KeyError):
        return None


def _squeue_state(job_id: str) -> str:
    return subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%T"], capture_output=True,
                          text=True).stdout.strip()


def _resumed_from(log: str) -> int:
    """The epoch a run's log says it resumed from (`resuming <run> from epoch k/E`)."""
    return int(log.split("resuming ")[1].split(" from epoch ")[1].split("/")[0])


def test_bad_options_are_one_line_naming_the_option(tmp_path, tiny_params_file):
    params = tiny_pipeline(tiny_params_file, ["resnet18"], 1)
    runs = tmp_path / "runs"
    for extra, message in [
            (["--partition", "no-such-partition"],
             "slurm.partition (--partition) 'no-such-partition' is not a partition of this cluster; "
             "its partitions: "),
            (["--time-limit", "0"], "slurm.time_limit (--time-limit) must be at least 1 minute, got 0")]:
        proc = subprocess.run(_train_all(params, runs, *extra), capture_output=True, text=True, env=DGC_ENV,
                              timeout=120, cwd=ROOT)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr
    assert not (runs / "digits-resnet18" / "seed0" / "job").exists()  # nothing was submitted


@pytest.mark.slow
def test_two_runs_one_cancelled_mid_run_resumes_from_its_checkpoint(tmp_path, tiny_params_file):
    params = tiny_pipeline(tiny_params_file, ["resnet18", "resnet18_dgc"], EPOCHS)
    runs = tmp_path / "runs"
    plain, dgc = runs / "digits-resnet18" / "seed0", runs / "digits-resnet18_dgc" / "seed0"

    # 1. both runs submitted; the DGC one cancelled (scancel) once it has checkpointed two epochs
    first = subprocess.Popen(_train_all(params, runs), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, env=DGC_ENV, cwd=ROOT)
    try:
        wait_for(lambda: len(epochs_of(dgc)) >= 2, "two epochs of the DGC run")
        cancelled = _job_id(dgc)
        subprocess.run(["scancel", cancelled], check=True)
        out, err = first.communicate(timeout=300)
    finally:
        first.kill()
    assert first.returncode == 1, out + err
    assert f"digits-resnet18_dgc seed 0: INTERRUPTED (job {cancelled}, CANCELLED" in out
    assert "digits-resnet18 seed 0: done (job" in out  # the other run went on
    assert "train-all: 2 runs: 0 already complete, 1 trained, 0 failed, 1 interrupted" in out
    assert err.strip().endswith("1 of 2 runs did not finish: digits-resnet18_dgc seed 0")
    kept = load_checkpoint(dgc / "checkpoint.pt")["epoch"]
    assert 2 <= kept < EPOCHS  # cancelled mid-run
    assert load_checkpoint(plain / "checkpoint.pt")["epoch"] == EPOCHS
    plain_mtime = (plain / "checkpoint.pt").stat().st_mtime_ns

    # 2. train-all again: the complete run is skipped, the cancelled one submitted again; Ctrl-C on
    # train-all leaves that job running
    second = subprocess.Popen(_train_all(params, runs), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=DGC_ENV, cwd=ROOT)
    try:
        wait_for(lambda: _job_id(dgc) not in (None, cancelled), "the DGC run's second job")
        resubmitted = _job_id(dgc)
        second.send_signal(signal.SIGINT)
        out, err = second.communicate(timeout=120)
    finally:
        second.kill()
    assert second.returncode == 130, out + err
    assert "1 complete, 0 still queued or running (re-attached), 1 to submit" in out
    assert f"1 Slurm job(s) keep running: the same `dgc train-all` command re-attaches to them; " \
           f"`scancel {resubmitted}` cancels them" in out
    assert _squeue_state(resubmitted) in ("PENDING", "RUNNING")

    # 3. and again: it re-attaches to that job, which resumes from the checkpoint and finishes
    third = subprocess.run(_train_all(params, runs), capture_output=True, text=True, env=DGC_ENV,
                           timeout=300, cwd=ROOT)
    assert third.returncode == 0, third.stdout + third.stderr
    assert "1 complete, 1 still queued or running (re-attached), 0 to submit" in third.stdout
    assert f"digits-resnet18_dgc seed 0: done (job {resubmitted})" in third.stdout
    assert "train-all: 2 runs: 1 already complete, 1 trained, 0 failed, 0 interrupted" in third.stdout
    log = (dgc / "job" / f"{resubmitted}_0_log.out").read_text()
    assert _resumed_from(log) == kept
    assert (dgc / "job" / f"{cancelled}_0_log.out").exists()  # the cancelled job's log is kept
    assert epochs_of(dgc) == list(range(1, EPOCHS + 1))  # nothing lost, nothing trained twice
    assert load_checkpoint(dgc / "checkpoint.pt")["epoch"] == EPOCHS
    assert (plain / "checkpoint.pt").stat().st_mtime_ns == plain_mtime

    # 4. what `dvc repro` runs next finds both complete: it records them without training
    for model in ("resnet18", "resnet18_dgc"):
        stage = subprocess.run([*DGC, "train", "digits", model, "--params", str(params), "--runs", str(runs),
                                "--history-dir", str(tmp_path / "hist")], capture_output=True, text=True,
                               env=DGC_ENV, timeout=300, cwd=ROOT)
        assert stage.returncode == 0 and "already complete" in stage.stdout, stage.stdout + stage.stderr
        assert "resuming" not in stage.stdout and f"epoch {EPOCHS}/{EPOCHS}" not in stage.stdout


@pytest.mark.slow
def test_a_preempted_job_is_requeued_by_slurm_and_resumes(tmp_path, tiny_params_file):
    """USR2, which Slurm sends before a time limit (sbatch --signal) and which a preemption script
    sends, makes submitit checkpoint the call and `scontrol requeue` the job; Slurm holds a requeued
    job back for a while (its BeginTime), which the test skips with `scontrol update`."""
    params = tiny_pipeline(tiny_params_file, ["resnet18"], EPOCHS)
    runs = tmp_path / "runs"
    run = runs / "digits-resnet18" / "seed0"
    proc = subprocess.Popen(_train_all(params, runs), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=DGC_ENV, cwd=ROOT)
    try:
        wait_for(lambda: len(epochs_of(run)) >= 2, "two epochs")
        job = _job_id(run)
        subprocess.run(["scancel", "--signal=USR2", job], check=True)
        wait_for(lambda: _squeue_state(job) == "PENDING", "the job requeued")
        subprocess.run(["scontrol", "update", f"jobid={job}", "StartTime=now"], check=True)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, out + err
    assert f"digits-resnet18 seed 0: done (job {job})" in out  # the same job, requeued
    assert "train-all: 1 runs: 0 already complete, 1 trained, 0 failed, 0 interrupted" in out
    log = (run / "job" / f"{job}_0_log.out").read_text()
    assert "preempted or at the time limit: requeued" in log
    assert 2 <= _resumed_from(log) < EPOCHS
    assert epochs_of(run) == list(range(1, EPOCHS + 1))
    shown = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    assert "Restarts=1" in shown  # Slurm's own count (it keeps an ended job's record for MinJobAge, 300 s)
