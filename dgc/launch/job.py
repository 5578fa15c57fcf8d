"""What one `dgc train-all` job runs: one training run, `train_model(dataset, model, params, runs, seed)`.
Preempted or at its time limit it is requeued (`checkpoint`) and resumes from the run's checkpoint.pt; its
params travel pickled with it (editing params.yaml changes nothing a queued job trains)."""

from __future__ import annotations

import os
import socket
from typing import Any

import submitit

from dgc.config import Params, with_overrides


class TrainJob(submitit.helpers.Checkpointable):
    """The callable a job runs; see the module docstring."""

    def __call__(self, dataset: str, model: str, seed: int, params: Params, runs_root: str) -> dict[str, Any]:
        from dgc.stages.train import train_model

        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if params.train.threads is None and cpus:  # the job's CPUs, not every core of the node
            params = with_overrides(params, "train", threads=int(cpus))
        job_id = os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID") or "?"
        print(f"job {job_id} on {socket.gethostname()}: {dataset}-{model} seed {seed}", flush=True)
        result = train_model(dataset, model, params, runs_root, seed)
        return {"out_dir": str(result.out_dir), "epochs": result.epochs, "resumed_from": result.resumed_from,
                "best": dict(result.best), "final": dict(result.final)}

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        print("preempted or at the time limit: requeued, to resume from the run's last checkpoint", flush=True)
        return super().checkpoint(*args, **kwargs)
