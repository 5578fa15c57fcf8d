"""What both launchers share: the record of a run's job, the handle of a job being watched, and how it ended.

Each run's jobs live in its job folder, runs/<dataset>-<model>/seed<k>/job/: submitit's files of every
job that trained it (`<job id>_0_log.out`, the job's output, stdout and stderr together;
`<job id>_submitted.pkl`, the call; `<job id>_0_result.pkl`, its result or traceback) and
`submitted.json`, the launcher and id of the latest job, by which a later `dgc train-all` re-attaches
to a job still queued or running instead of submitting the run twice.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

RECORD = "submitted.json"


@dataclass(frozen=True)
class RunSpec:
    """One training run: a (dataset, model, seed) of the pipeline."""

    dataset: str
    model: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.dataset}-{self.model} seed {self.seed}"


def job_folder(run: RunSpec, runs_root: str | Path) -> Path:
    """runs/<dataset>-<model>/seed<k>/job: the submitit folder of the run's jobs."""
    from dgc.runtime.runs import run_dir

    return run_dir(runs_root, run.dataset, run.model, run.seed) / "job"


def write_record(folder: Path, launcher: str, job_id: str) -> None:
    from dgc.io import write_text_atomic

    write_text_atomic(folder / RECORD, json.dumps(
        {"launcher": launcher, "job_id": job_id, "submitted": datetime.now().astimezone().isoformat(
            timespec="seconds"), "submitted_at": time.time()}) + "\n")


def read_record(folder: Path) -> dict[str, Any] | None:
    """The latest job's record, or None when there is none (or it cannot be read)."""
    try:
        record = json.loads((folder / RECORD).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and {"launcher", "job_id"} <= set(record) else None


@dataclass
class Handle:
    """A job being watched: its run, the submitit job, the launcher slot it holds (the GPU of a
    local job), when it was submitted (wall clock) and the last state seen."""

    run: RunSpec
    job: Any  # a submitit Job, or local.py's PidJob for a local job of an earlier train-all
    slot: Any = None
    submitted_at: float = field(default_factory=time.time)
    attached: bool = False
    state: str = "SUBMITTED"
    logged_state: str = ""

    @property
    def job_id(self) -> str:
        return str(self.job.job_id)

    @property
    def log_path(self) -> Path:
        return Path(self.job.paths.stdout)


@dataclass(frozen=True)
class Ending:
    """How a job ended: `done` (the run trained), `failed` (it raised: `tail` is the end of its
    traceback) or `interrupted` (cancelled, killed, out of time or memory, with no result: `tail` is
    the end of its log); `state` is the scheduler's last word (e.g. `CANCELLED by 0`)."""

    status: str
    state: str
    tail: tuple[str, ...] = ()
    result: dict[str, Any] | None = None


def last_lines(text: str, count: int = 3) -> tuple[str, ...]:
    """The last `count` lines of `text` that say something (a progress bar's line is its last redraw;
    a traceback's `^^^^` markers are left out)."""
    lines = [line.rsplit("\r", 1)[-1].rstrip() for line in text.splitlines()]
    return tuple([line for line in lines if line.strip(" ^~")][-count:])


def log_tail(path: Path, count: int = 3) -> tuple[str, ...]:
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, 2) - 16384))
            return last_lines(fh.read().decode(errors="replace"), count)
    except OSError:
        return ()


def ending_of(handle: Handle, state: str) -> Ending:
    """How the finished job of `handle` ended, read from its result file (only one written after the
    job was submitted counts: a local job's id is a process id, which the system reuses)."""
    from submitit.core.utils import pickle_load

    result = Path(handle.job.paths.result_pickle)
    deadline = time.monotonic() + (10 if state.startswith(("COMPLETED", "FAILED")) else 0)
    while not result.exists() and time.monotonic() < deadline:  # a shared file system may lag
        time.sleep(0.5)
    if result.exists() and result.stat().st_mtime >= handle.submitted_at - 1:
        outcome, payload = pickle_load(result)  # the scheduler may not have seen the job end yet
        if outcome == "success":
            return Ending("done", "COMPLETED", (), payload)
        return Ending("failed", "FAILED", last_lines(str(payload)))
    return Ending("interrupted", state, log_tail(handle.log_path))
