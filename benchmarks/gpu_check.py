"""GPU check: is this reproduction correct and fast on this GPU, and how long would the paper take?

Writes reports/gpu/summary.json and summary.md (benchmarks/gpu_check_report.py derives the figures and
the markdown). In one process (so that all ratios share the same conditions), within a hard time budget:
  pytest     `pytest -m gpu -q` on the test files that hold GPU tests (a subprocess, time-limited)
  eager      train-step and inference timings of the six paper-profile models (full width, CIFAR
             stem, 10 classes, 32x32, DGC at its pruning target), median of --repeats runs measured
             round-robin across the models: precision {fp32 with TF32, bf16 autocast} x layout
             {NCHW, channels_last}, and for DGC models execution {auto, fused}; training at batch 64,
             inference at batch 64 (all models) and batch 1 (densenet86_dgc, densenet86) on
             BatchNorm-calibrated models (dgc.measure.calibrate.ready_for_timing)
  compiled   torch.compile ('default' for training, 'reduce-overhead' for inference) of each model in
             its fastest eager setting, compile seconds (dgc.runtime.compile.CompileClock) apart from step times
  memory     peak training memory of each model in its fastest setting
  train_run  `dgc data digits` + `dgc train digits densenet86_dgc`: full width, the paper recipe,
             3 epochs (subprocesses, time-limited): epoch and compile seconds, test top-1
  bench      `dgc bench --device cuda --repeats 10` (a subprocess, time-limited)
Every model timed must give finite outputs / loss, else it is recorded as failed. Each step gets a
share of what is left of the budget and is skipped, with the reason recorded, when it is spent; a
compile is not started when its expected duration does not fit. summary.json (and summary.md) are
rewritten atomically after every step, so a run stopped by a time limit keeps what it measured;
logs of the subprocesses land next to them.

    PYTHONPATH=. python3 benchmarks/gpu_check.py [--budget 420] [--out-dir reports/gpu] [--repeats 20]
                                                 [--skip STEP,...] [--only STEP,...] [--dry-run]
    (or bash benchmarks/gpu_check.sh with the same arguments)

`compiled` and `memory` start from the eager step's measurements: --only compiled alone compiles
nothing, use --only eager,compiled,memory.

--dry-run runs the same code on CPU with tiny models, 2 repeats, one cheap compile (dynamo's eager
backend), the GPU tests (all skipped there), no layer benchmark and a 1-epoch, 3-batch training run:
a check of this code, not of a GPU.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import gc
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
import yaml
from torch import nn

import gpu_check_report as report  # benchmarks/gpu_check_report.py, beside this script

from dgc.io import write_json_atomic, write_text_atomic
from dgc.kernels.cpu_layers import use_cpu_kernels
from dgc.kernels.fused_triton import use_fused_kernel
from dgc.layers import dgc_layers, set_progress, sparsity_loss
from dgc.measure.calibrate import ready_for_timing
from dgc.measure.latency import device_name, median_times, synchronize
from dgc.measure.provenance import git_commit
from dgc.models import create_model
from dgc.runtime.compile import CompileClock

ROOT = Path(__file__).resolve().parents[1]  # the checkout: profiles/, tests/, the subprocesses' working directory

STEPS = ("pytest", "eager", "compiled", "memory", "train_run", "bench")
# Shares of the budget: a step starting gets (time left) x its weight / (weights of the steps left).
WEIGHTS = {"pytest": 90, "eager": 100, "compiled": 130, "memory": 5, "train_run": 70, "bench": 25}
MIN_STEP_SECONDS = 5.0  # a step with less than this left is skipped
HARD_STOP_GRACE = 45.0  # past budget + this, the process records what it has and exits
PRECISIONS = ("fp32-tf32", "bf16")
LAYOUTS = ("nchw", "channels_last")
MEMORY_FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}  # of LAYOUTS
EXECUTIONS = ("auto", "fused")
BATCH_1_MODELS = ("densenet86_dgc", "densenet86")
TRAIN_COMPILES = report.MODELS
INFERENCE_COMPILES = ("densenet86_dgc", "densenet86", "resnet18_dgc", "resnet18")
# The first compile of a kind starts when at least this much of its phase is left (later ones when
# the longest compile measured so far for that kind and model family fits).
FIRST_COMPILE_SECONDS = 30.0
# Expected compile seconds of a full-width model before one was measured (a guess for a fast host),
# used only to decide whether the end-to-end training run can fit.
COMPILE_PRIOR = {"train": 90.0, "inference_b64": 45.0, "inference_b1": 45.0}
FULL = {"densenet86_dgc": {}, "densenet86": {}, "densenet86_gc": {},
        "resnet18_dgc": {"stem": "cifar"}, "resnet18": {"stem": "cifar"}, "resnet18_gc": {"stem": "cifar"}}
TINY_DENSENET = {"growth": [4, 4, 8], "depth": [1, 1, 1]}
TINY_RESNET = {"width": 8, "blocks": [1, 1, 1, 1], "stem": "cifar"}
TINY = {name: dict(TINY_DENSENET if name.startswith("densenet") else TINY_RESNET) for name in FULL}
# summary.json's top-level keys (every one present from the first write on).
SUMMARY_KEYS = ("device", "torch", "cuda", "triton", "commit", "date", "command", "dry_run",
                "train_step_ms", "inference_ms_b64", "inference_ms_b1", "peak_train_memory_mb",
                "all_settings", "compile_seconds", "ratios", "targets", "paper_profile_hours",
                "pytest", "train_run", "bench", "steps", "skipped", "budget_seconds", "wall_seconds")


class BudgetExceeded(BaseException):
    """Raised by the hard-stop alarm; a BaseException so that no per-measurement handler eats it."""


def _now() -> float:
    return time.monotonic()


def _first_line(exc: BaseException) -> str:
    text = (str(exc).strip().splitlines() or [""])[0][:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Check:
    """The state of one GPU check: settings, the models, the measurements and the budget."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.dry = args.dry_run
        self.device = torch.device("cpu" if self.dry else "cuda")
        self.out_dir = Path(args.out_dir)
        self.start = _now()
        self.budget = float(args.budget)
        self.repeats = args.repeats
        self.warmup = 1 if self.dry else 3
        self.batch = args.batch
        self.models: dict[str, nn.Module] = {}
        self.compiled: dict[tuple[str, str], Callable] = {}  # (model, kind) -> compiled module
        self.calibrated: set[str] = set()
        self.pending_weights = {s: WEIGHTS[s] for s in STEPS if s in args.steps_to_run}
        self.summary: dict[str, Any] = {key: None for key in SUMMARY_KEYS}
        self.summary.update({
            "device": device_name(self.device), "torch": torch.__version__, "cuda": torch.version.cuda,
            "triton": _triton_version(), "commit": git_commit(ROOT), "command": args.command,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "dry_run": self.dry, "all_settings": [], "compile_seconds": {}, "peak_train_memory_mb": {},
            "pytest": {}, "train_run": {}, "bench": {}, "steps": {}, "skipped": {},
            "budget_seconds": self.budget, "batch": self.batch, "repeats": self.repeats,
            "model_overrides": TINY if self.dry else FULL})

    # -- budget and output ---------------------------------------------------------------------
    def elapsed(self) -> float:
        return _now() - self.start

    def left(self) -> float:
        return self.budget - self.elapsed()

    def log(self, message: str) -> None:
        stamp = datetime.datetime.now().strftime("%H:%M:%S")
        print(f"[{stamp} +{self.elapsed():6.1f}s] {message}", flush=True)

    def skip(self, what: str, reason: str) -> None:
        self.summary["skipped"][what] = reason
        self.log(f"skipped {what}: {reason}")

    def write(self) -> None:
        """Derive the figures from the records and write summary.json and summary.md atomically."""
        s = self.summary
        records = s["all_settings"]
        s["train_step_ms"] = report.fastest(records, "train")
        s["inference_ms_b64"] = report.fastest(records, "inference_b64")
        s["inference_ms_b1"] = report.fastest(records, "inference_b1")
        s["ratios"] = report.ratios(s["train_step_ms"], s["inference_ms_b64"], s["peak_train_memory_mb"])
        profile = yaml.safe_load((ROOT / "profiles" / "paper.yaml").read_text())
        s["paper_profile_hours"] = report.paper_profile_hours(
            profile, s["train_step_ms"], s["inference_ms_b64"], s["compile_seconds"], self.batch)
        s["targets"] = report.targets(s["ratios"], s["inference_ms_b1"],
                                      s["paper_profile_hours"]["total_hours"])
        s["wall_seconds"] = self.elapsed()
        write_json_atomic(self.out_dir / "summary.json", s)
        write_text_atomic(self.out_dir / "summary.md", report.markdown(s))

    def run_step(self, name: str, fn: Callable[[float], None]) -> None:
        """Run step `name` with its share of the budget as a deadline; record how it went."""
        weight = self.pending_weights.pop(name)
        left = self.left()
        if left < MIN_STEP_SECONDS:
            self.skip(name, f"the budget of {self.budget:.0f} s is spent")
            self.summary["steps"][name] = {"status": "skipped"}
            return
        share = left * weight / (weight + sum(self.pending_weights.values()))
        self.log(f"step {name}: up to {share:.0f} s of {left:.0f} s left")
        started = _now()
        status = "ok"
        try:
            fn(started + share)
        except BudgetExceeded:
            self.summary["steps"][name] = {"status": "stopped", "seconds": _now() - started,
                                           "share_seconds": share}
            raise
        except Exception as exc:  # noqa: BLE001 - one failing step must not lose the others
            status = f"failed: {_first_line(exc)}"
            self.log(f"step {name} {status}")
        self.summary["steps"][name] = {"status": status, "seconds": _now() - started,
                                       "share_seconds": share}
        self.write()

    # -- models and measurement ----------------------------------------------------------------
    def model(self, name: str) -> nn.Module:
        if name not in self.models:
            torch.manual_seed(0)
            overrides = (TINY if self.dry else FULL)[name]
            # every execution the check times: the Triton `fused` (asked for) and the CPU kernels (dry run)
            model = use_fused_kernel(use_cpu_kernels(create_model(name, 10, **overrides))).to(self.device)
            set_progress(model, 1.0)  # DGC at its pruning target
            self.models[name] = model
        return self.models[name]

    def record(self, model: str, kind: str, compiled: bool, precision: str, layout: str,
               execution: str, status: str, ms: float | None = None, repeats: int = 0,
               reason: str | None = None, mode: str | None = None) -> None:
        self.summary["all_settings"].append({
            "model": model, "kind": kind, "compiled": compiled, "mode": mode, "precision": precision,
            "layout": layout, "execution": execution,
            "setting": report.setting_label(compiled, precision, layout, execution),
            "status": status, "ms": ms, "repeats": repeats, "reason": reason})

    def time_group(self, kind: str, candidates: dict[str, tuple[Callable, dict]], settings: dict[str, tuple],
                   deadline: float, compiled: bool = False, mode: str | None = None) -> None:
        """Median time of each candidate (model -> (run, holder)), round-robin; a candidate that
        raises or ends non-finite is recorded as failed, the others are timed. settings[model] =
        (precision, layout, execution). Fewer repeats (or none) when the deadline is near."""
        runs, per_round = {}, 0.0
        for name, (run, _holder) in candidates.items():
            precision, layout, execution = settings[name]
            try:
                run()  # first call: allocations, cuDNN plans (compiled: already warm)
                synchronize(self.device)
                t0 = _now()
                run()
                synchronize(self.device)
                per_round += _now() - t0
                runs[name] = run
            except Exception as exc:  # noqa: BLE001 - e.g. a kernel that fails in this setting
                self.record(name, kind, compiled, precision, layout, execution, "failed",
                            reason=_first_line(exc), mode=mode)
                self.log(f"  {name} {kind} {report.setting_label(compiled, precision, layout, execution)}"
                         f" failed: {_first_line(exc)}")
        if not runs:
            return
        repeats = self.repeats
        fit = int((deadline - _now()) / max(per_round, 1e-9)) - self.warmup
        if fit < repeats:
            repeats = fit
        min_repeats = 2 if self.dry else 5
        if repeats < min_repeats:
            for name in runs:
                precision, layout, execution = settings[name]
                self.record(name, kind, compiled, precision, layout, execution, "skipped",
                            reason=f"budget: {min_repeats} repeats of {per_round:.2f} s do not fit",
                            mode=mode)
            return
        times = median_times(runs, self.device, repeats, self.warmup)
        for name, seconds in times.items():
            precision, layout, execution = settings[name]
            label = report.setting_label(compiled, precision, layout, execution)
            value = candidates[name][1].get("value")
            if value is None or not bool(torch.isfinite(value.float()).all()):
                self.record(name, kind, compiled, precision, layout, execution, "failed",
                            reason="non-finite outputs/loss: not timed", mode=mode)
                self.log(f"  {name} {kind} {label}: non-finite, recorded as failed")
                continue
            ms = 1000.0 * seconds  # per step / per batch (at batch 1: per image)
            self.record(name, kind, compiled, precision, layout, execution, "ok", ms, repeats, mode=mode)
            self.log(f"  {name:15s} {kind:13s} {label:40s} {ms:9.2f} ms")

    def prepare(self, name: str, layout: str, execution: str, kind: str) -> nn.Module:
        """The model in `layout` with every DGC layer's execution set, in train or eval mode."""
        model = self.model(name)
        if kind != "train" and name not in self.calibrated:
            ready_for_timing(model, (3, 32, 32), self.device)  # raises ValueError if non-finite
            self.calibrated.add(name)
        model.to(memory_format=MEMORY_FORMATS[layout])
        for layer in dgc_layers(model):
            layer.execution = "auto" if execution == "-" else execution
        return model.train(kind == "train")

    def candidate(self, name: str, kind: str, precision: str, layout: str, execution: str,
                  forward: Callable | None = None, mode: str | None = None) -> tuple[Callable, dict]:
        """(run, holder): one training step or one inference batch of model `name` in this setting;
        run() leaves its loss / output in holder['value']. `forward` defaults to the eager model."""
        model = self.prepare(name, layout, execution, kind)
        forward = model if forward is None else forward  # (a compiled module's truth value is len())
        fmt = MEMORY_FORMATS[layout]
        batch = 1 if kind == "inference_b1" else self.batch
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(batch, 3, 32, 32, generator=gen).to(self.device).contiguous(memory_format=fmt)
        holder: dict[str, Any] = {}

        def autocast():
            if precision == "bf16":
                return torch.autocast(self.device.type, dtype=torch.bfloat16)
            return contextlib.nullcontext()

        if kind == "train":
            y = torch.randint(0, 10, (batch,), generator=gen).to(self.device)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True,
                                        weight_decay=1e-4)

            def run() -> None:
                optimizer.zero_grad(set_to_none=True)
                with autocast():
                    loss = F.cross_entropy(forward(x), y) + 1e-5 * sparsity_loss(model)
                loss.backward()
                optimizer.step()
                holder["value"] = loss.detach()
            return run, holder

        mark_step = getattr(getattr(torch, "compiler", None), "cudagraph_mark_step_begin", None)

        def infer() -> None:
            if mode == "reduce-overhead" and mark_step is not None:
                mark_step()  # a new CUDA-graph generation: the previous outputs may be overwritten
            with torch.no_grad(), autocast():
                holder["value"] = forward(x)
        return infer, holder

    def compile_module(self, name: str, kind: str) -> tuple[Callable, str | None]:
        """torch.compile of model `name` for `kind` (dynamo's eager backend in a dry run)."""
        model = self.models[name]
        if self.dry:
            return torch.compile(model, backend="eager", dynamic=False), None
        mode = "default" if kind == "train" else "reduce-overhead"
        return torch.compile(model, mode=mode, dynamic=False), mode


