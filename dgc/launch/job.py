"""What one `dgc train-all` job runs: one training run, `train_model(dataset, model, params, runs, seed)`.

`TrainJob` is a submitit `Checkpointable`: when Slurm preempts the job or its time limit nears,
submitit calls `checkpoint`, which resubmits the same call, and requeues the job. The requeued call
resumes from the run folder's checkpoint.pt (the last completed epoch; the train stage's own
resumption), so nothing but the epoch in progress is redone. A job that is cancelled or dies resumes
the same way when `dgc train-all` submits the run again. The params travel with the job (pickled), so
editing params.yaml while jobs wait in the queue changes nothing they train.
"""

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
