"""Tables and figures of the report notebooks. The notebooks only call these; they read the
pipeline's outputs and compute nothing of their own.

Every loader names the stage that produces a missing input (`ReportInputError`).
"""

from __future__ import annotations

import csv
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

PRODUCER = {"metrics": "evaluate", "info": "evaluate", "history": "train", "vs_paper": "compare",
            "figures": "plots", "bench": "bench"}


class ReportInputError(FileNotFoundError):
    """An input of the report is missing; the message names the stage that writes it."""


def _need(path: Path, kind: str) -> Path:
    if not path.exists():
        raise ReportInputError(f"{path} is missing: it is written by the `{PRODUCER[kind]}` stage "
                               f"(run `dvc repro`)")
    return path


def _load_json_dir(folder: Path, kind: str, runs: list[str]) -> dict[str, dict]:
    return {run: json.loads(_need(folder / f"{run}.json", kind).read_text()) for run in runs}


def run_names(datasets: list[str], models: list[str]) -> list[str]:
    return [f"{d}-{m}" for d in datasets for m in models]


def load_inputs(datasets: list[str], models: list[str], reports: str | Path = "reports") -> dict[str, Any]:
    """Everything the report shows, from the pipeline's outputs under `reports`."""
    reports = Path(reports)
    runs = run_names(datasets, models)
    histories = {}
    for run in runs:
        with open(_need(reports / "history" / f"{run}.csv", "history")) as fh:
            histories[run] = pd.DataFrame([{k: float(v) for k, v in r.items()} for r in csv.DictReader(fh)])
    return {
        "runs": runs,
        "metrics": _load_json_dir(reports / "metrics", "metrics", runs),
        "info": _load_json_dir(reports / "info", "info", runs),
        "history": histories,
        "vs_paper": json.loads(_need(reports / "vs_paper.json", "vs_paper").read_text()),
        "figures": reports / "figures",
    }


def git_commit(repo: str | Path = ".") -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "dgc"],
                               cwd=repo, capture_output=True, text=True).stdout.strip()
        return out + (" (dgc/ modified)" if dirty else "")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown (not a git checkout)"


def summary_table(inputs: dict[str, Any], profile: str) -> pd.DataFrame:
    """Profile, hardware, training time, versions and commit."""
    import torch

    info = next(iter(inputs["info"].values()), {})
    train_s = sum(h["epoch_seconds"].sum() for h in inputs["history"].values())
    epochs = {int(h["epoch"].max()) for h in inputs["history"].values() if len(h)}
    rows = [("profile", profile + (" (offline smoke run: not comparable with the paper)" if profile == "smoke" else "")),
            ("runs", f"{len(inputs['runs'])} ({', '.join(inputs['runs'])})"),
            ("epochs per run", ", ".join(str(e) for e in sorted(epochs))),
            ("training time, all runs", f"{train_s / 60:.1f} min (sum of epoch times)"),
            ("evaluation device", info.get("latency_device", "-")),
            ("python / torch", f"{platform.python_version()} / {torch.__version__}"),
            ("git commit", git_commit())]
    return pd.DataFrame(rows, columns=["", "value"]).set_index("")