# -- steps ------------------------------------------------------------------------------------------

def fused_unavailable(check: Check) -> str | None:
    from dgc.kernels.fused_triton import fused_available

    if check.device.type != "cuda":
        return "the fused Triton kernel needs CUDA (its CPU interpreter takes minutes per step)"
    if not fused_available(check.device):
        return "the fused Triton kernel cannot run here (is triton installed?)"
    return None


def step_eager(check: Check, deadline: float) -> None:
    """Every eager setting of every model: training (60% of the step), inference at batch 64 and 1."""
    span = deadline - _now()
    sub_deadlines = {"train": _now() + 0.6 * span, "inference_b64": _now() + 0.9 * span,
                     "inference_b1": deadline}
    no_fused = fused_unavailable(check)
    for kind in ("train", "inference_b64", "inference_b1"):
        names = [m for m in report.MODELS if kind != "inference_b1" or m in BATCH_1_MODELS]
        check.log(f"eager {kind}: {', '.join(names)}")
        for precision in PRECISIONS:
            for layout in LAYOUTS:
                for execution in EXECUTIONS:
                    group = {}
                    settings = {}
                    for name in names:
                        is_dgc = "_dgc" in name
                        if execution == "fused" and not is_dgc:
                            continue
                        exe = execution if is_dgc else "-"
                        settings[name] = (precision, layout, exe)
                        if execution == "fused" and no_fused:
                            check.record(name, kind, False, precision, layout, exe, "skipped",
                                         reason=no_fused)
                            continue
                        if _now() > sub_deadlines[kind]:
                            check.record(name, kind, False, precision, layout, exe, "skipped",
                                         reason="budget: the step's time was spent")
                            continue
                        try:
                            group[name] = check.candidate(name, kind, precision, layout, exe)
                        except Exception as exc:  # noqa: BLE001 - e.g. non-finite after calibration
                            check.record(name, kind, False, precision, layout, exe, "failed",
                                         reason=_first_line(exc))
                    if group:
                        check.time_group(kind, group, settings, sub_deadlines[kind])
                    check.write()


