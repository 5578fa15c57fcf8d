"""Where a measurement comes from: the commit and the machine, recorded in every benchmark's JSON
(benchmarks are not pipeline stages, so each output says which code and machine produced it).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import subprocess
from pathlib import Path
from typing import Any


def git_commit(repo: str | Path = ".") -> str:
    """HEAD's short hash, marked when files under dgc/ differ from it ('unknown' outside git)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "dgc"],
                               cwd=repo, capture_output=True, text=True).stdout.strip()
        return out + (" (dgc/ modified)" if dirty else "")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown (not a git checkout)"


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo's), else platform.processor()."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def provenance(device: str | None = None) -> dict[str, Any]:
    """{"commit", "date", "machine": {...}} for a benchmark's JSON; `device`: what was timed on."""
    import torch

    machine = {"host": platform.node(), "cpu": cpu_model(), "cpus": os.cpu_count(),
               "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
               "torch": torch.__version__}
    if torch.cuda.is_available():
        machine["gpu"] = torch.cuda.get_device_name(0)
    if device:
        machine["timed_on"] = device
    return {"commit": git_commit(), "date": datetime.date.today().isoformat(), "machine": machine}
