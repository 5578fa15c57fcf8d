"""`dgc train-all`: every training run of the pipeline, N at a time, one process each.

`dvc repro` runs the train stages one after another, which leaves all GPUs but one idle. `run_all`
starts `python -m dgc train D M --seed k` for every pipeline.datasets x pipeline.models pair and
every train.seeds entry, at most `jobs` at a time; each process leases a GPU of its own
(dgc/runtime/gpus.py) and writes its output to runs/<D>-<M>/seed<k>/train.log. A later `dvc repro` finds
every run complete (train_model returns at once), merges the seeds' histories into reports/history/
and records the outputs.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable, Sequence

from dgc.config import Params


@dataclass(frozen=True)
class RunSpec:
    """One training run: a (dataset, model, seed) of the pipeline."""

    dataset: str
    model: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.dataset}-{self.model} seed {self.seed}"


@dataclass(frozen=True)
class RunOutcome:
    """How a run's process ended: exit status, wall time, its log and the log's last line."""

    run: RunSpec
    returncode: int
    seconds: float
    log_path: Path
    last_line: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def plan_runs(params: Params) -> list[RunSpec]:
    """Every (dataset, model, seed) the pipeline trains, in params.yaml order."""
    return [RunSpec(d, m, s) for d in params.pipeline.datasets for m in params.pipeline.models
            for s in params.train.seeds]


def missing_data(params: Params) -> list[str]:
    """The pipeline's datasets whose prepared folder (the `data` stage's output) is absent."""
    return [d for d in params.pipeline.datasets if not (Path(params.data.root) / d).is_dir()]


def log_path_of(run: RunSpec, runs_root: str | Path) -> Path:
    return Path(runs_root) / f"{run.dataset}-{run.model}" / f"seed{run.seed}" / "train.log"


def train_command(run: RunSpec, params_path: str | Path, overrides: Sequence[str],
                  runs_root: str | Path, python: str = sys.executable) -> list[str]:
    """The `dgc train` command of one run. The seeds' merged history is left to `dvc repro`
    (--history-dir ''), which writes it once every seed has finished."""
    cmd = [python, "-m", "dgc", "train", run.dataset, run.model, "--seed", str(run.seed),
           "--params", str(params_path), "--runs", str(runs_root), "--history-dir", ""]
    for override in overrides:
        cmd += ["-S", override]
    return cmd


def default_jobs() -> int:
    """One run per visible CUDA device; 1 without CUDA."""
    import torch

    return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1


def _last_line(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 4096))
            lines = [l.strip() for l in fh.read().decode(errors="replace").splitlines()]
    except OSError:
        return ""
    return next((l for l in reversed(lines) if l), "")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def run_all(runs: Sequence[RunSpec], command: Callable[[RunSpec], list[str]],
            log_path: Callable[[RunSpec], Path], jobs: int, log: Callable[[str], None] = print,
            poll_seconds: float = 0.5, env: dict[str, str] | None = None) -> list[RunOutcome]:
    """Run `command(run)` for every run, at most `jobs` processes at once, each writing stdout and
    stderr to `log_path(run)` (appended: a resumed run keeps its earlier log). Logs a line when a run
    starts and when it ends; returns the outcomes in the order the runs ended. On Ctrl-C the running
    processes are interrupted too (their checkpoints keep the last completed epoch)."""
    if jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}  # live logs
    pending = deque(enumerate(runs, 1))
    running: dict[subprocess.Popen, tuple[int, RunSpec, Path, float]] = {}
    outcomes: list[RunOutcome] = []
    total = len(runs)
    try:
        while pending or running:
            while pending and len(running) < jobs:
                i, run = pending.popleft()
                path = log_path(run)
                path.parent.mkdir(parents=True, exist_ok=True)
                cmd = command(run)
                with open(path, "a") as fh:
                    fh.write(f"=== {datetime.now().isoformat(timespec='seconds')} {shlex.join(cmd)}\n")
                    fh.flush()
                    # the child has its own copy of the descriptor: ours can close at once
                    proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env)
                running[proc] = (i, run, path, time.monotonic())
                log(f"[{i}/{total}] start {run.name}: log {path}")
            for proc in [p for p in running if p.poll() is not None]:
                i, run, path, started = running.pop(proc)
                outcome = RunOutcome(run, proc.returncode, time.monotonic() - started, path,
                                     _last_line(path))
                outcomes.append(outcome)
                status = "done" if outcome.ok else "FAILED"
                tail = "" if outcome.ok else f": {outcome.last_line}"
                log(f"[{i}/{total}] {status} {run.name}: exit {proc.returncode} after "
                    f"{_duration(outcome.seconds)}, log {path}{tail}")
            if running:
                time.sleep(poll_seconds)
    except KeyboardInterrupt:
        _stop(list(running))
        raise
    return outcomes


def _stop(procs: list[subprocess.Popen]) -> None:
    """Interrupt the runs still going: Ctrl-C in a terminal already reached them (same process
    group), so give them a moment to stop on their own before sending SIGINT, then SIGKILL."""
    deadline = time.monotonic() + 2
    while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
        time.sleep(0.1)
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGINT)
    for p in procs:
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def summary_lines(outcomes: Sequence[RunOutcome]) -> list[str]:
    """The closing report: counts, then one line per failed run with its exit status and log."""
    failed = [o for o in outcomes if not o.ok]
    lines = [f"train-all: {len(outcomes)} runs, {len(outcomes) - len(failed)} finished, "
             f"{len(failed)} failed"]
    lines += [f"  failed: {o.run.name} (exit {o.returncode}), log {o.log_path}" for o in failed]
    return lines
