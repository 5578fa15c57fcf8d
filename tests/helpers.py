"""Helpers shared by several test files (the `tests` folder is on pytest's pythonpath)."""

import shutil
import subprocess
from pathlib import Path

import torch

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
