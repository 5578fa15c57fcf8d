"""Experiment tracking with wandb: offline by default, online on request, never fatal.

The mode comes from WANDB_MODE when set (tests set `disabled`), else from `train.wandb`. Offline
runs land in the run folder's wandb/ (runs/<dataset>-<model>/seed<k>/wandb/) and can be uploaded later
with `wandb sync`. A run folder keeps its wandb run id in `wandb_id`: a resumed training run continues
its wandb run (offline, each session writes an offline-run-* folder with that id, and `wandb sync`
uploads them into one run, in order); a run started from scratch gets a new id. Any wandb error is
reported once and tracking is switched off; training goes on.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any

from dgc.io import write_text_atomic

RUN_ID_FILE = "wandb_id"


def run_id(directory: Path, resume: bool) -> str:
    """The wandb run id of the run in `directory`: the stored one when resuming, else a new one,
    stored (atomically) for the runs that resume this one."""
    path = directory / RUN_ID_FILE
    if resume and path.is_file():
        stored = path.read_text().strip()
        if stored:
            return stored
    new = uuid.uuid4().hex[:16]  # wandb's id alphabet: letters and digits
    write_text_atomic(path, new + "\n")
    return new


class Tracker:
    """One wandb run of the run folder `directory`; `resume` continues the folder's wandb run."""

    def __init__(self, mode: str, project: str, name: str, directory: Path,
                 config: dict[str, Any], enabled: bool = True, resume: bool = False) -> None:
        self.run = None
        mode = os.environ.get("WANDB_MODE", mode)
        if not enabled or mode == "disabled":
            return
        try:
            import wandb

            directory.mkdir(parents=True, exist_ok=True)
            self.run = wandb.init(project=project, name=name, dir=str(directory), mode=mode,
                                  config=config, id=run_id(directory, resume), resume="allow",
                                  reinit="finish_previous")
        except Exception as exc:  # wandb raises many types; none may stop training
            self._warn("start", exc)

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if self.run is None:
            return
        try:
            self.run.log(metrics, step=step)
        except Exception as exc:
            self._warn("log", exc)

    def finish(self) -> None:
        if self.run is None:
            return
        try:
            self.run.finish()
        except Exception as exc:
            self._warn("finish", exc)

    def _warn(self, what: str, exc: Exception) -> None:
        print(f"dgc: warning: wandb could not {what} ({type(exc).__name__}: {exc}); "
              f"tracking is off for this run, training goes on", file=sys.stderr)
        self.run = None