def _best(check: Check, name: str, kind: str, compiled: bool = False) -> dict | None:
    rows = [r for r in check.summary["all_settings"] if r["model"] == name and r["kind"] == kind
            and r["compiled"] == compiled and r["status"] == "ok"]
    return min(rows, key=lambda r: r["ms"]) if rows else None


def _measured_compile_seconds(check: Check, name: str, kind: str) -> float | None:
    """The longest compile measured so far for `kind` in the model's family (else any family), or
    None when none was."""
    family = name.split("_")[0]
    seen = {k: v["seconds"] for k, v in check.summary["compile_seconds"].items()
            if v.get("seconds") and k.split(" ")[1] == kind}
    same = [v for k, v in seen.items() if k.split("_")[0] == family]
    return max(same or seen.values() or [None], key=lambda v: -1 if v is None else v)


def step_compiled(check: Check, deadline: float) -> None:
    """Compile each model in its fastest eager setting (training 55% of the step, inference at
    batch 64 30%, batch 1 the rest), then time the compiled ones round-robin."""
    torch._dynamo.reset()
    for key in ("cache_size_limit", "recompile_limit"):  # every model and kind has its own graphs
        if hasattr(torch._dynamo.config, key):
            setattr(torch._dynamo.config, key, 64)
    span = deadline - _now()
    plan = (("train", TRAIN_COMPILES, _now() + 0.55 * span),
            ("inference_b64", INFERENCE_COMPILES, _now() + 0.85 * span),
            ("inference_b1", BATCH_1_MODELS, deadline))
    if check.dry:  # one cheap compile: densenet86_dgc's training step, dynamo's eager backend
        plan = (("train", ("densenet86_dgc",), deadline),)
        check.skip("compiled (other models and kinds)", "dry run: one compile only")
    for kind, names, kind_deadline in plan:
        group, settings = {}, {}
        for name in names:
            best = _best(check, name, kind)
            key = f"{name} {kind}"
            if best is None:
                check.skip(f"compiled {key}", "no successful eager measurement to start from")
                continue
            setting = (best["precision"], best["layout"], best["execution"])
            measured = _measured_compile_seconds(check, name, kind)
            expected = (1.0 if check.dry else FIRST_COMPILE_SECONDS) if measured is None else measured
            # and time to measure the group afterwards, at the eager speed
            reserve = (len(group) + 1) * (check.repeats + check.warmup + 2) * best["ms"] / 1000.0
            if _now() + expected + reserve > kind_deadline:
                check.skip(f"compiled {key}", f"a compile of ~{expected:.0f} s and its timing do not fit "
                                              f"the {max(kind_deadline - _now(), 0):.0f} s left for it")
                continue
            clock = CompileClock()
            t0 = _now()
            mode = None
            try:
                module, mode = check.compile_module(name, kind)
                run, holder = check.candidate(name, kind, *setting, forward=module, mode=mode)
                with clock.active():
                    for _ in range(3):  # compile (forward and backward), then CUDA-graph recording
                        run()
                    synchronize(check.device)
            except Exception as exc:  # noqa: BLE001 - a compile failure is a result, not a crash
                check.summary["compile_seconds"][key] = {"status": "failed", "reason": _first_line(exc),
                                                         "seconds": None, "mode": mode}
                check.record(name, kind, True, *setting, "failed", reason=_first_line(exc), mode=mode)
                check.log(f"  compile {key} failed: {_first_line(exc)}")
                continue
            first_calls = _now() - t0
            callbacks = getattr(getattr(torch._dynamo, "callback", None), "callback_handler", None)
            # without dynamo's compile callbacks the clock stays 0: the first calls' wall time instead
            entry = {"status": "ok", "seconds": clock.seconds if callbacks is not None else first_calls,
                     "compilations": clock.compilations,
                     "first_calls_seconds": first_calls, "mode": mode or "backend=eager",
                     "setting": report.setting_label(True, *setting)}
            if callbacks is not None and clock.compilations == 0:
                entry.update(status="failed", reason="dynamo compiled nothing (cache limit?)")
                check.record(name, kind, True, *setting, "failed", reason=entry["reason"], mode=mode)
            else:
                group[name] = (run, holder)
                settings[name] = setting
                check.compiled[(name, kind)] = module
            check.summary["compile_seconds"][key] = entry
            check.log(f"  compiled {key} ({entry['mode']}, {report.setting_label(True, *setting)}): "
                      f"{entry['seconds']:.1f} s compiling, {clock.compilations} graphs")
            check.write()
        if group:
            check.time_group(kind, group, settings, max(kind_deadline, _now() + 1.0), compiled=True,
                             mode=None if check.dry else ("default" if kind == "train" else "reduce-overhead"))
            check.write()


