"""Helpers shared by several test files (the `tests` folder is on pytest's pythonpath)."""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).parents[1]


def copy_project(dest: Path) -> Path:
    """This project's tracked and untracked-not-ignored files into `dest`, without the committed
    pipeline outputs (reports/, dvc.lock): a project about to run its first `dvc repro`."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                           capture_output=True, text=True, check=True).stdout.splitlines()
    for name in files:
        src = ROOT / name
        if src.is_file() and not name.startswith(("reports/", "dvc.lock")):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def run_execution(layer, x: torch.Tensor, path: str):
    """Output, input gradient and parameter gradients of `layer` run with execution `path`
    (a parameter without gradient gives zeros)."""
    layer.execution = path
    layer.zero_grad(set_to_none=True)
    xx = x.clone().requires_grad_()
    y = layer(xx)
    (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
    grads = {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
             for n, p in layer.named_parameters()}
    return y.detach(), xx.grad, grads


# `dgc` subprocesses of the train-all tests: no wandb, one thread each (2 shared cores).
DGC = [sys.executable, "-m", "dgc"]
DGC_ENV = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}


def tiny_pipeline(params_file: Path, models: list[str], epochs: int) -> Path:
    """Rewrite the tiny params file (conftest's tiny_params_file) to train `models` on digits for
    `epochs` epochs, with one-CPU Slurm jobs of 10 minutes; returns its path."""
    raw = yaml.safe_load(params_file.read_text())
    raw["pipeline"] = {"datasets": ["digits"], "models": models}
    raw["train"]["epochs"] = epochs
    raw["slurm"] = {"gpus_per_job": 0, "cpus_per_job": 1, "time_limit": 10}
    params_file.write_text(yaml.safe_dump(raw))
    return params_file


def epochs_of(run_folder: Path) -> list[int]:
    """The epochs of a run's history.csv, in order ([] while it has none)."""
    try:
        lines = (run_folder / "history.csv").read_text().splitlines()[1:]
    except OSError:
        return []
    return [int(line.split(",")[0]) for line in lines if line]


def wait_for(condition, what: str, timeout: float = 240) -> None:
    """Poll `condition()` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.1)
