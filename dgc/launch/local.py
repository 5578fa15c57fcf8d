"""`dgc train-all --launcher local`: the runs as submitit jobs on this host, one per slot (a GPU, which
the job sees alone, or a CPU run); no time limit. A live job of an earlier train-all is waited for.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

from dgc.launch.jobs import Handle, Launcher, LauncherError, RunSpec, job_folder

NO_TIME_LIMIT_MIN = 60 * 24 * 365  # submitit's local jobs always have one: a year


def visible_gpus(cuda_visible_devices: str | None, count: int) -> list[int]:
    """The physical ids of the `count` GPUs this process sees (CUDA_VISIBLE_DEVICES=4,5: [4, 5])."""
    if cuda_visible_devices is None:
        return list(range(count))
    entries = [e.strip() for e in cuda_visible_devices.split(",") if e.strip()][:count]
    if not all(e.isdigit() for e in entries):
        raise LauncherError(f"CUDA_VISIBLE_DEVICES={cuda_visible_devices}: --launcher local needs GPU "
                            f"indices, not UUIDs")
    return [int(e) for e in entries]


def job_python() -> str:
    """The interpreter command of a job: this Python, importing this checkout's dgc (the submitting code)."""
    from dgc.imports import SOURCE_ROOT

    path = os.pathsep.join([str(SOURCE_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    return shlex.join(["env", f"PYTHONPATH={path}", sys.executable])


class PidJob:
    """A local job of an earlier `dgc train-all`, watched through its controller's process id."""

    def __init__(self, folder: Path, job_id: str) -> None:
        from submitit.core.utils import JobPaths

        self.job_id = job_id
        self.paths = JobPaths(folder, job_id, 0)

    def alive(self) -> bool:
        try:
            cmdline = Path(f"/proc/{self.job_id}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return False
        return "submitit" in cmdline and str(self.paths.folder) in cmdline

    def done(self) -> bool:
        return not self.alive()

    def cancel(self, check: bool = False) -> None:
        if self.alive():
            os.kill(int(self.job_id), signal.SIGINT)


class LocalLauncher(Launcher):
    name = "local"

    def __init__(self, jobs: int | None, gpus: Sequence[int] | None = None) -> None:
        """`gpus`: the GPU ids (None: CPU-only); `jobs`: runs at a time (default one per GPU, or 1; more
        runs than GPUs share them round-robin)."""
        super().__init__(jobs)
        self.gpus = list(gpus or [])
        count = jobs if jobs is not None else max(1, len(self.gpus))
        self.slots: list[Any] = [self.gpus[k % len(self.gpus)] if self.gpus else None for k in range(count)]

    @classmethod
    def for_this_host(cls, jobs: int | None) -> LocalLauncher:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return cls(jobs, visible_gpus(os.environ.get("CUDA_VISIBLE_DEVICES"), count) if count else None)

    def describe(self) -> str:
        where = (f"GPU {', '.join(str(g) for g in self.gpus)}, one run each" if self.gpus
                 else "no GPU: on the CPU")
        return f"local: {len(self.slots)} at a time on this host ({where})"

    def check(self) -> None:
        """Nothing to check on this host."""

    def free_slot(self) -> Any:
        """A free slot (`False` when all are busy; a slot is a GPU id, or None on the CPU)."""
        free = list(self.slots)
        for slot in self.busy:
            free.remove(slot)
        return free[0] if free else False

    def submit(self, run: RunSpec, slot: Any, fn: Any, args: tuple, runs_root: Path) -> Handle:
        import submitit

        folder = job_folder(run, runs_root)
        executor = submitit.LocalExecutor(folder=folder, max_num_timeout=3, python=job_python())
        executor.update_parameters(timeout_min=NO_TIME_LIMIT_MIN, stderr_to_stdout=True,
                                   gpus_per_node=0 if slot is None else 1,
                                   visible_gpus=() if slot is None else (slot,))
        return self.submitted(run, folder, executor.submit(fn, *args), slot)

    def live_job(self, folder: Path, job_id: str) -> tuple[Any, str]:
        job = PidJob(folder, job_id)
        return (job, "RUNNING") if job.alive() else (None, "")

    def refresh(self, handles: Sequence[Handle]) -> None:
        for h in handles:
            h.state = "ENDED" if h.job.done() else "RUNNING"

    def finished(self, handle: Handle) -> bool:
        return handle.state != "RUNNING"

    def interrupt(self, handles: Sequence[Handle]) -> list[str]:
        """Ctrl-C: stop this host's jobs (each keeps its last completed epoch)."""
        for h in handles:
            h.job.cancel(check=False)  # SIGINT to the job's controller, which stops its task
        # a job of an earlier train-all has no process of ours
        for process in filter(None, (getattr(h.job, "_process", None) for h in handles)):
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        return [f"stopped {len(handles)} local job(s); `dgc train-all` resumes them from their checkpoints"]
