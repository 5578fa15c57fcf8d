"""`dgc train-all --launcher slurm`: one sbatch job per run through submitit (params.yaml `slurm` or train-all
flags), at most `slurm.max_jobs` queued at once, watched with one `sacct` per poll, requeued at their time limit
(`TrainJob.checkpoint`); they outlive the `dgc train-all` that submitted them, which re-attaches to them.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
from pathlib import Path
from typing import Any, Sequence

from dgc.config import SlurmConfig
from dgc.launch.jobs import Handle, Launcher, LauncherError, RunSpec, has_result, job_folder, last_lines
from dgc.launch.local import job_python

# sacct's states of a job that has not ended (a requeued job passes through REQUEUED and PENDING).
ACTIVE = {"PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SUSPENDED",
          "COMPLETING", "CONFIGURING", "PREEMPTED", "SIGNALING", "STAGE_OUT", "STOPPED", "UNKNOWN",
          "SUBMITTED"}
NO_SLURM_HINT = "`bash .ci/slurm.sh` starts a one-node test cluster on this machine (docs/gpus.md)"


def _run(command: list[str]) -> str:
    """A Slurm command's output; a LauncherError naming it when it is missing or fails."""
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise LauncherError(f"--launcher slurm: no Slurm on this machine ({command[0]} is not on "
                            f"PATH); {NO_SLURM_HINT}") from None
    except subprocess.TimeoutExpired:
        raise LauncherError(f"--launcher slurm: `{' '.join(command)}` did not answer in 60 s") from None
    if proc.returncode:
        why = (last_lines(proc.stderr or proc.stdout, 1) or (f"exit {proc.returncode}",))[0]
        raise LauncherError(f"--launcher slurm: `{' '.join(command)}` failed: {why}")
    return proc.stdout


class SlurmLauncher(Launcher):
    name = "slurm"

    def __init__(self, cfg: SlurmConfig, max_jobs: int | None = None) -> None:
        super().__init__(max_jobs)
        self.cfg = cfg
        self.max_jobs = max_jobs if max_jobs is not None else cfg.max_jobs

    def sbatch_parameters(self) -> dict[str, Any]:
        """submitit's SlurmExecutor parameters of every job (the job name is added per run)."""
        cfg = self.cfg
        params: dict[str, Any] = {"time": cfg.time_limit, "cpus_per_task": cfg.cpus_per_job,
                                  "signal_delay_s": min(90, cfg.time_limit * 15), "stderr_to_stdout": True}
        optional = {"partition": cfg.partition, "account": cfg.account, "gpus_per_node": cfg.gpus_per_job,
                    "mem": None if cfg.mem_gb is None else f"{round(cfg.mem_gb * 1024)}M",
                    "setup": list(cfg.setup), "additional_parameters": dict(cfg.sbatch)}
        return {**params, **{k: v for k, v in optional.items() if v}}

    def describe(self) -> str:
        p = self.sbatch_parameters()
        flags = [f"--partition={p['partition']}" if "partition" in p else "(the default partition)"]
        shown = [(k, p[k]) for k in ("time", "cpus_per_task", "gpus_per_node", "account", "mem") if k in p]
        flags += [f"--{k.replace('_', '-')}={v}" for k, v in shown + list(p.get("additional_parameters", {}).items())]
        at_once = "every run at once" if self.max_jobs is None else f"at most {self.max_jobs} jobs at once"
        return f"slurm: one sbatch job per run, {' '.join(flags)}; {at_once}"

    def check(self) -> None:
        """The cluster answers, the partition exists and sacct (how jobs are watched) works."""
        names = [n.strip().rstrip("*") for n in _run(["sinfo", "-h", "-o", "%R"]).splitlines() if n.strip()]
        if self.cfg.partition and self.cfg.partition not in names:
            raise LauncherError(f"slurm.partition (--partition) {self.cfg.partition!r} is not a partition "
                                f"of this cluster; its partitions: {', '.join(names) or 'none'}")
        _run(["sacct", "-n", "-X", "-j", "1", "-o", "JobID"])

    def free_slot(self) -> Any:
        return self.max_jobs is None or len(self.busy) < self.max_jobs

    def submit(self, run: RunSpec, slot: Any, fn: Any, args: tuple, runs_root: Path) -> Handle:
        import submitit
        from submitit.core.utils import FailedJobError

        folder = job_folder(run, runs_root)
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=self.cfg.max_timeouts,
                                          python=job_python())
        executor.update_parameters(job_name=f"dgc-{run.dataset}-{run.model}-s{run.seed}",
                                   **self.sbatch_parameters())
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # submitit prints sbatch's stderr too
                job = executor.submit(fn, *args)
        except FailedJobError as exc:
            lines = [line for line in str(exc).splitlines() if "error" in line.lower()] or str(exc).splitlines()
            raise LauncherError(f"sbatch refused the job of {run.name}: "
                                f"{lines[-1].strip() if lines else 'no message'}") from None
        finally:
            for link in folder.glob(".submission_file_*.sh"):  # submitit's links to the job scripts
                link.unlink(missing_ok=True)
        return self.submitted(run, folder, job, slot)

    def live_job(self, folder: Path, job_id: str) -> tuple[Any, str]:
        import submitit

        job = submitit.SlurmJob(folder=folder, job_id=job_id)
        state = job.watcher.get_state(job.job_id, mode="force")
        return (job, state) if state.split()[0] in ACTIVE and state != "UNKNOWN" else (None, "")

    def refresh(self, handles: Sequence[Handle]) -> None:
        if not handles:
            return
        watcher = handles[0].job.watcher
        watcher.update()  # one sacct call for every job
        for h in handles:
            h.state = watcher.get_state(h.job_id, mode="cache")

    def finished(self, handle: Handle) -> bool:
        return has_result(handle) or handle.state.split()[0] not in ACTIVE

    def interrupt(self, handles: Sequence[Handle]) -> list[str]:
        """Ctrl-C: the jobs stay in Slurm's hands."""
        if not handles:
            return []
        ids = " ".join(h.job_id for h in handles)
        return [f"{len(handles)} Slurm job(s) keep running: the same `dgc train-all` command re-attaches "
                f"to them; `scancel {ids}` cancels them"]
