"""Experiment tracking with wandb: offline by default, online on request, never fatal.

The mode comes from WANDB_MODE when set (tests set `disabled`), else from `train.wandb`. Offline
runs land in runs/<dataset>-<model>/wandb/ and can be uploaded later with `wandb sync`. Any wandb
error is reported once and tracking is switched off; training goes on.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any


class Tracker:
    def __init__(self, mode: str, project: str, name: str, directory: Path,
                 config: dict[str, Any], enabled: bool = True) -> None:
        self.run = None
        mode = os.environ.get("WANDB_MODE", mode)
        if not enabled or mode == "disabled":
            return
        try:
            import wandb

            directory.mkdir(parents=True, exist_ok=True)
            self.run = wandb.init(project=project, name=name, dir=str(directory), mode=mode,
                                  config=config, reinit=True)
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