def step_memory(check: Check, deadline: float) -> None:
    """Peak memory of two training steps (parameters, gradients, momentum, activations) of each
    model in its fastest setting: the device's peak minus what the other models hold."""
    memory = check.summary["peak_train_memory_mb"]
    if check.device.type != "cuda":
        check.skip("memory", "peak memory is measured on CUDA only")
        return
    for name in report.MODELS:
        best = (check.summary.get("train_step_ms") or {}).get(name)
        if best is None:
            memory[name] = {"mb": None, "setting": None, "reason": "no successful training measurement"}
            continue
        if _now() > deadline:
            memory[name] = {"mb": None, "setting": best["setting"], "reason": "budget"}
            continue
        compiled, precision, layout, execution = best["setting"].split(" ")
        forward = check.compiled.get((name, "train")) if compiled == "compiled" else None
        model = check.models[name]
        model.zero_grad(set_to_none=True)
        gc.collect()
        torch.cuda.empty_cache()
        own = sum(p.numel() * p.element_size() for p in model.parameters())
        base = torch.cuda.memory_allocated(check.device) - own
        torch.cuda.reset_peak_memory_stats(check.device)
        run, holder = check.candidate(name, "train", precision, layout, execution, forward=forward)
        run()
        run()
        synchronize(check.device)
        peak = (torch.cuda.max_memory_allocated(check.device) - base) / 2**20
        memory[name] = {"mb": peak, "setting": best["setting"]}
        del run, holder
        model.zero_grad(set_to_none=True)
        check.log(f"  {name:15s} peak train memory {peak:8.0f} MiB ({best['setting']})")


