"""The `train` stage: the authors' recipe for one (dataset, model), resumable, tracked, multi-GPU (torchrun:
`train.batch_size` and `train.lr` are the global batch's). `train_model` writes runs/<dataset>-<model>/seed<k>/:
history.csv, checkpoint.pt (the last epoch, to resume from), best.pt (the best test top-1), wandb/."""

from __future__ import annotations

import csv
import contextlib
import dataclasses
import hashlib
import io
import json
import resource
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from dgc.config import NUM_CLASSES, ConfigError, Params, check_dataset
from dgc.data.batches import make_batches
from dgc.errors import DGCError
from dgc.imports import SOURCE_ROOT, command_closure
from dgc.io import write_text_atomic
from dgc.layers import GlobalThreshold, dgc_layers, global_layers
from dgc.measure.latency import device_name
from dgc.models import create_model
from dgc.models.registry import ModelError
from dgc.runtime.checkpoint import load_checkpoint, model_payload, save_checkpoint
from dgc.runtime.compile import Compiled, resolve_compile
from dgc.runtime.device import resolve_device
from dgc.runtime.distributed import DistInfo, all_reduce_sum, barrier, dist_info_from_env, init_distributed, shutdown
from dgc.runtime.engine import NonFiniteLoss, StepContext, evaluate, train_one_epoch
from dgc.runtime.precision import precision_of
from dgc.runtime.run_lock import run_lock
from dgc.runtime.runs import run_dir
from dgc.runtime.tracking import Tracker

HISTORY_COLUMNS = ("epoch", "lr", "progress", "inactive_fraction", "train_loss", "train_top1",
                   "test_loss", "test_top1", "test_top5", "epoch_seconds", "compile_seconds",
                   "images_per_second", "peak_memory_mb")
# Settings that do not change the result: a run may resume across a change of these.
NOT_IN_FINGERPRINT = ("device", "wandb", "wandb_project", "workers", "threads", "eval_batch_size",
                      "seeds", "compile")


class TrainingDiverged(DGCError, RuntimeError):
    """The loss became NaN/inf; the last good checkpoint is kept."""

    exit_status = 1


class GpuOutOfMemory(DGCError, RuntimeError):
    """CUDA ran out of memory in an epoch; the message names the setting to change (the checkpoint is kept)."""


@dataclass
class TrainResult:
    """What `train_model` returns: the run folder, epochs, the epoch it resumed from, best and last rows."""

    out_dir: Path
    epochs: int
    resumed_from: int
    best: dict[str, Any]
    final: dict[str, Any]


def settings_of(dataset: str, model: nn.Module, params: Params, seed: int) -> dict[str, Any]:
    """The run's settings as plain data (tuples -> lists: what weights_only checkpoints and YAML/JSON store)."""
    settings = {"dataset": dataset, "model_name": model.model_name, "model_args": model.model_args, "seed": seed,
                "train": dataclasses.asdict(params.train), "data": dataclasses.asdict(params.data),
                "profile": params.profile}
    return json.loads(json.dumps(settings))


def fingerprint(settings: dict[str, Any]) -> dict[str, Any]:
    fp = {k: v for k, v in settings.items() if k not in ("train", "profile")}
    fp["train"] = {k: v for k, v in settings["train"].items() if k not in NOT_IN_FINGERPRINT}
    return fp


def training_code(root: Path = SOURCE_ROOT) -> list[Path]:
    """The package files `dgc train` runs (its import closure): a finished run stands while they are unchanged."""
    return sorted(command_closure("train", root))


