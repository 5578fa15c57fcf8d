"""What both launchers share: a run's job record, the handle of a watched job, and how a job ended. A run's
jobs live in runs/<dataset>-<model>/seed<k>/job/, with `submitted.json` (the latest job's launcher and id, by
which a later `dgc train-all` re-attaches to a job still queued or running)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from dgc.errors import DGCError

RECORD = "submitted.json"


class LauncherError(DGCError, ValueError):
    """A launcher cannot start with these settings; the message names the option."""


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


@dataclass
class Handle:
    """A job being watched: its run, submitit job, launcher slot (a local job's GPU), submission time
    (wall clock) and last state seen."""

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


class Launcher:
    """What both launchers do: check -j, hold the slots of the jobs they submitted, write a job's record and
    re-attach to the recorded job, which `live_job(folder, job_id)` gives as (job, state) or (None, "")."""

    name = ""

    def __init__(self, jobs: int | None) -> None:
        if jobs is not None and jobs < 1:
            raise LauncherError(f"-j must be at least 1, got {jobs}")
        self.busy: list[Any] = []  # the slots of the jobs submitted and not released

    def submitted(self, run: RunSpec, folder: Path, job: Any, slot: Any) -> Handle:
        """The handle of a job just submitted in `slot`, its record written."""
        from dgc.io import write_text_atomic

        record = {"launcher": self.name, "job_id": job.job_id,
                  "submitted": datetime.now().astimezone().isoformat(timespec="seconds"), "submitted_at": time.time()}
        write_text_atomic(folder / RECORD, json.dumps(record) + "\n")
        self.busy.append(slot)
        return Handle(run, job, slot)

    def release(self, handle: Handle) -> None:
        if not handle.attached:
            self.busy.remove(handle.slot)

    def attach(self, run: RunSpec, runs_root: Path) -> Handle | None:
        """The handle of the run's recorded job (if this launcher's) still queued or running, else None."""
        folder = job_folder(run, runs_root)
        try:
            record = json.loads((folder / RECORD).read_text())
        except (OSError, ValueError):  # no record, or unreadable
            return None
        if not isinstance(record, dict) or record.get("launcher") != self.name or "job_id" not in record:
            return None
        job, state = self.live_job(folder, str(record["job_id"]))
        if job is None:
            return None
        return Handle(run, job, None, float(record.get("submitted_at", 0)), attached=True, state=state)


@dataclass(frozen=True)
class Ending:
    """How a job ended: `done`, `failed` (it raised: `tail` ends its traceback) or `interrupted` (no result:
    `tail` ends its log); `state` is the scheduler's last word (e.g. `CANCELLED by 0`)."""

    status: str
    state: str
    tail: tuple[str, ...] = ()
    result: dict[str, Any] | None = None


def last_lines(text: str, count: int = 3) -> tuple[str, ...]:
    """The last `count` lines of `text` that say something (a progress bar's last redraw; no `^^^^` markers)."""
    lines = [line.rsplit("\r", 1)[-1].rstrip() for line in text.splitlines()]
    return tuple([line for line in lines if line.strip(" ^~")][-count:])


def has_result(handle: Handle) -> bool:
    """Whether the job wrote its result file after its submission (a local job's id, a pid, is reused)."""
    result = Path(handle.job.paths.result_pickle)
    return result.exists() and result.stat().st_mtime >= handle.submitted_at - 1


def ending_of(handle: Handle, state: str) -> Ending:
    """How the finished job of `handle` ended, from its result file (see `has_result`)."""
    from submitit.core.utils import pickle_load

    result = Path(handle.job.paths.result_pickle)
    deadline = time.monotonic() + (10 if state.startswith(("COMPLETED", "FAILED")) else 0)
    while not result.exists() and time.monotonic() < deadline:  # a shared file system may lag
        time.sleep(0.5)
    if has_result(handle):
        outcome, payload = pickle_load(result)  # the scheduler may not have seen the job end yet
        if outcome == "success":
            return Ending("done", "COMPLETED", (), payload)
        return Ending("failed", "FAILED", last_lines(str(payload)))
    try:  # no result: the last lines of the end of its log, if readable
        with open(handle.log_path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, 2) - 16384))
            return Ending("interrupted", state, last_lines(fh.read().decode(errors="replace")))
    except OSError:
        return Ending("interrupted", state)