def _kill_group(proc: subprocess.Popen) -> None:
    """End the child and everything it started (it leads its own process group)."""
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)


def run_child(check: Check, cmd: list[str], timeout: float, log_name: str,
              env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run cmd from the repository root with stdout+stderr in out-dir/<log_name>, at most `timeout`
    seconds; returns returncode (None if stopped), timed_out, seconds, log and the output's tail."""
    log_path = check.out_dir / log_name
    if torch.cuda.is_initialized():  # hand the cached blocks back: the child needs the memory
        gc.collect()
        torch.cuda.empty_cache()
    check.log(f"  $ {shlex.join(cmd)}  (at most {timeout:.0f} s, log {log_path})")
    child_env = {**os.environ, **(env or {})}
    child_env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [child_env.get("PYTHONPATH")])])
    child_env.pop("TRITON_INTERPRET", None)
    t0 = _now()
    timed_out = False
    with open(log_path, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, env=child_env,
                                start_new_session=True)
        try:
            proc.wait(timeout=max(timeout, 1.0))
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            _kill_group(proc)
    text = log_path.read_text(errors="replace")
    return {"returncode": None if timed_out else proc.returncode, "timed_out": timed_out,
            "seconds": _now() - t0, "log": str(log_path), "tail": text.splitlines()[-15:], "output": text}


