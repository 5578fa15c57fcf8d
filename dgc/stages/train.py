"""The `train` stage: the authors' recipe for one (dataset, model), resumable, tracked, multi-GPU.

`train_model(dataset, model_name, params, seed=k)` writes runs/<dataset>-<model>/seed<k>/:
  history.csv    one row per epoch (HISTORY_COLUMNS)
  checkpoint.pt  the last completed epoch: model, optimizer, history, best result (for resuming)
  best.pt        the epoch with the best test top-1 (the authors' pick)
  wandb/         the wandb run (offline unless the user logs in)
Killed at any moment, the same call continues from the last completed epoch; once all epochs are
done (with unchanged settings and training code) it returns the stored result without training
(`is_complete` says so beforehand). It trains on the device train.device names; `dgc train-all` gives
each run its own GPU (CUDA_VISIBLE_DEVICES, dgc/commands/train_all.py). Under torchrun it trains
with DistributedDataParallel: `train.batch_size` and `train.lr` are the GLOBAL batch and its lr, each
of N processes takes batch_size / N images of every batch; only rank 0 writes files and logs.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io
import resource
from dataclasses import dataclass
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
    """CUDA ran out of memory in an epoch; the message names the setting to change, and the last
    completed epoch's checkpoint is kept."""


@dataclass
class TrainResult:
    out_dir: Path
    epochs: int
    resumed_from: int
    best: dict[str, Any]
    final: dict[str, Any]


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively: what weights_only checkpoints and YAML/JSON store."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def settings_of(dataset: str, model: nn.Module, params: Params, seed: int) -> dict[str, Any]:
    return _plain({"dataset": dataset, "model_name": model.model_name, "model_args": model.model_args,
                   "seed": seed,
                   "train": dataclasses.asdict(params.train), "data": dataclasses.asdict(params.data),
                   "profile": params.profile})


def fingerprint(settings: dict[str, Any]) -> dict[str, Any]:
    fp = {k: v for k, v in settings.items() if k not in ("train", "profile")}
    fp["train"] = {k: v for k, v in settings["train"].items() if k not in NOT_IN_FINGERPRINT}
    return fp


def training_code() -> list[Path]:
    """The package files `dgc train` runs: its import closure (dgc/imports.py), which the train stage's
    deps in dvc.yaml cover (tests/test_stage_deps.py). A finished run is returned as it is only if
    these are unchanged: when DVC reruns the stage because of a code change, it retrains."""
    return sorted(command_closure("train"))


