"""One training epoch and one evaluation pass: plain functions over a model and its batches."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

try:
    from tqdm import tqdm
except ImportError:  # tqdm only draws the progress bar: without it, training runs without one
    def tqdm(iterable, **_kwargs):  # type: ignore[no-redef]
        return iterable

from dgc.errors import DGCError
from dgc.layers import GlobalThreshold, angle_loss, set_progress, sparsity_loss
from dgc.runtime.compile import CompileClock, Compiled
from dgc.runtime.lr_schedule import cosine_lr


class NonFiniteLoss(DGCError, RuntimeError):
    """The training loss became NaN or infinite."""

    exit_status = 1


@dataclass
class StepContext:
    """What a training step needs besides the model and its batches."""

    optimizer: torch.optim.Optimizer
    base_lr: float
    total_steps: int
    sparsity_lambda: float
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext
    scaler: torch.amp.GradScaler | None = None
    all_reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t
    angle_lambda: float = 0.0  # weight of DGC-G's angle-enlargement term (0: off)
    selection: GlobalThreshold | None = None  # drives the DGC-G layers' threshold (None: no DGC-G)


def _runner(model: nn.Module | Compiled) -> Compiled:
    return model if isinstance(model, Compiled) else Compiled(model, None)


def train_one_epoch(model: nn.Module | Compiled, core: nn.Module, batches: Iterable, ctx: StepContext,
                    first_step: int, show_progress: bool = False, desc: str = "") -> dict[str, float]:
    """Train one epoch of `model` (DDP, `Compiled` or `core`), setting `core`'s progress and the cosine lr
    every step: the mean loss, top-1 (%), images, seconds (of them compile_seconds), last lr / progress."""
    runner = _runner(model)
    runner.eager.train()
    device = next(core.parameters()).device
    totals = torch.zeros(3, device=device, dtype=torch.float64)  # loss sum, correct, images
    step, lr, progress = first_step, ctx.base_lr, 0.0
    clock = CompileClock()
    start = time.perf_counter()
    with clock.active():
        for i, (x, y) in enumerate(tqdm(batches, desc=desc, leave=False,
                                        disable=None if show_progress else True)):
            progress = min(step / ctx.total_steps, 1.0)
            set_progress(core, progress)
            if ctx.selection is not None:
                ctx.selection.before_step(progress, i, len(batches))
            lr = cosine_lr(ctx.base_lr, step, ctx.total_steps)
            for group in ctx.optimizer.param_groups:
                group["lr"] = lr

            def forward_backward(forward, x=x, y=y):
                with ctx.autocast():
                    logits = forward(x)
                    loss = F.cross_entropy(logits, y)
                    if ctx.sparsity_lambda > 0:
                        loss = loss + ctx.sparsity_lambda * sparsity_loss(core)
                    if ctx.angle_lambda > 0 and ctx.selection is not None:
                        loss = loss + ctx.angle_lambda * angle_loss(core)
                (ctx.scaler.scale(loss) if ctx.scaler is not None else loss).backward()
                return logits, loss

            ctx.optimizer.zero_grad(set_to_none=True)
            logits, loss = runner.run(forward_backward)
            if ctx.scaler is not None:
                ctx.scaler.step(ctx.optimizer)
                ctx.scaler.update()
            else:
                ctx.optimizer.step()
            with torch.no_grad():  # accumulate on the device: no sync per step
                totals[0] += loss.detach().double() * len(y)
                totals[1] += (logits.argmax(1) == y).sum()
                totals[2] += len(y)
            step += 1
        if ctx.selection is not None:
            ctx.selection.end_epoch(progress)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    totals = ctx.all_reduce(totals)
    loss_sum, correct, images = totals.tolist()
    if not torch.isfinite(torch.tensor(loss_sum)):
        raise NonFiniteLoss(f"training loss became {loss_sum / max(images, 1)} "
                            f"(non-finite) before step {step}")
    return {"train_loss": loss_sum / images, "train_top1": 100.0 * correct / images,
            "images": images, "seconds": seconds, "compile_seconds": clock.seconds, "lr": lr,
            "progress": progress, "step": step}


@torch.no_grad()
def evaluate(model: nn.Module | Compiled, batches: Iterable, autocast: Callable = contextlib.nullcontext,
             all_reduce: Callable[[torch.Tensor], torch.Tensor] = lambda t: t) -> dict[str, float]:
    """Mean cross-entropy, top-1 and top-5 accuracy (%) over `batches` (all processes together)."""
    runner = _runner(model)
    runner.eager.eval()
    device = next(runner.eager.parameters()).device
    totals = torch.zeros(4, device=device, dtype=torch.float64)  # loss sum, top1, top5, images
    for x, y in batches:
        with autocast():
            logits = runner(x)
        logits = logits.float()
        hits = logits.topk(min(5, logits.shape[1]), dim=1).indices == y[:, None]  # (B, k): the top-k hits
        totals[0] += F.cross_entropy(logits, y, reduction="sum").double()
        totals[1] += hits[:, 0].sum()
        totals[2] += hits.any(dim=1).sum()
        totals[3] += len(y)
    loss_sum, top1, top5, images = all_reduce(totals).tolist()
    return {"loss": loss_sum / images, "top1": 100.0 * top1 / images, "top5": 100.0 * top5 / images,
            "images": images}
