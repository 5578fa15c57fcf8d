"""`dgc train-all`: every training run of the pipeline as a submitit job, on this host or on Slurm.

It skips the complete runs, re-attaches to the jobs an earlier train-all left queued or running and submits the
others (dgc/launch/job.py) through the `local` launcher (one run per GPU, or `-j N` CPU runs) or `slurm`; a
failed job is reported and the others go on, an interrupted one resumes on the next train-all."""

from __future__ import annotations

import argparse
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from dgc.config import Params
from dgc.errors import DGCError
from dgc.launch.jobs import Ending, Handle, RunSpec, ending_of, job_folder

ACTIVE = ("RUNNING", "REQUEUED", "PREEMPTED")  # job states whose change is logged (and back to PENDING)
SLURM_FLAGS = ("partition", "account", "gpus_per_job", "cpus_per_job", "mem_gb", "time_limit", "max_timeouts")


class TrainAllError(DGCError, ValueError):
    """Bad train-all options; the message names the option."""


def plan_runs(params: Params) -> list[RunSpec]:
    """Every (dataset, model, seed) the pipeline trains, in params.yaml order."""
    return [RunSpec(d, m, s) for d in params.pipeline.datasets for m in params.pipeline.models
            for s in params.train.seeds]


def with_slurm_flags(params: Params, args: argparse.Namespace) -> Params:
    """params with the slurm flags given on the command line (validated: a bad one is named)."""
    from dgc.config import with_overrides

    changes: dict[str, Any] = {k: getattr(args, k) for k in SLURM_FLAGS if getattr(args, k) is not None}
    extra = {}
    for option in args.sbatch:
        key, sep, value = option.partition("=")
        if not sep or not key.strip():
            raise TrainAllError(f"--sbatch {option!r} must look like OPTION=VALUE, e.g. --sbatch qos=high")
        extra[key.strip().lstrip("-")] = value
    if extra:
        changes["sbatch"] = {**params.slurm.sbatch, **extra}
    if changes and args.launcher != "slurm":
        raise TrainAllError(f"--{next(iter(changes)).replace('_', '-')} applies to --launcher slurm only")
    return with_overrides(params, "slurm", **changes) if changes else params


def make_launcher(args: argparse.Namespace, params: Params):
    if args.launcher == "slurm":
        from dgc.launch.slurm import SlurmLauncher

        return SlurmLauncher(params.slurm, args.jobs)
    from dgc.launch.local import LocalLauncher

    if args.jobs is not None and args.jobs > 1 and params.train.device.startswith("cuda:"):
        print(f"warning: train.device is {params.train.device}: every run uses that one GPU; "
              f"set train.device: auto to give each run a GPU of its own", file=sys.stderr)
    return LocalLauncher.for_this_host(args.jobs)


@dataclass(frozen=True)
class Outcome:
    """How a run's job ended (`ending.status`: done, failed or interrupted), after how long, its log."""

    run: RunSpec
    job_id: str
    ending: Ending
    seconds: float
    log_path: Path

    @property
    def ok(self) -> bool:
        return self.ending.status == "done"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _epochs_done(run: RunSpec, runs_root: Path) -> int:
    from dgc.runtime.runs import run_dir

    try:
        with open(run_dir(runs_root, run.dataset, run.model, run.seed) / "history.csv") as fh:
            return max(0, sum(1 for _ in fh) - 1)
    except OSError:
        return 0


def run_all(runs: Sequence[RunSpec], launcher: Any, job_args: Callable[[RunSpec], tuple], runs_root: Path,
            attached: Sequence[Handle] = (), log: Callable[[str], None] = print, poll_seconds: float = 2.0,
            progress_seconds: float = 300.0, epochs: int | None = None, fn: Any = None) -> list[Outcome]:
    """Submit a job per run (calling `fn`, default a TrainJob, with `job_args(run)`) while `launcher` has a free
    slot, watch them and the `attached` ones, logging each event and a progress line every `progress_seconds`;
    returns the outcomes in ending order. A refused first submission is a TrainAllError (bad options), a later
    one that run's failure; on Ctrl-C `launcher.interrupt` decides what becomes of the running jobs."""
    from dgc.launch.job import TrainJob
    from dgc.launch.local import LauncherError

    total, pending, watching, outcomes = len(runs) + len(attached), deque(runs), list(attached), []
    number = {r: i for i, r in enumerate([h.run for h in attached] + list(runs), 1)}
    started = {h.run: time.time() for h in attached}  # a submitted job's start: its handle's submitted_at
    last_progress = time.monotonic()
    fn = TrainJob() if fn is None else fn

    def tag(run: RunSpec) -> str:
        return f"[{number[run]}/{total}] {run.name}"

    try:
        while pending or watching:
            while pending and (slot := launcher.free_slot()) is not False:
                run = pending.popleft()
                try:
                    handle = launcher.submit(run, slot, fn, job_args(run), runs_root)
                except LauncherError as exc:
                    if not outcomes and not watching:
                        raise TrainAllError(str(exc)) from None
                    outcomes.append(Outcome(run, "-", Ending("failed", "NOT SUBMITTED", (str(exc),)), 0.0,
                                            job_folder(run, runs_root)))
                    log(f"{tag(run)}: FAILED to submit: {exc}")
                    continue
                watching.append(handle)
                where = f" on GPU {slot}" if slot not in (None, True) else ""
                log(f"{tag(run)}: submitted job {handle.job_id}{where}, log {handle.log_path}")
            launcher.refresh(watching)
            for h in list(watching):
                state = h.state.split()[0] if h.state else ""
                if launcher.finished(h):
                    watching.remove(h)
                    launcher.release(h)
                    seconds = time.time() - started.get(h.run, h.submitted_at)
                    outcomes.append(Outcome(h.run, h.job_id, ending_of(h, h.state), seconds, h.log_path))
                    log(_ending_line(tag(h.run), outcomes[-1]))
                    continue
                if state != h.logged_state:
                    if state in ACTIVE or (state == "PENDING" and h.logged_state in ACTIVE):
                        log(f"{tag(h.run)}: job {h.job_id} {h.state.lower()}")
                    h.logged_state = state
            now = time.monotonic()
            if watching and now - last_progress >= progress_seconds:
                last_progress = now
                log(_progress_line(watching, pending, outcomes, total, runs_root, epochs))
            if pending or watching:
                time.sleep(poll_seconds)
    except KeyboardInterrupt:
        for line in launcher.interrupt(watching):
            log(line)
        raise
    return outcomes