def gpu_test_files() -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py")
                  if "mark.gpu" in p.read_text())


def parse_pytest(output: str) -> dict[str, int]:
    """Counts from pytest's final summary line, else (a stopped run) from its progress dots."""
    counts = {"passed": 0, "failed": 0, "errors": 0, "skipped": 0}
    final = [line for line in output.splitlines() if re.search(r"\bin [\d.]+s\b", line)]
    if final:
        for n, word in re.findall(r"(\d+) (passed|failed|errors?|skipped)", final[-1]):
            counts["errors" if word.startswith("error") else word] += int(n)
        return counts
    for line in output.splitlines():
        m = re.match(r"^([.FEsxX]+)\s*(\[\s*\d+%\])?$", line.strip())
        if m:
            for ch in m.group(1):
                key = {".": "passed", "F": "failed", "E": "errors", "s": "skipped"}.get(ch)
                if key:
                    counts[key] += 1
    return counts


def step_pytest(check: Check, deadline: float) -> None:
    files = gpu_test_files()
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", *files]
    result = run_child(check, cmd, deadline - _now(), "pytest.log")
    counts = parse_pytest(result["output"])
    status = ("timed out" if result["timed_out"] else
              "passed" if result["returncode"] == 0 else f"failed (exit {result['returncode']})")
    check.summary["pytest"] = {"status": status, **counts, "files": files, "command": shlex.join(cmd),
                               **{k: result[k] for k in ("returncode", "seconds", "log", "tail")}}
    check.log(f"  pytest {status}: {counts}")


