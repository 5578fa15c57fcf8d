"""Experiment tracking with wandb, never fatal: the mode is WANDB_MODE, else `train.wandb` (offline runs
land in the run folder's wandb/); the folder's `wandb_id` lets a resumed run continue its wandb run.
A wandb error is reported once and switches tracking off; training goes on."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path
from typing import Any

from dgc.io import write_text_atomic

RUN_ID_FILE = "wandb_id"


def run_id(directory: Path, resume: bool) -> str:
    """The wandb run id of `directory`: the stored one when resuming, else a new one, stored."""
    path = directory / RUN_ID_FILE
    stored = path.read_text().strip() if resume and path.is_file() else ""
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
        self._call("log", metrics, step=step)

    def finish(self) -> None:
        self._call("finish")

    def _call(self, what: str, *args: Any, **kwargs: Any) -> None:
        if self.run is None:
            return
        try:
            getattr(self.run, what)(*args, **kwargs)
        except Exception as exc:  # wandb raises many types; none may stop training
            self._warn(what, exc)

    def _warn(self, what: str, exc: Exception) -> None:
        print(f"dgc: warning: wandb could not {what} ({type(exc).__name__}: {exc}); "
              f"tracking is off for this run, training goes on", file=sys.stderr)
        self.run = None