def _ending_line(tag: str, o: Outcome) -> str:
    status, state = ("done", "") if o.ok else (o.ending.status.upper(), f", {o.ending.state}")
    line = f"{tag}: {status} (job {o.job_id}{state}) after {_duration(o.seconds)}, log {o.log_path}"
    if o.ok and o.ending.result:
        best = o.ending.result.get("best") or {}
        if "test_top1" in best:
            line += f": best test top-1 {best['test_top1']:.2f}% (epoch {best.get('epoch')})"
    elif o.ending.tail:
        line += ":\n" + "\n".join(f"    {t}" for t in o.ending.tail)
    return line


def _progress_line(watching: Sequence[Handle], pending: Sequence[RunSpec], outcomes: Sequence[Outcome],
                   total: int, runs_root: Path, epochs: int | None) -> str:
    running = [h for h in watching if h.state.startswith("RUNNING")]
    of = f"/{epochs}" if epochs else ""
    shown = ", ".join(f"{h.run.name} epoch {_epochs_done(h.run, runs_root)}{of}" for h in running[:8])
    more = f" and {len(running) - 8} more" if len(running) > 8 else ""
    queued = len(watching) - len(running) + len(pending)
    return (f"progress: {len(outcomes)}/{total} ended, {len(running)} running"
            f"{(': ' + shown + more) if shown else ''}; {queued} waiting")


def summary_lines(outcomes: Sequence[Outcome], skipped: int = 0) -> list[str]:
    """The closing report: counts, then per failed or interrupted run its log and its traceback's or log's
    last line."""
    bad = [o for o in outcomes if not o.ok]
    failed = sum(o.ending.status == "failed" for o in bad)
    lines = [f"train-all: {len(outcomes) + skipped} runs: {skipped} already complete, "
             f"{len(outcomes) - len(bad)} trained, {failed} failed, {len(bad) - failed} interrupted"]
    for o in bad:
        last = f": {o.ending.tail[-1].strip()}" if o.ending.tail else ""
        lines.append(f"  {o.ending.status}: {o.run.name} (job {o.job_id}, {o.ending.state}), log {o.log_path}{last}")
    if len(bad) > failed:
        lines.append("  an interrupted run resumes from its checkpoint when `dgc train-all` runs again")
    return lines


def train_all(args: argparse.Namespace, params: Params, log: Callable[[str], None] = print) -> int:
    """The `dgc train-all` command: plan, skip the complete runs, re-attach, submit, watch, report."""
    from dgc.stages.train import is_complete

    params = with_slurm_flags(params, args)
    launcher = make_launcher(args, params)
    missing = [d for d in params.pipeline.datasets if not (Path(params.data.root) / d).is_dir()]
    if missing:
        raise TrainAllError(f"{params.data.root}/{missing[0]} is missing: prepare it first with "
                            f"`dvc repro data@{missing[0]}` (or `dgc data {missing[0]}`)")
    runs_root, runs = Path(args.runs), plan_runs(params)
    log(f"train-all: {len(runs)} runs; checking which are complete")
    complete = [r for r in runs if is_complete(r.dataset, r.model, params, runs_root, r.seed)]
    todo = [r for r in runs if r not in complete]
    if todo and not args.dry_run:
        launcher.check()
    attached = [h for h in (launcher.attach(r, runs_root) for r in todo) if h is not None]
    to_submit = [r for r in todo if r not in {h.run for h in attached}]
    log(f"train-all: {len(complete)} complete, {len(attached)} still queued or running "
        f"(re-attached), {len(to_submit)} to submit; {launcher.describe()}")
    if args.dry_run:
        for line in ([f"  skip     {r.name}: complete" for r in complete]
                     + [f"  attach   {h.run.name}: job {h.job_id} ({h.state})" for h in attached]
                     + [f"  submit   {r.name}: job folder {job_folder(r, runs_root)}" for r in to_submit]):
            log(line)
        return 0
    if not todo:
        log("nothing to train: every run is complete; `dvc repro` records them")
        return 0
    poll = args.poll if args.poll is not None else (15.0 if args.launcher == "slurm" else 2.0)
    outcomes = run_all(to_submit, launcher, lambda r: (r.dataset, r.model, r.seed, params, str(runs_root)),
                       runs_root, attached, log, poll, args.progress, params.train.epochs)
    for line in summary_lines(outcomes, len(complete)):
        log(line)
    bad = [o.run.name for o in outcomes if not o.ok]
    if bad:
        print(f"dgc: error: {len(bad)} of {len(outcomes)} runs did not finish: {', '.join(bad)}", file=sys.stderr)
        return 1
    log("now run `dvc repro`: it records these runs without training them again")
    return 0