def step_bench(check: Check, deadline: float) -> None:
    if check.dry:
        check.skip("bench", "dry run: the layer benchmark takes minutes on CPU")
        check.summary["bench"] = {"status": "skipped"}
        return
    out = check.out_dir / "bench.json"
    cmd = [sys.executable, "-m", "dgc", "bench", "--device", "cuda", "--repeats", "10", "--out", str(out)]
    result = run_child(check, cmd, deadline - _now(), "bench.log")
    status = ("timed out" if result["timed_out"] else
              "ok" if result["returncode"] == 0 else f"failed (exit {result['returncode']})")
    check.summary["bench"] = {"status": status, "json": str(out) if out.exists() else None,
                              **{k: result[k] for k in ("returncode", "seconds", "log", "tail")}}


def train_params(check: Check, tmp: Path) -> dict[str, Any]:
    """profiles/paper.yaml narrowed to digits and densenet86_dgc, 3 epochs, wandb off, data in tmp."""
    params = yaml.safe_load((ROOT / "profiles" / "paper.yaml").read_text())
    params["pipeline"] = {"datasets": ["digits"], "models": ["densenet86_dgc"]}
    params["data"]["root"] = str(tmp / "data")
    params["train"].update({"epochs": 3, "wandb": "disabled"})
    if check.dry:
        params["train"].update({"epochs": 1, "max_batches": 3, "threads": 1, "device": "cpu"})
        params["models"]["densenet86_dgc"] = {**params["models"]["densenet86_dgc"], **TINY["densenet86_dgc"]}
    return params


def read_history(path: Path) -> list[dict[str, float]]:
    with open(path) as fh:
        return [{"epoch": int(row["epoch"]), "epoch_seconds": float(row["epoch_seconds"]),
                 "compile_seconds": float(row["compile_seconds"]), "test_top1": float(row["test_top1"]),
                 "images_per_second": float(row["images_per_second"])} for row in csv.DictReader(fh)]


DIGITS_TRAIN_STEPS = 1437 // 64  # digits: 1797 images, 20% held out; batch 64, last one dropped


def expected_train_run_seconds(check: Check) -> float:
    """Rough seconds of the 3-epoch run on this GPU: start-up, its compilations (three training
    graphs, one per pruning phase, and evaluation; measured here or COMPILE_PRIOR) and its steps."""
    compiles = check.summary["compile_seconds"]
    train_c = (compiles.get("densenet86_dgc train") or {}).get("seconds") or COMPILE_PRIOR["train"]
    eval_c = (compiles.get("densenet86_dgc inference_b64") or {}).get("seconds") or COMPILE_PRIOR["inference_b64"]
    step = (check.summary["train_step_ms"] or {}).get("densenet86_dgc") or {"ms": 200.0}
    return 20.0 + 3 * train_c + eval_c + 3 * DIGITS_TRAIN_STEPS * step["ms"] / 1000.0


def step_train_run(check: Check, deadline: float) -> None:
    info: dict[str, Any] = {"status": "started", "epochs": []}
    check.summary["train_run"] = info
    expected = expected_train_run_seconds(check)
    if not check.dry and "train_run" not in check.args.only and _now() + expected > deadline:
        info["status"] = "skipped"
        check.skip("train_run", f"it needs ~{expected:.0f} s (mostly compiling full-width densenet86_dgc), "
                                f"more than the {deadline - _now():.0f} s left for it; run it alone with "
                                f"--only train_run --budget {int(expected * 1.5) + 30}")
        return
    tmp = Path(tempfile.mkdtemp(prefix="dgc-gpu-check-"))
    try:
        params = train_params(check, tmp)
        params_path = tmp / "params.yaml"
        params_path.write_text(yaml.safe_dump(params, sort_keys=False))
        env = {"WANDB_MODE": "disabled"}
        data = run_child(check, [sys.executable, "-m", "dgc", "data", "digits", "--params", str(params_path)],
                         deadline - _now(), "train_run_data.log", env)
        if data["returncode"] != 0:
            info.update(status="data preparation failed" + (" (timed out)" if data["timed_out"] else ""),
                        tail=data["tail"])
            return
        cmd = [sys.executable, "-m", "dgc", "train", "digits", "densenet86_dgc", "--params", str(params_path),
               "--runs", str(tmp / "runs"), "--history-dir", str(tmp / "history")]
        result = run_child(check, cmd, deadline - _now(), "train_run.log", env)
        history = tmp / "runs" / "digits-densenet86_dgc" / "seed0" / "history.csv"
        if history.exists():
            info["epochs"] = read_history(history)
            shutil.copy(history, check.out_dir / "train_run_history.csv")
        status = ("timed out" if result["timed_out"] else
                  "ok" if result["returncode"] == 0 else f"failed (exit {result['returncode']})")
        info.update({"status": status, "epochs_planned": params["train"]["epochs"],
                     "command": shlex.join(cmd), "params": params["train"],
                     "final_test_top1": info["epochs"][-1]["test_top1"] if info["epochs"] else None,
                     **{k: result[k] for k in ("returncode", "seconds", "log", "tail")}})
        check.log(f"  train run {status}: " + ", ".join(
            f"epoch {e['epoch']} {e['epoch_seconds']:.1f} s (compile {e['compile_seconds']:.1f} s) "
            f"top-1 {e['test_top1']:.1f}%" for e in info["epochs"]))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