def claims_table(inputs: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for r in inputs["vs_paper"]["claims"]:
        ours = "-" if r["ours"] is None else _num(r["ours"], r["unit"])
        if r.get("spread") is not None:
            ours += f" ± {r['spread']:.2f}"
        rows.append({"claim": r["claim"], "id": r["id"], "dataset": r["dataset"], "model": r["model"],
                     "metric": r["metric"],
                     "paper": _num(r["paper"], r["unit"]) if r["paper"] is not None else f"≤ {r['versus']}",
                     "ours": ours, "delta": "-" if r["delta"] is None else _num(r["delta"], r["unit"]),
                     "verdict": r["verdict"], "why": r["reason"]})
    return pd.DataFrame(rows)


def _num(value: float, unit: str = "") -> str:
    if unit == "%" or not float(value).is_integer():
        return f"{value:.2f}"
    return f"{int(value):,}"


def models_table(inputs: dict[str, Any]) -> pd.DataFrame:
    """Accuracy, FLOPs (dense, expected, actual) and params per run, DGC next to its baselines."""
    rows = []
    for run in inputs["runs"]:
        m = inputs["metrics"][run]
        dataset, model = run.split("-", 1)
        rows.append({"dataset": dataset, "model": model,
                     "top-1 acc best": round(m["best"]["top1_acc"], 2),
                     "top-5 acc best": round(m["best"]["top5_acc"], 2),
                     "top-1 acc final": round(m["final"]["top1_acc"], 2),
                     "FLOPs dense (M)": round(m["flops_dense"] / 1e6, 2),
                     "FLOPs expected (M)": round(m["flops_expected"] / 1e6, 2),
                     "FLOPs actual (M)": round(m["flops_actual"] / 1e6, 2),
                     "params (K)": round(m["params"] / 1e3, 1), "seeds": m.get("seeds", 1)})
    return pd.DataFrame(rows).set_index(["dataset", "model"])


def latency_table(inputs: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for run in inputs["runs"]:
        m, info = inputs["metrics"][run], inputs["info"][run]
        dataset, model = run.split("-", 1)
        for batch, ms in sorted(m["latency_ms_per_image"].items()):
            rows.append({"dataset": dataset, "model": model, "batch": int(batch.split("_")[1]),
                         "ms per image": round(ms, 3), "FLOPs expected (M)": round(m["flops_expected"] / 1e6, 2),
                         "device": info["latency_device"]})
    return pd.DataFrame(rows)


def layer_usage_table(inputs: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for run in inputs["runs"]:
        for layer in inputs["info"][run].get("layers", []):
            rows.append({"run": run, "layer": layer["name"], "C_in": layer["in_channels"],
                         "kept (schedule)": round(layer["kept_fraction"], 3),
                         "kept (measured)": round(layer["active_fraction"], 3),
                         "head overlap (Jaccard)": round(layer["head_overlap"], 3)})
    return pd.DataFrame(rows)


def figure_system(inputs: dict[str, Any]):
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for run, h in inputs["history"].items():
        for ax, key in zip(axes, ("epoch_seconds", "images_per_second", "peak_memory_mb")):
            ax.plot(h["epoch"], h[key], marker=".", label=run)
    for ax, label in zip(axes, ("epoch time (s)", "training images / s", "peak memory (MiB)")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def figure_layer_usage(inputs: dict[str, Any]):
    table = layer_usage_table(inputs)
    fig, axes = plt.subplots(1, 2, figsize=(13, 3.6))
    for run, part in table.groupby("run", sort=False):
        idx = range(len(part))
        axes[0].plot(idx, part["kept (measured)"], marker=".", label=run)
        axes[1].plot(idx, part["head overlap (Jaccard)"], marker=".", label=run)
    axes[0].set_ylabel("fraction of input channels used")
    axes[1].set_ylabel("mean pairwise overlap of heads")
    for ax in axes:
        ax.set_xlabel("DGC layer (network order)")
        ax.grid(alpha=0.3)
    if len(table):
        axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def figure_latency(inputs: dict[str, Any]):
    table = latency_table(inputs)
    batches = sorted(table["batch"].unique())
    fig, axes = plt.subplots(1, len(batches), figsize=(6 * len(batches), 3.6), squeeze=False)
    for ax, batch in zip(axes[0], batches):
        part = table[table["batch"] == batch]
        labels = [f"{d}-{m}" for d, m in zip(part["dataset"], part["model"])]
        ax.barh(labels, part["ms per image"], color=["C0" if l.endswith("_dgc") else "C7" for l in labels])
        ax.set_xlabel(f"ms per image, batch {batch} ({part['device'].iloc[0]})")
        ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def to_png(fig) -> bytes:
    """PNG bytes of a figure (no timestamp metadata: the same figure gives the same bytes); closes it."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def html_table(df: pd.DataFrame, index: bool = False) -> str:
    """A plain HTML table (no random ids, no object addresses: re-rendering gives the same bytes)."""
    return df.to_html(index=index, border=0, classes="dataframe", na_rep="-")


def bench_table(reports: str | Path = "reports") -> pd.DataFrame | None:
    """Layer timings of `dgc bench` (reports/bench.json) with the FLOPs ratio next to the time ratio;
    None when the benchmark has not been run."""
    path = Path(reports) / "bench.json"
    if not path.exists():
        return None
    bench = json.loads(path.read_text())
    rows = []
    for row in bench["layers"]:
        for mode in ("inference", "train"):
            t = row[f"{mode}_ms"]
            rows.append({"layer": row["shape"], "mode": mode, "FLOPs DGC / dense": bench["gate_factor"],
                         "dense ms": round(t["dense"], 1), "4-group ms": round(t["group4"], 1),
                         "DGC authors' (masked) ms": round(t["dgc_masked"], 1),
                         "DGC ours (auto) ms": round(t["dgc_auto"], 1),
                         "ours / dense": round(t["dgc_auto"] / t["dense"], 2),
                         "ours / 4-group": round(t["dgc_auto"] / t["group4"], 2),
                         "device": bench["device"]})
    return pd.DataFrame(rows)