def training_code_hash() -> str:
    """A digest of the files of `training_code()` (names and contents)."""
    digest = hashlib.sha256()
    for file in training_code():
        digest.update(f"{file.relative_to(SOURCE_ROOT).as_posix()}\0".encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def history_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
    return buf.getvalue()


def inactive_fraction(model: nn.Module) -> float:
    layers = dgc_layers(model)
    return sum(l.n_inactive / l.in_channels for l in layers) / len(layers) if layers else 0.0


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _amp(device: torch.device, enabled: bool) -> tuple[Callable, torch.amp.GradScaler | None]:
    if device.type != "cuda" or not enabled:
        return contextlib.nullcontext, None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return (lambda: torch.autocast("cuda", dtype=dtype)), scaler


def runtime_of(device: torch.device, amp: bool, channels_last: bool, compile_mode: str | None) -> dict[str, str]:
    """How a run executes (recorded in its checkpoints; the report says which precision ran)."""
    if device.type == "cuda" and amp:
        precision = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") + " autocast"
    elif device.type == "cuda":
        precision = "fp32" + (" (TF32 matmuls and convs)" if torch.backends.cuda.matmul.allow_tf32 else "")
    else:
        precision = "fp32"
    return {"device": device_name(device), "precision": precision,
            "layout": "channels_last" if channels_last else "NCHW", "compile": compile_mode or "off"}


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
    """The one line a CUDA out-of-memory error ends a run with: what ran out, with how many images
    per process, and which setting to change. `phase` is 'training' or 'evaluating'."""
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


def _kept(ckpt_path: Path, history: list[dict[str, Any]]) -> str:
    if not history:
        return "no epoch was completed, nothing was written"
    return f"the last checkpoint is kept: {ckpt_path} (epoch {history[-1]['epoch']})"


def _already_complete(checkpoint: dict[str, Any], out: Path, epochs: int, main: bool,
                      say: Callable[[str], None]) -> TrainResult:
    """The stored result of a finished run (its history.csv rewritten only if it went missing)."""
    history = list(checkpoint["history"])
    hist_path = out / "history.csv"
    if main and not hist_path.exists():
        write_text_atomic(hist_path, history_csv(history))
    say(f"{out}: already complete ({epochs} epochs, best test top-1 "
        f"{checkpoint['best']['test_top1']:.2f}% in epoch {checkpoint['best']['epoch']})")
    return TrainResult(out, epochs, epochs, dict(checkpoint["best"]), history[-1] if history else {})


def is_complete(dataset: str, model_name: str, params: Params, runs_root: str | Path = "runs",
                seed: int | None = None) -> bool:
    """Whether `train_model` with these arguments would return its stored result without training:
    a readable checkpoint of all train.epochs epochs, with the same settings and training code."""
    seed = params.train.seeds[0] if seed is None else seed
    ckpt_path = run_dir(runs_root, dataset, model_name, seed) / "checkpoint.pt"
    if not ckpt_path.is_file():
        return False
    try:
        checkpoint = load_checkpoint(ckpt_path)
    except DGCError:
        return False  # unreadable: training it again reports why
    model = build_for_training(dataset, model_name, params)
    return (checkpoint.get("fingerprint") == fingerprint(settings_of(dataset, model, params, seed))
            and checkpoint["epoch"] >= params.train.epochs and checkpoint.get("code") == training_code_hash())


def train_model(dataset: str, model_name: str, params: Params, runs_root: str | Path = "runs",
                seed: int | None = None, fresh: bool = False,
                log: Callable[[str], None] = print) -> TrainResult:
    """Train `model_name` on `dataset` with `params.train` and `seed` (default: the first of
    train.seeds) into runs_root/<dataset>-<model>/seed<seed>/; see the module docstring.

    A run whose checkpoint already holds all train.epochs epochs with the same settings and the same
    training code (`training_code()`) returns its stored result at once; under other code it trains
    again. A CUDA out-of-memory error in an epoch raises GpuOutOfMemory, naming the batch setting."""
    cfg = params.train
    seed = cfg.seeds[0] if seed is None else seed
    torch.manual_seed(seed)  # the same initialisation in every process and every run
    model = build_for_training(dataset, model_name, params)  # validates before any work
    device = resolve_device(cfg.device)
    main = dist_info_from_env().is_main
    say = log if main else (lambda _: None)

    out = run_dir(runs_root, dataset, model_name, seed)
    ckpt_path = out / "checkpoint.pt"
    settings = settings_of(dataset, model, params, seed)
    fp = fingerprint(settings)
    code = training_code_hash()
    checkpoint = None
    if ckpt_path.exists() and not fresh:
        checkpoint = load_checkpoint(ckpt_path)  # on the CPU: resuming copies it to the device
        if checkpoint.get("fingerprint") != fp:
            say(f"{ckpt_path} was trained with other settings: starting afresh")
            checkpoint = None
        elif checkpoint["epoch"] >= cfg.epochs:
            if checkpoint.get("code") == code:
                # before joining torchrun's group: nothing to train or wait for
                return _already_complete(checkpoint, out, cfg.epochs, main, say)
            # an unfinished run resumes across a code change; a finished one is trained again
            say(f"{ckpt_path} was finished by other training code (a file `dgc train` runs "
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
        return _train(dataset, model_name, model, params, device, dist_info, out, settings, fp,
                      code, checkpoint, seed, say)
    finally:
        shutdown()


def _train(dataset: str, model_name: str, model: nn.Module, params: Params, device: torch.device,
           dist_info: DistInfo, out: Path, settings: dict[str, Any], fp: dict[str, Any], code: str,
           checkpoint: dict[str, Any] | None, seed: int, say: Callable[[str], None]) -> TrainResult:
    """The epochs of `train_model` on `device`, resuming from `checkpoint` when given; `code` is
    the training code's digest, stored in the checkpoint."""
    cfg = params.train
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    main = dist_info.is_main

    if device.type == "cuda":  # fp32 parts run on TF32 tensor cores (cuDNN's default for convs, here
        torch.backends.cuda.matmul.allow_tf32 = True  # for matmuls too: the 1x1 DGC convs are bmm)
    channels_last = cfg.channels_last == "true" or (cfg.channels_last == "auto" and device.type == "cuda")
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    train_batches, test_batches = make_batches(dataset, params, device, dist_info.rank,
                                               dist_info.world_size, channels_last, seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    autocast, scaler = _amp(device, cfg.amp)

    ckpt_path, best_path, hist_path = out / "checkpoint.pt", out / "best.pt", out / "history.csv"
    # DGC-G: the model-wide saliency threshold, estimated at the end of every epoch.
    selection = GlobalThreshold(model, cfg.global_window) if global_layers(model) else None
    start_epoch, history, best = 0, [], {"epoch": 0, "test_top1": -1.0}
    if checkpoint is not None:
        model.load_state_dict(checkpoint["state_dict"])
        optimizer.load_state_dict(checkpoint["optimizer"])  # moves the state to the parameters' device
        if scaler is not None and checkpoint.get("scaler"):
            scaler.load_state_dict(checkpoint["scaler"])
        if selection is not None and checkpoint.get("global_threshold"):
            selection.load_state_dict(checkpoint["global_threshold"])
        start_epoch, history = checkpoint["epoch"], list(checkpoint["history"])
        best = dict(checkpoint["best"])
        say(f"resuming {out} from epoch {start_epoch}/{cfg.epochs}")

    core = model
    if dist_info.enabled:
        model = nn.parallel.DistributedDataParallel(
            core, device_ids=[device.index] if device.type == "cuda" else None)
    compile_mode = resolve_compile(cfg.compile, device)
    runner = Compiled(model, compile_mode, log=say)
    eval_runner = runner if model is core else Compiled(core, compile_mode, log=say)
    steps_per_epoch = len(train_batches)
    ctx = StepContext(optimizer, cfg.lr, cfg.epochs * steps_per_epoch, cfg.sparsity_lambda,
                      autocast, scaler, all_reduce_sum, cfg.angle_lambda, selection)
    tracker = Tracker(cfg.wandb, cfg.wandb_project, f"{dataset}-{model_name}-seed{seed}", out, settings,
                      enabled=main, resume=checkpoint is not None)  # a resumed run continues its wandb run
    if main:
        out.mkdir(parents=True, exist_ok=True)
    say(f"training {model_name} on {dataset}: {cfg.epochs} epochs x {steps_per_epoch} steps, "
        f"batch {cfg.batch_size}, device {device}" + (f" x{dist_info.world_size}" if dist_info.enabled else "")
        + (f", torch.compile mode {compile_mode}" if compile_mode else ""))
    try:
        for epoch in range(start_epoch, cfg.epochs):
            train_batches.set_epoch(epoch)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            phase = "training"
            try:
                stats = train_one_epoch(runner, core, train_batches, ctx, epoch * steps_per_epoch,
                                        show_progress=main, desc=f"epoch {epoch + 1}/{cfg.epochs}")
                phase = "evaluating"
                test = evaluate(eval_runner, test_batches, autocast, all_reduce_sum)
            except NonFiniteLoss as exc:
                raise TrainingDiverged(f"{exc} in epoch {epoch + 1}; stopped, "
                                       f"{_kept(ckpt_path, history)}") from None
            except torch.cuda.OutOfMemoryError:
                # nothing of this epoch is saved: the checkpoint stays the last completed epoch
                raise GpuOutOfMemory(out_of_memory_message(
                    phase, model_name, dataset, cfg, dist_info.world_size, epoch + 1,
                    _kept(ckpt_path, history))) from None
            row = {"epoch": epoch + 1, "lr": stats["lr"], "progress": stats["progress"],
                   "inactive_fraction": inactive_fraction(core), "train_loss": stats["train_loss"],
                   "train_top1": stats["train_top1"], "test_loss": test["loss"],
                   "test_top1": test["top1"], "test_top5": test["top5"],
                   "epoch_seconds": stats["seconds"], "compile_seconds": stats["compile_seconds"],
                   "images_per_second": stats["images"] / max(stats["seconds"] - stats["compile_seconds"], 1e-9),
                   "peak_memory_mb": peak_memory_mb(device)}
            history.append(row)
            if main:
                payload = {**model_payload(core), "settings": settings, "fingerprint": fp,
                           "epoch": epoch + 1, "metrics": row,
                           "runtime": runtime_of(device, cfg.amp, channels_last, compile_mode)}
                if row["test_top1"] > best["test_top1"]:
                    best = {"epoch": epoch + 1, "test_top1": row["test_top1"]}
                    save_checkpoint(best_path, payload)
                save_checkpoint(ckpt_path, {**payload, "code": code,
                                            "optimizer": optimizer.state_dict(),
                                            "scaler": scaler.state_dict() if scaler else {},
                                            "global_threshold": selection.state_dict() if selection else {},
                                            "history": history, "best": best})
                write_text_atomic(hist_path, history_csv(history))
                tracker.log({f"epoch/{k}": v for k, v in row.items()}, step=epoch + 1)
                say(f"epoch {epoch + 1}/{cfg.epochs}  loss {row['train_loss']:.4f}  "
                    f"test top-1 {row['test_top1']:.2f}%  top-5 {row['test_top5']:.2f}%  "
                    f"pruned {100 * row['inactive_fraction']:.0f}%  {row['epoch_seconds']:.1f}s  "
                    f"{row['images_per_second']:.0f} img/s")
            barrier()
        if main and not hist_path.exists():
            write_text_atomic(hist_path, history_csv(history))
    finally:
        tracker.finish()
    return TrainResult(out, cfg.epochs, start_epoch, best, history[-1] if history else {})


def merge_histories(runs_root: str | Path, dataset: str, model_name: str, seeds: list[int],
                    out_dir: str | Path = "reports/history") -> Path:
    """One CSV with every seed's history (a `seed` column first): the DVC plots' source."""
    rows = []
    for seed in seeds:
        path = run_dir(runs_root, dataset, model_name, seed) / "history.csv"
        with open(path) as fh:
            rows += [{"seed": seed, **row} for row in csv.DictReader(fh)]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=("seed", *HISTORY_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(Path(out_dir) / f"{dataset}-{model_name}.csv", buf.getvalue())