STEP_FUNCTIONS: dict[str, Callable[[Check, float], None]] = {
    "pytest": step_pytest, "eager": step_eager, "compiled": step_compiled, "memory": step_memory,
    "train_run": step_train_run, "bench": step_bench}


# -- entry point ------------------------------------------------------------------------------------

def _triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=420.0, help="total seconds (default 420)")
    parser.add_argument("--out-dir", default=None,
                        help="where summary.json/.md and logs go (default reports/gpu; a dry run: build/gpu-dry-run, "
                             "so that it never replaces a GPU's measurement)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed runs per setting, after warm-up (default 20; 2 dry)")
    parser.add_argument("--batch", type=int, default=None,
                        help="training and inference batch (default 64; 8 dry)")
    parser.add_argument("--skip", default="", help=f"comma-separated steps to leave out: {', '.join(STEPS)}")
    parser.add_argument("--only", default="", help="comma-separated steps to run (default all)")
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny models: a check of this code")
    args = parser.parse_args(argv)
    if args.budget <= 0:
        parser.error(f"--budget must be positive, got {args.budget:g}")
    if args.out_dir is None:
        args.out_dir = "build/gpu-dry-run" if args.dry_run else "reports/gpu"
    if args.batch is None:
        args.batch = 8 if args.dry_run else 64
    if args.batch < 1:
        parser.error(f"--batch must be positive, got {args.batch}")
    if args.repeats is None:
        args.repeats = 2 if args.dry_run else 20
    if args.repeats < 1:
        parser.error(f"--repeats must be positive, got {args.repeats}")
    chosen = {}
    for flag in ("skip", "only"):
        names = [s.strip() for s in getattr(args, flag).split(",") if s.strip()]
        unknown = [s for s in names if s not in STEPS]
        if unknown:
            parser.error(f"--{flag}: unknown step {unknown[0]!r}; steps: {', '.join(STEPS)}")
        chosen[flag] = names
    args.only = chosen["only"]
    args.steps_to_run = [s for s in STEPS if (not chosen["only"] or s in chosen["only"])
                         and s not in chosen["skip"]]
    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device: run on a GPU machine, or use --dry-run to check this script on CPU")
    args.command = shlex.join(["python3", "benchmarks/gpu_check.py", *(sys.argv[1:] if argv is None else argv)])
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.dry_run:
        torch.set_num_threads(1)
    else:
        torch.backends.cuda.matmul.allow_tf32 = True  # "fp32-tf32": fp32 settings may use TF32
        torch.backends.cudnn.allow_tf32 = True
    check = Check(args)
    check.out_dir.mkdir(parents=True, exist_ok=True)
    check.log(f"GPU check on {check.summary['device']}, torch {torch.__version__}, budget {args.budget:.0f} s, "
              f"steps: {', '.join(args.steps_to_run)}; writing {check.out_dir}/summary.json")
    for name in STEPS:
        if name not in args.steps_to_run:
            check.summary["skipped"][name] = "left out (--skip / --only)"
    check.write()

    def hard_stop(signum, frame):
        raise BudgetExceeded()

    signal.signal(signal.SIGALRM, hard_stop)
    signal.alarm(int(args.budget + HARD_STOP_GRACE))
    code = 0
    current = None
    try:
        for name in args.steps_to_run:
            current = name
            check.run_step(name, lambda deadline, n=name: STEP_FUNCTIONS[n](check, deadline))
    except BudgetExceeded:
        check.skip(f"{current} (and after)", f"stopped: past the budget plus {HARD_STOP_GRACE:.0f} s")
        code = 3
    finally:
        signal.alarm(0)
        check.write()
    s = check.summary
    check.log(f"done in {check.elapsed():.0f} s: {check.out_dir / 'summary.json'}, {check.out_dir / 'summary.md'}")
    for t in s["targets"]:
        check.log(f"  target {t['target']}: {t['measured'] if t['measured'] is None else round(t['measured'], 3)}"
                  f" (limit {t['limit']:g}) {'-' if t['met'] is None else ('met' if t['met'] else 'NOT met')}")
    return code


if __name__ == "__main__":
    sys.exit(main())