def training_code_hash(root: Path = SOURCE_ROOT) -> str:
    """A digest of the files of `training_code()` (names and contents)."""
    digest = hashlib.sha256()
    for file in training_code(root):
        digest.update(f"{file.relative_to(root).as_posix()}\0".encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def history_csv(rows: list[dict[str, Any]], columns: tuple[str, ...] = HISTORY_COLUMNS) -> str:
    """`rows` as CSV text, floats to 6 significant digits."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()} for row in rows)
    return buf.getvalue()


def inactive_fraction(model: nn.Module) -> float:
    layers = dgc_layers(model)
    return sum(l.n_inactive / l.in_channels for l in layers) / len(layers) if layers else 0.0


def peak_memory_mb(device: torch.device) -> float:
    return (torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)  # Linux: ru_maxrss in KiB


def build_for_training(dataset: str, model_name: str, params: Params) -> nn.Module:
    """Validate the (dataset, model, settings) triple and build the model; fails before any work."""
    check_dataset(dataset)
    overrides = params.model_overrides(model_name)
    try:
        return create_model(model_name, NUM_CLASSES[dataset], **overrides)
    except ModelError as exc:
        raise ConfigError(f"models.{model_name}: {exc}") from None


def out_of_memory_message(phase: str, model_name: str, dataset: str, cfg: Any, world: int,
                          epoch: int, kept: str) -> str:
    """The line a CUDA out-of-memory error in `phase` ends a run with: images per process, the setting to change."""
    procs = f"{world} process" + ("es" if world > 1 else "")
    if phase == "evaluating":
        per = -(-cfg.eval_batch_size // world)
        fix = ("lower train.eval_batch_size (it does not change the results), "
               f"e.g. -S train.eval_batch_size={max(1, cfg.eval_batch_size // 2)}")
        size = f"train.eval_batch_size {cfg.eval_batch_size} / {procs}"
    else:
        per = cfg.batch_size // world
        half = max(world, cfg.batch_size // 2 // world * world)  # still divisible by the processes
        fix = (f"lower train.batch_size and scale train.lr with it (e.g. -S train.batch_size={half} "
               f"-S train.lr={cfg.lr * half / cfg.batch_size:g}), or split the batch over more GPUs "
               f"with torchrun --nproc_per_node N")
        size = f"train.batch_size {cfg.batch_size} / {procs}"
    return (f"CUDA out of memory {phase} {model_name} on {dataset} in epoch {epoch} with {per} images "
            f"per process ({size}): {fix}; {kept}")


def is_complete(dataset: str, model_name: str, params: Params, runs_root: str | Path = "runs",
                seed: int | None = None) -> bool:
    """Whether `train_model` would return a stored result (all epochs, same settings and training code)."""
    seed = params.train.seeds[0] if seed is None else seed
    try:
        checkpoint = load_checkpoint(run_dir(runs_root, dataset, model_name, seed) / "checkpoint.pt")
    except DGCError:
        return False  # missing, or unreadable: training it again reports why
    settings = settings_of(dataset, build_for_training(dataset, model_name, params), params, seed)
    return (checkpoint.get("fingerprint") == fingerprint(settings)
            and checkpoint["epoch"] >= params.train.epochs and checkpoint.get("code") == training_code_hash())


@dataclass(frozen=True)
class RunSpec:
    """What identifies one run: its folder, settings and their fingerprint, the training code's digest."""

    dataset: str
    model_name: str
    params: Params
    seed: int
    out: Path
    settings: dict[str, Any]
    fingerprint: dict[str, Any]
    code: str

    @property
    def checkpoint(self) -> Path:
        return self.out / "checkpoint.pt"


def train_model(dataset: str, model_name: str, params: Params, runs_root: str | Path = "runs",
                seed: int | None = None, fresh: bool = False,
                log: Callable[[str], None] = print) -> TrainResult:
    """Train `model_name` on `dataset` with `params.train` and `seed` (default: the first of train.seeds)
    into runs_root/<dataset>-<model>/seed<seed>/ (see the module docstring); GpuOutOfMemory names the fix."""
    cfg = params.train
    seed = cfg.seeds[0] if seed is None else seed
    torch.manual_seed(seed)  # the same initialisation in every process and every run
    model = build_for_training(dataset, model_name, params)  # validates before any work
    device = resolve_device(cfg.device)
    main = dist_info_from_env().is_main
    say = log if main else (lambda _: None)

    settings = settings_of(dataset, model, params, seed)
    spec = RunSpec(dataset, model_name, params, seed, run_dir(runs_root, dataset, model_name, seed), settings,
                   fingerprint(settings), training_code_hash())
    # one trainer per run folder (torchrun's other ranks write nothing of their own there)
    with run_lock(spec.out) if main else contextlib.nullcontext():
        checkpoint = None
        if spec.checkpoint.exists() and not fresh:
            checkpoint = load_checkpoint(spec.checkpoint)  # on the CPU: resuming copies it to the device
            if checkpoint.get("fingerprint") != spec.fingerprint:
                say(f"{spec.checkpoint} was trained with other settings: starting afresh")
                checkpoint = None
            elif checkpoint["epoch"] >= cfg.epochs:
                if checkpoint.get("code") == spec.code:  # the stored result, before joining torchrun's group
                    history, best = list(checkpoint["history"]), dict(checkpoint["best"])
                    if main and not (spec.out / "history.csv").exists():  # rewritten only if it went missing
                        write_text_atomic(spec.out / "history.csv", history_csv(history))
                    say(f"{spec.out}: already complete ({cfg.epochs} epochs, best test top-1 "
                        f"{best['test_top1']:.2f}% in epoch {best['epoch']})")
                    return TrainResult(spec.out, cfg.epochs, cfg.epochs, best, history[-1])
                # an unfinished run resumes across a code change; a finished one is trained again
                say(f"{spec.checkpoint} was finished by other training code (a file `dgc train` runs "
                    f"changed): training again from scratch")
                checkpoint = None

        dist_info = init_distributed(device.type)
        try:
            if dist_info.enabled and cfg.batch_size % dist_info.world_size:
                raise ConfigError(f"train.batch_size {cfg.batch_size} must be divisible by the "
                                  f"{dist_info.world_size} processes")
            if device.type == "cuda" and dist_info.enabled:
                device = torch.device("cuda", dist_info.local_rank)
            if device.type == "cuda" and device.index is not None:
                torch.cuda.set_device(device)
            return _train(spec, _set_up(spec, model, device, dist_info, checkpoint, say))
        finally:
            shutdown()


@dataclass
class Training:
    """A run set up on its device (`_set_up`): what its epochs run and the results they add to."""

    core: nn.Module  # the model itself (DDP's .module)
    runner: Compiled  # what the training batches go through (DDP and/or torch.compile around `core`)
    eval_runner: Compiled
    train_batches: Any
    test_batches: Any
    ctx: StepContext  # with the optimizer
    tracker: Tracker
    device: torch.device
    dist_info: DistInfo
    runtime: dict[str, str]  # how it executes (in its checkpoints; the report says which precision ran)
    say: Callable[[str], None]
    start_epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=lambda: {"epoch": 0, "test_top1": -1.0})


