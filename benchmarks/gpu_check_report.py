"""The GPU check's derived figures: fastest setting per model, DGC / dense ratios, the targets, the
paper profile's hours on the measured GPU, and the Markdown summary (reports/gpu/summary.md).

Pure functions over the measurement records of benchmarks/gpu_check.py (no torch), so that the
arithmetic is tested apart from the timing. `markdown` writes summary.md again from a summary.json:

    python benchmarks/gpu_check_report.py [reports/gpu/summary.json] [--out reports/gpu/summary.md]

A record (an entry of summary.json's `all_settings`):

    {"model": "densenet86_dgc", "kind": "train" | "inference_b64" | "inference_b1",
     "compiled": bool, "mode": torch.compile mode or None, "precision": "fp32-tf32" | "bf16",
     "layout": "nchw" | "channels_last", "execution": "auto" | "fused" | "-" (no DGC layer),
     "setting": "<compiled|eager> <precision> <layout> <execution>",
     "status": "ok" | "failed" | "skipped", "ms": float or None, "repeats": int, "reason": str or None}

`ms` is milliseconds per training step (batch 64), per inference batch of 64, or per image at batch 1.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping

MODELS = ("densenet86_dgc", "densenet86", "densenet86_gc", "resnet18_dgc", "resnet18", "resnet18_gc")
PAIRS = (("densenet86_dgc", "densenet86"), ("resnet18_dgc", "resnet18"))
KINDS = ("train", "inference_b64", "inference_b1")
INFERENCE_BATCH = 64
# Training and test images of the datasets whose run time is estimated (CIFAR-sized, 32x32).
DATASET_IMAGES = {"cifar10": (50_000, 10_000), "cifar100": (50_000, 10_000)}
# A training run compiles one graph per pruning phase (none, the ramp, the target), and evaluation
# one per phase it meets: the estimate counts three compilations of each (dgc/runtime/compile.py).
COMPILES_PER_RUN = 3
# (name, limit): each target is met when the measured value is at most its limit.
TARGET_LIMITS = (
    ("densenet86_dgc / densenet86 train step", 1.3),
    ("resnet18_dgc / resnet18 train step", 1.5),
    ("densenet86_dgc / densenet86 inference b64", 1.0),
    ("densenet86_dgc inference batch 1, ms per image", 2.0),
    ("paper profile, hours on this GPU", 12.0),
    ("densenet86_dgc / densenet86 peak train memory", 1.3),
    ("resnet18_dgc / resnet18 peak train memory", 1.3),
)


def setting_label(compiled: bool, precision: str, layout: str, execution: str) -> str:
    """'<compiled|eager> <fp32-tf32|bf16> <nchw|channels_last> <execution>'."""
    return f"{'compiled' if compiled else 'eager'} {precision} {layout} {execution}"


def fastest(records: Iterable[Mapping[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    """model -> {"ms", "setting"} of its fastest successful measurement of `kind`."""
    best: dict[str, dict[str, Any]] = {}
    for r in records:
        if r["kind"] != kind or r["status"] != "ok" or r["ms"] is None:
            continue
        if r["model"] not in best or r["ms"] < best[r["model"]]["ms"]:
            best[r["model"]] = {"ms": r["ms"], "setting": r["setting"]}
    return {m: best[m] for m in sorted(best, key=_model_order)}


def _model_order(name: str) -> tuple[int, str]:
    return (MODELS.index(name) if name in MODELS else len(MODELS), name)


def _quotient(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def _value(table: Mapping[str, Mapping[str, Any]], model: str, key: str) -> float | None:
    entry = table.get(model)
    return None if entry is None else entry.get(key)


def ratios(train: Mapping, inference_b64: Mapping, memory: Mapping) -> dict[str, dict[str, float | None]]:
    """'<dgc>/<dense>' -> train_step, inference_b64 and peak_train_memory quotients of the fastest
    settings (None where either side is missing)."""
    out = {}
    for dgc, dense in PAIRS:
        out[f"{dgc}/{dense}"] = {
            "train_step": _quotient(_value(train, dgc, "ms"), _value(train, dense, "ms")),
            "inference_b64": _quotient(_value(inference_b64, dgc, "ms"),
                                       _value(inference_b64, dense, "ms")),
            "peak_train_memory": _quotient(_value(memory, dgc, "mb"), _value(memory, dense, "mb")),
        }
    return out


def targets(ratio_table: Mapping, inference_b1: Mapping, paper_hours: float | None) -> list[dict[str, Any]]:
    """Each target of TARGET_LIMITS with its measured value, limit and whether it is met (None: not
    measured)."""
    measured = [
        ratio_table["densenet86_dgc/densenet86"]["train_step"],
        ratio_table["resnet18_dgc/resnet18"]["train_step"],
        ratio_table["densenet86_dgc/densenet86"]["inference_b64"],
        _value(inference_b1, "densenet86_dgc", "ms"),
        paper_hours,
        ratio_table["densenet86_dgc/densenet86"]["peak_train_memory"],
        ratio_table["resnet18_dgc/resnet18"]["peak_train_memory"],
    ]
    return [{"target": name, "measured": value, "limit": limit,
             "met": None if value is None else bool(value <= limit)}
            for (name, limit), value in zip(TARGET_LIMITS, measured)]


def closest_model(name: str, timed: Iterable[str]) -> str | None:
    """The timed model most like `name`: the same family (text before the first '_'), then the same
    kind (DGC or not), then the longest common name prefix; None when nothing was timed."""
    timed = sorted(timed, key=_model_order)
    if not timed:
        return None
    family, is_dgc = name.split("_")[0], "_dgc" in name

    def score(other: str) -> tuple[bool, bool, int]:
        prefix = len(_common_prefix(name, other))
        return (other.split("_")[0] == family, ("_dgc" in other) == is_dgc, prefix)

    return max(timed, key=score)  # max keeps the first of equal scores


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def _run_compile_seconds(model: str, setting: str, kind: str, compile_seconds: Mapping) -> float:
    """Compile seconds a run of `model` spends for `kind` when its fastest setting is compiled."""
    if not setting.startswith("compiled"):
        return 0.0
    entry = compile_seconds.get(f"{model} {kind}") or {}
    return COMPILES_PER_RUN * float(entry.get("seconds") or 0.0)


def paper_profile_hours(profile: Mapping[str, Any], train: Mapping, inference_b64: Mapping,
                        compile_seconds: Mapping, inference_batch: int = INFERENCE_BATCH) -> dict[str, Any]:
    """Estimated GPU hours of every (dataset, model, seed) run of the paper profile on this GPU.

    Per run: epochs x (steps per epoch x the model's fastest train step + one evaluation of the test
    set at the fastest batch-64 (`inference_batch`) inference per image) + the compile seconds of its compiled settings
    (COMPILES_PER_RUN each). Steps per epoch = training images // batch size (the last partial batch
    is dropped, as dgc/data/loader.py does). A model that was not timed takes the figures of
    `closest_model` and is flagged with `estimated_from`."""
    cfg = profile.get("train") or {}
    pipeline = profile.get("pipeline") or {}
    epochs, batch = int(cfg.get("epochs", 300)), int(cfg.get("batch_size", 64))
    seeds = len(cfg.get("seeds") or [0])
    runs, total = [], 0.0
    complete = True
    for dataset in pipeline.get("datasets") or []:
        for model in pipeline.get("models") or []:
            run: dict[str, Any] = {"dataset": dataset, "model": model, "seeds": seeds, "epochs": epochs,
                                   "hours": None, "estimated_from": None, "note": None}
            runs.append(run)
            if dataset not in DATASET_IMAGES:
                run["note"] = f"not estimated: only {', '.join(DATASET_IMAGES)} are"
                complete = False
                continue
            source = model if model in train else closest_model(model, train)
            inf_source = model if model in inference_b64 else closest_model(model, inference_b64)
            if source is None or inf_source is None:
                run["note"] = "not estimated: no model was timed"
                complete = False
                continue
            if source != model:
                run["estimated_from"] = source
            n_train, n_test = DATASET_IMAGES[dataset]
            steps = n_train // batch
            step_ms = train[source]["ms"]
            eval_s = n_test * inference_b64[inf_source]["ms"] / inference_batch / 1000.0
            compile_s = (_run_compile_seconds(source, train[source]["setting"], "train", compile_seconds)
                         + _run_compile_seconds(inf_source, inference_b64[inf_source]["setting"],
                                                "inference_b64", compile_seconds))
            seconds = epochs * (steps * step_ms / 1000.0 + eval_s) + compile_s
            run.update({"steps_per_epoch": steps, "train_step_ms": step_ms,
                        "train_setting": train[source]["setting"], "eval_seconds_per_epoch": eval_s,
                        "compile_seconds": compile_s, "hours": seeds * seconds / 3600.0})
            total += run["hours"]
    return {"total_hours": total if runs and complete else None, "partial_hours": total, "runs": runs,
            "assumptions": ("fastest measured setting per model, DGC at its pruning target for the "
                            "whole run; evaluation at batch 256 approximated by the batch-64 inference "
                            f"per image; {COMPILES_PER_RUN} compilations per compiled setting; data "
                            "loading not counted")}


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _cell(table: Mapping, model: str, key: str = "ms", digits: int = 1) -> str:
    entry = table.get(model)
    if not entry or entry.get(key) is None:
        return "-"
    return f"{entry[key]:.{digits}f} ({entry['setting']})"


def markdown(summary: Mapping[str, Any]) -> str:
    """summary.md: device, versions and command, the per-model table, ratios and targets, the
    paper-profile estimate, the test and training-run outcomes, and what was skipped."""
    s = summary
    lines = [f"## GPU check: {s['device']}", ""]
    if s.get("dry_run"):
        lines += ["**Dry run** (CPU, tiny models, 2 repeats): checks the script, not the GPU.", ""]
    lines += [f"torch {s['torch']}, CUDA {s.get('cuda') or '-'}, commit {s.get('commit') or '-'}, "
              f"{s['date']}; budget {s['budget_seconds']:.0f} s, wall {_fmt(s.get('wall_seconds'), 0)} s.",
              "", f"Command: `{s['command']}`", "",
              f"| model | fastest train step ms (setting) | inference b{s.get('batch') or INFERENCE_BATCH} ms (setting) "
              "| peak train MiB |", "|---|---|---|---|"]
    memory = s.get("peak_train_memory_mb") or {}
    for model in MODELS:
        mem = memory.get(model) or {}
        lines.append(f"| {model} | {_cell(s['train_step_ms'], model)} | "
                     f"{_cell(s['inference_ms_b64'], model)} | {_fmt(mem.get('mb'), 0)} |")
    b1 = s.get("inference_ms_b1") or {}
    if b1:
        lines += ["", "Batch 1, ms per image: " + "; ".join(
            f"{m} {_cell(b1, m, digits=2)}" for m in b1) + "."]
    lines += ["", "| DGC / dense | train step | inference b64 | peak train memory |", "|---|---|---|---|"]
    for pair, r in s["ratios"].items():
        lines.append(f"| {pair} | {_fmt(r['train_step'])} | {_fmt(r['inference_b64'])} | "
                     f"{_fmt(r['peak_train_memory'])} |")
    lines += ["", "| target | measured | limit | met |", "|---|---|---|---|"]
    for t in s["targets"]:
        met = "-" if t["met"] is None else ("yes" if t["met"] else "**no**")
        lines.append(f"| {t['target']} | {_fmt(t['measured'])} | {t['limit']:g} | {met} |")
    est = s.get("paper_profile_hours") or {}
    lines += ["", f"Paper profile (profiles/paper.yaml) on this GPU: "
              f"{_fmt(est.get('total_hours'), 1)} h in all ({est.get('assumptions', '')}).", ""]
    if est.get("runs"):
        lines += ["| dataset | model | train step ms (setting) | hours | note |", "|---|---|---|---|---|"]
        for run in est["runs"]:
            note = run.get("note") or (f"estimated from {run['estimated_from']}"
                                       if run.get("estimated_from") else "")
            step = ("-" if run.get("train_step_ms") is None
                    else f"{run['train_step_ms']:.1f} ({run['train_setting']})")
            lines.append(f"| {run['dataset']} | {run['model']} | {step} | {_fmt(run['hours'], 2)} | {note} |")
    py = s.get("pytest") or {}
    lines += ["", f"GPU tests (`pytest -m gpu`): {py.get('status', 'not run')}"
              + (f", {py.get('passed', 0)} passed, {py.get('failed', 0)} failed, "
                 f"{py.get('errors', 0)} errors, {py.get('skipped', 0)} skipped" if py.get("status") else "")
              + "."]
    tr = s.get("train_run") or {}
    if tr.get("epochs"):
        epochs = "; ".join(f"epoch {e['epoch']}: {_fmt(e['epoch_seconds'], 1)} s "
                           f"(compile {_fmt(e['compile_seconds'], 1)} s), test top-1 {_fmt(e['test_top1'], 2)}%"
                           for e in tr["epochs"])
        lines.append(f"End-to-end `dgc train digits densenet86_dgc` ({tr.get('status')}): {epochs}.")
    else:
        lines.append(f"End-to-end training run: {tr.get('status', 'not run')}.")
    if s.get("skipped"):
        lines += ["", "Skipped: " + "; ".join(f"{k}: {v}" for k, v in s["skipped"].items()) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Write a GPU check's summary.md again from its summary.json.")
    parser.add_argument("summary", nargs="?", default="reports/gpu/summary.json")
    parser.add_argument("--out", help="where to write it (default: summary.md next to the JSON; - prints it)")
    args = parser.parse_args(argv)
    from dgc.io import write_text_atomic

    text = markdown(json.loads(Path(args.summary).read_text()))
    if args.out == "-":
        print(text, end="")
    else:
        print(write_text_atomic(args.out or Path(args.summary).with_name("summary.md"), text))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
