"""The `evaluate` stage: from every seed's best.pt and checkpoint.pt, top-1/top-5 (mean, spread, per seed),
flops_dense / flops_expected (the paper's convention; DGC-G's from the fractions its layers selected) /
flops_actual (from the channels really used), params, `plateau` and ms per image per runtime.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from dgc.config import Params, check_dataset, input_size_of
from dgc.data.batches import make_test_batches
from dgc.kernels.cpu_layers import use_cpu_kernels
from dgc.layers import global_layers
from dgc.measure.flops import actual_flops, count_flops
from dgc.measure.latency import device_name
from dgc.measure.plateau import plateau_of_seeds
from dgc.measure.runtimes import fastest, latency_by_runtime, runtimes_to_time
from dgc.measure.usage import measure_usage
from dgc.runtime.checkpoint import load_model
from dgc.runtime.device import resolve_device
from dgc.runtime.engine import evaluate
from dgc.runtime.runs import run_dir

# The authors' recipe, to tell whether a run can be held against the paper's accuracy.
PAPER_RECIPE = {"cifar10": {"epochs": 300, "batch_size": 64}, "cifar100": {"epochs": 300, "batch_size": 64},
                "imagenet": {"epochs": 120, "batch_size": 256}}
ARCHITECTURE_KEYS = ("growth", "depth", "width", "blocks", "heads", "gate_factor", "squeeze_rate", "groups")


def comparability(dataset: str, settings: dict[str, Any]) -> dict[str, Any]:
    """Whether a run's architecture and recipe are the paper's; `reason` says why not."""
    from dgc.models import model_defaults

    args, defaults = settings["model_args"], model_defaults(settings["model_name"])

    def same(a: Any, b: Any) -> bool:
        return list(a) == list(b) if isinstance(a, (list, tuple)) else a == b

    arch_changes = sorted(k for k in args if k in ARCHITECTURE_KEYS and not same(args[k], defaults[k]))
    reasons = [f"{dataset} is not a dataset of the paper (smoke run)"] if dataset not in PAPER_RECIPE else []
    if arch_changes:
        reasons.append(f"architecture changed ({', '.join(arch_changes)})")
    train = settings["train"]
    reasons += [f"train.{key} is {train[key]}, the paper's is {value}"
                for key, value in PAPER_RECIPE.get(dataset, {}).items() if train[key] != value]
    if train.get("max_batches"):
        reasons.append("train.max_batches caps the epochs")
    return {"architecture_matches_paper": int(not arch_changes),
            "recipe_matches_paper": int(not reasons),
            "reason": "; ".join(reasons) or "the paper's architecture and recipe"}


def _accuracy(result: dict[str, float], epoch: int) -> dict[str, float]:
    return {"epoch": epoch, "top1_acc": result["top1"], "top1_err": 100.0 - result["top1"],
            "top5_acc": result["top5"], "top5_err": 100.0 - result["top5"], "loss": result["loss"]}


def _mean_and_spread(per_seed: list[dict[str, float]]) -> tuple[dict, dict]:
    keys, n = [k for k in per_seed[0] if k != "epoch"], len(per_seed)
    mean = {k: statistics.fmean(r[k] for r in per_seed) for k in keys}
    # by hand: statistics.stdev fails on a nan (a diverged seed's loss) instead of returning nan
    return mean, {k: math.sqrt(sum((r[k] - mean[k]) ** 2 for r in per_seed) / (n - 1)) if n > 1 else 0.0
                  for k in keys}


def evaluate_run(dataset: str, model_name: str, params: Params, runs_root: str | Path = "runs",
                 log=print) -> dict[str, Any]:
    check_dataset(dataset)
    cfg, seeds = params.evaluate, list(params.train.seeds)
    device = resolve_device(cfg.device)
    rows: dict[str, list[dict[str, float]]] = {"best": [], "final": []}
    curves, usage, model = [], None, None
    test = make_test_batches(dataset, params, device)  # the same for every seed
    for seed in seeds:
        folder = run_dir(runs_root, dataset, model_name, seed)
        for kind, file in (("best", "best.pt"), ("final", "checkpoint.pt")):  # the final one last
            loaded, ck = load_model(folder / file, device)
            loaded = use_cpu_kernels(loaded).to(device)  # the C++ kernels at CPU inference
            rows[kind].append(_accuracy(evaluate(loaded, test), ck["epoch"]))
        settings, final_runtime = ck["settings"], ck.get("runtime", {})
        curves.append([row["test_top1"] for row in ck.get("history", [])])
        if usage is None:  # channel usage and latency: the first seed's final model
            usage, model = measure_usage(loaded, test), loaded
        log(f"{dataset}-{model_name} seed {seed}: best top-1 {rows['best'][-1]['top1_acc']:.2f}%, "
            f"final {rows['final'][-1]['top1_acc']:.2f}%")
    size = input_size_of(dataset, params.data.digits_size)
    flops = count_flops(model, size)
    active = {row["name"]: row["active_fraction"] for row in usage["layers"]}
    if global_layers(model):  # DGC-G prunes unevenly: expected FLOPs from the kept fractions measured
        kept = {row["name"]: row["kept_fraction"] for row in usage["layers"]}
        flops["flops_expected"] = actual_flops(model, size, kept)
    plateau, gains = plateau_of_seeds(curves)  # finished learning? (dgc/measure/plateau.py)
    stats = {kind: _mean_and_spread(r) for kind, r in rows.items()}  # (mean, spread) over the seeds
    runtimes = runtimes_to_time(cfg.runtimes, cfg.compile, device)  # + compiled where evaluate.compile compiles
    timed = latency_by_runtime(model, device, runtimes, cfg.compile, cfg.latency_batch_sizes, size,
                               cfg.latency_repeats, log=log)
    latency, latency_runtime = fastest(timed["ms"])
    comparable = comparability(dataset, settings)
    metrics = {
        **{kind: {**stats[kind][0], "epoch": r[0]["epoch"]} for kind, r in rows.items()},
        "seeds": len(seeds),
        "plateau": plateau,
        **flops,
        "flops_actual": actual_flops(model, size, active) if active else flops["flops_expected"],
        "latency_ms_per_image": latency,  # per batch size, in its fastest runtime (info: latency_runtime)
        "latency_ms_per_image_by_runtime": timed["ms"],
        **{k: v for k, v in comparable.items() if k != "reason"},
    }
    if len(seeds) > 1:
        metrics.update({f"{kind}_std": stats[kind][1] for kind in rows})
        metrics["per_seed"] = {str(s): {"best_top1_err": b["top1_err"], "final_top1_err": f["top1_err"],
                                        "late_gain": g}
                               for s, b, f, g in zip(seeds, rows["best"], rows["final"], gains)}
    info = {"dataset": dataset, "model": model_name, "profile": settings["profile"],
            "latency_device": device_name(device),
            "latency_runtime": latency_runtime,  # per batch size, the runtime of latency_ms_per_image
            "latency_runtimes": list(timed["ms"]),  # the runtimes timed (metrics: latency_ms_per_image_by_runtime)
            "latency_skipped": timed["skipped"],  # runtime -> why it was not timed
            "latency_compile": timed["compile"],  # the compiled runtime's mode; off when it did not run
            "latency_onnx_max_rel_diff": timed["onnx_max_rel_diff"],  # ONNX Runtime vs eager logits (None: not run)
            "latency_repeats": cfg.latency_repeats,  # the median of this many timed forwards per batch size
            "runtime": final_runtime,
            "comparability": comparable["reason"],
            "seeds": seeds, "model_args": settings["model_args"], "layers": usage["layers"],
            "usage_images": usage["images"]}
    return {"metrics": metrics, "info": info}


def write_evaluation(result: dict[str, Any], metrics_dir: str | Path = "reports/metrics",
                     info_dir: str | Path = "reports/info") -> tuple[Path, Path]:
    """reports/metrics/<dataset>-<model>.json (numbers only, for `dvc metrics`) and reports/info/ (the rest)."""
    from dgc.io import write_json_atomic

    name = f"{result['info']['dataset']}-{result['info']['model']}.json"
    return (write_json_atomic(Path(metrics_dir) / name, result["metrics"]),
            write_json_atomic(Path(info_dir) / name, result["info"]))