def _set_up(spec: RunSpec, model: nn.Module, device: torch.device, dist_info: DistInfo,
            checkpoint: dict[str, Any] | None, say: Callable[[str], None]) -> Training:
    """The run set up on `device` (precision, layout, batches, optimizer, DGC-G, ...), resumed from `checkpoint`."""
    cfg = spec.params.train
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    precision = precision_of(device, cfg.amp)
    precision.apply()
    channels_last = cfg.channels_last == "true" or (cfg.channels_last == "auto" and device.type == "cuda")
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    train_batches, test_batches = make_batches(spec.dataset, spec.params, device, dist_info.rank,
                                               dist_info.world_size, channels_last, spec.seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    scaler = precision.scaler()
    # DGC-G: the model-wide saliency threshold, estimated at the end of every epoch.
    selection = GlobalThreshold(model, cfg.global_window) if global_layers(model) else None
    resumed = {}
    if checkpoint is not None:
        model.load_state_dict(checkpoint["state_dict"])
        optimizer.load_state_dict(checkpoint["optimizer"])  # moves the state to the parameters' device
        if scaler is not None and checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
        if selection is not None and checkpoint.get("global_threshold"):
            selection.load_state_dict(checkpoint["global_threshold"])
        resumed = {"start_epoch": checkpoint["epoch"], "history": list(checkpoint["history"]),
                   "best": dict(checkpoint["best"])}
        say(f"resuming {spec.out} from epoch {checkpoint['epoch']}/{cfg.epochs}")

    wrapped = (nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
               if dist_info.enabled else model)
    compile_mode = resolve_compile(cfg.compile, device)
    runner = Compiled(wrapped, compile_mode, log=say)
    steps = len(train_batches)
    ctx = StepContext(optimizer, cfg.lr, cfg.epochs * steps, cfg.sparsity_lambda, precision.autocast, scaler,
                      all_reduce_sum, cfg.angle_lambda, selection)
    tracker = Tracker(cfg.wandb, cfg.wandb_project, f"{spec.dataset}-{spec.model_name}-seed{spec.seed}", spec.out,
                      spec.settings, enabled=dist_info.is_main,
                      resume=checkpoint is not None)  # a resumed run continues its wandb run
    say(f"training {spec.model_name} on {spec.dataset}: {cfg.epochs} epochs x {steps} steps, "
        f"batch {cfg.batch_size}, device {device}" + (f" x{dist_info.world_size}" if dist_info.enabled else "")
        + (f", torch.compile mode {compile_mode}" if compile_mode else ""))
    return Training(model, runner, runner if wrapped is model else Compiled(model, compile_mode, log=say),
                    train_batches, test_batches, ctx, tracker, device, dist_info,
                    {"device": device_name(device), "precision": precision.name,
                     "layout": "channels_last" if channels_last else "NCHW", "compile": compile_mode or "off"},
                    say, **resumed)


def _train(spec: RunSpec, run: Training) -> TrainResult:
    """The epochs of `train_model`, each saved as it ends (`_save_epoch`)."""
    epochs = spec.params.train.epochs
    try:
        for epoch in range(run.start_epoch, epochs):
            run.history.append(_epoch(spec, run, epoch))
            if run.dist_info.is_main:
                _save_epoch(spec, run)
            barrier()
    finally:
        run.tracker.finish()
    return TrainResult(spec.out, epochs, run.start_epoch, run.best, run.history[-1])


def _epoch(spec: RunSpec, run: Training, epoch: int) -> dict[str, Any]:
    """Train epoch `epoch` (0-based) and evaluate: its history row. Divergence or CUDA OOM ends the run."""
    cfg = spec.params.train
    run.train_batches.set_epoch(epoch)
    if run.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(run.device)
    kept = (f"the last checkpoint is kept: {spec.checkpoint} (epoch {run.history[-1]['epoch']})" if run.history
            else "no epoch was completed, nothing was written")
    phase = "training"
    try:
        stats = train_one_epoch(run.runner, run.core, run.train_batches, run.ctx, epoch * len(run.train_batches),
                                show_progress=run.dist_info.is_main, desc=f"epoch {epoch + 1}/{cfg.epochs}")
        phase = "evaluating"
        test = evaluate(run.eval_runner, run.test_batches, run.ctx.autocast, all_reduce_sum)
    except NonFiniteLoss as exc:
        raise TrainingDiverged(f"{exc} in epoch {epoch + 1}; stopped, {kept}") from None
    except torch.cuda.OutOfMemoryError:
        # nothing of this epoch is saved: the checkpoint stays the last completed epoch
        raise GpuOutOfMemory(out_of_memory_message(
            phase, spec.model_name, spec.dataset, cfg, run.dist_info.world_size, epoch + 1, kept)) from None
    return {"epoch": epoch + 1, "lr": stats["lr"], "progress": stats["progress"],
            "inactive_fraction": inactive_fraction(run.core), "train_loss": stats["train_loss"],
            "train_top1": stats["train_top1"], "test_loss": test["loss"],
            "test_top1": test["top1"], "test_top5": test["top5"],
            "epoch_seconds": stats["seconds"], "compile_seconds": stats["compile_seconds"],
            "images_per_second": stats["images"] / max(stats["seconds"] - stats["compile_seconds"], 1e-9),
            "peak_memory_mb": peak_memory_mb(run.device)}


def _save_epoch(spec: RunSpec, run: Training) -> None:
    """The last epoch's checkpoint (and best.pt when it is the best yet), history CSV, tracker row, log line."""
    row, epochs = run.history[-1], spec.params.train.epochs
    payload = {**model_payload(run.core), "settings": spec.settings, "fingerprint": spec.fingerprint,
               "epoch": row["epoch"], "metrics": row, "runtime": run.runtime}
    if row["test_top1"] > run.best["test_top1"]:
        run.best = {"epoch": row["epoch"], "test_top1": row["test_top1"]}
        save_checkpoint(spec.out / "best.pt", payload)
    ctx = run.ctx
    save_checkpoint(spec.checkpoint, {**payload, "code": spec.code, "optimizer": ctx.optimizer.state_dict(),
                                      "scaler": ctx.scaler.state_dict() if ctx.scaler else {},
                                      "global_threshold": ctx.selection.state_dict() if ctx.selection else {},
                                      "history": run.history, "best": run.best})
    write_text_atomic(spec.out / "history.csv", history_csv(run.history))
    run.tracker.log({f"epoch/{k}": v for k, v in row.items()}, step=row["epoch"])
    run.say(f"epoch {row['epoch']}/{epochs}  loss {row['train_loss']:.4f}  "
            f"test top-1 {row['test_top1']:.2f}%  top-5 {row['test_top5']:.2f}%  "
            f"pruned {100 * row['inactive_fraction']:.0f}%  {row['epoch_seconds']:.1f}s  "
            f"{row['images_per_second']:.0f} img/s")


def merge_histories(runs_root: str | Path, dataset: str, model_name: str, seeds: list[int],
                    out_dir: str | Path = "reports/history", keep_others: bool = False) -> Path:
    """One CSV with every seed's history (a `seed` column first), the report's source: `seeds`' rows from
    their run folders; with `keep_others` (`dgc train --seed k`) the other seeds' rows already there stay."""
    path = Path(out_dir) / f"{dataset}-{model_name}.csv"
    rows = []
    if keep_others and path.is_file():
        with open(path) as fh:
            rows = [row for row in csv.DictReader(fh) if row.get("seed") not in {str(s) for s in seeds}]
    for seed in seeds:
        with open(run_dir(runs_root, dataset, model_name, seed) / "history.csv") as fh:
            rows += [{"seed": seed, **row} for row in csv.DictReader(fh)]
    rows.sort(key=lambda r: (int(r["seed"]), int(float(r["epoch"]))))
    return write_text_atomic(path, history_csv(rows, ("seed", *HISTORY_COLUMNS)))
