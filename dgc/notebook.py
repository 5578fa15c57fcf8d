"""Tables and figures of the report notebooks. The notebooks only call these; they read the
pipeline's outputs and compute nothing of their own.

Every loader names the stage that produces a missing input (`ReportInputError`).
"""

from __future__ import annotations

import csv
import json
import platform
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from dgc.errors import MissingInput  # noqa: E402
from dgc.measure.provenance import git_commit  # noqa: E402
from dgc.models.registry import family  # noqa: E402

PRODUCER = {"metrics": "evaluate", "info": "evaluate", "history": "train", "vs_paper": "compare",
            "figures": "plots", "bench": "bench"}


# The report's sections in order: headings and cross-references are generated from this list, so a
# new section renumbers every reference.
SECTIONS = (
    ("scope", "Scope and set-up"),
    ("claims", "Claims"),
    ("scope_of_evidence", "What this run can and cannot say"),
    ("plateau", "Did every run finish learning?"),
    ("models", "Method: accuracy, FLOPs and parameters of every model"),
    ("accuracy_flops", "Results: accuracy against FLOPs"),
    ("curves", "Training and test curves, system figures"),
    ("heads", "What the heads do (and where DGC-G prunes)"),
    ("latency", "Inference latency (measured, not FLOPs)"),
    ("bench", "Layer benchmark: wall-clock time against the FLOPs ratio"),
)


def section_number(key: str) -> int:
    keys = [k for k, _ in SECTIONS]
    if key not in keys:
        raise KeyError(f"no report section {key!r}; sections: {', '.join(keys)}")
    return keys.index(key) + 1


def heading(key: str) -> str:
    """The Markdown heading of section `key`, numbered by its place in SECTIONS."""
    return f"## {section_number(key)}. {dict(SECTIONS)[key]}"


def ref(key: str) -> str:
    """A cross-reference to section `key`: 'section N'."""
    return f"section {section_number(key)}"


class ReportInputError(MissingInput):
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


def summary_table(inputs: dict[str, Any], profile: str) -> pd.DataFrame:
    """Profile, hardware, training time, versions and commit."""
    import torch

    info = next(iter(inputs["info"].values()), {})
    train_s = sum(h["epoch_seconds"].sum() for h in inputs["history"].values())
    epochs = {int(h["epoch"].max()) for h in inputs["history"].values() if len(h)}
    rows = [("profile", profile + (" (offline smoke run: not comparable with the paper)" if profile.startswith("smoke") else "")),
            ("runs", f"{len(inputs['runs'])} ({', '.join(inputs['runs'])})"),
            ("epochs per run", ", ".join(str(e) for e in sorted(epochs))),
            ("training time, all runs", f"{train_s / 60:.1f} min (sum of epoch times)"),
            ("training device and precision", training_runtime(inputs)),
            ("evaluation device", info.get("latency_device", "-")),
            ("python / torch", f"{platform.python_version()} / {torch.__version__}"),
            ("git commit", git_commit())]
    return pd.DataFrame(rows, columns=["", "value"]).set_index("")


def training_runtime(inputs: dict[str, Any]) -> str:
    """How the runs trained (device, precision, memory layout, torch.compile), from reports/info."""
    seen = sorted({", ".join(f"{k} {v}" for k, v in info["runtime"].items())
                   for info in inputs["info"].values() if info.get("runtime")})
    return "; ".join(seen) or "-"


def can_and_cannot_say(inputs: dict[str, Any], profile: str) -> str:
    """A generated paragraph: which of the paper's claims this run tests, and what the smoke runs
    show of the relation claims (labelled as smoke evidence, never as a verdict on the paper)."""
    result = inputs["vs_paper"]
    rows = result["claims"]
    tested = [r for r in rows if r["verdict"] in ("reproduced", "not reproduced")]
    by_kind = lambda kind: [r for r in tested if r["kind"] == kind]  # noqa: E731
    untested = sorted({r["dataset"] for r in rows if r["verdict"] == "not run"})
    parts = [f"This is the **{profile}** profile. It tested {len(tested)} of the paper's {len(rows)} "
             f"claims: {len(by_kind('architecture'))} FLOPs/parameter counts (no training needed), "
             f"{len(by_kind('accuracy'))} accuracy numbers and {len(by_kind('relation'))} relations "
             f"between our own runs of the paper's recipe."]
    if untested:
        parts.append(f"Claims on {', '.join(untested)} stay *not run*: this run trained no such "
                     f"model with the paper's recipe, and nothing here is evidence for or against them.")
    unverified = [r for r in rows if r["verdict"] == "not verified"]
    if unverified:
        parts.append(f"{len(unverified)} claim(s) are *not verified*: the paper's number is not known "
                     f"here ({', '.join(r['id'] for r in unverified)}).")
    finished = [r for r, m in inputs["metrics"].items() if m.get("plateau", {}).get("plateaued")]
    unfinished = sorted(set(inputs["metrics"]) - set(finished))
    parts.append(f"{len(finished)} of {len(inputs['metrics'])} runs finished learning by the plateau "
                 f"criterion (the last quarter of the epochs raised the best test top-1 by at most "
                 f"1 point, in every seed; {ref('plateau')})"
                 + (f"; not finished: {', '.join(unfinished)}, whose numbers are not final." if unfinished
                    else "."))
    evidence = result.get("smoke_evidence") or []
    if evidence:
        items = [f"{r['model']} vs {r['versus']}: {r['delta']:+.2f} points of {r['metric']} "
                 f"(mean of {r['seeds']} vs {r['baseline_seeds']} seeds: **{r['verdict']}** at "
                 f"tolerance {r['tolerance']:g}; {r['why']})" for r in evidence]
        parts.append("Smoke evidence for the relation claims, on the offline digits runs with narrow "
                     "models, which are not the paper's setting and decide none of its claims. A "
                     "relation holds or does not hold only when the difference of the means clears "
                     "two standard errors of the seeds; otherwise it is inconclusive: "
                     + "; ".join(items) + ".")
    parts.append("How accuracy and the gaps between DGC, its static group conv and its dense baseline "
                 "move with the training budget (10, 30, 60 epochs, 3 seeds, the three families, and DGC "
                 "with gates but no pruning) is measured by the training-budget study: "
                 "[reports/budget.html](budget.html) (`dgc budget`, docs/ablations.md).")
    parts.append("Numbers differ in their last digits between CPU models and thread counts (oneDNN "
                 "picks other kernels); the verdicts and the means within their spread are what "
                 "carries over (docs/results.md, *Same verdicts on any CPU*).")
    return " ".join(parts)


def plateau_table(inputs: dict[str, Any]) -> pd.DataFrame:
    """Per run: seeds, the largest last-quarter gain over its seeds and whether all seeds plateaued."""
    rows = []
    for run in inputs["runs"]:
        m = inputs["metrics"][run]
        p = m.get("plateau", {})
        gain = p.get("late_gain")
        rows.append({"run": run, "seeds": m.get("seeds", 1),
                     "epochs": int(inputs["history"][run]["epoch"].max()) if run in inputs["history"] else None,
                     "best top-1 (%)": round(m["best"]["top1_acc"], 2),
                     "± std": round(m.get("best_std", {}).get("top1_acc", 0.0), 2),
                     "last-quarter gain (points, worst seed)": None if gain is None else round(gain, 2),
                     "finished learning": "yes" if p.get("plateaued") else "no"})
    return pd.DataFrame(rows)


def claims_table(inputs: dict[str, Any]) -> pd.DataFrame:
    rows = []
    for r in inputs["vs_paper"]["claims"]:
        ours = "-" if r["ours"] is None else _num(r["ours"], r["unit"])
        if r.get("spread") is not None:
            ours += f" ± {r['spread']:.2f}"
        rows.append({"claim": r["claim"], "id": r["id"], "dataset": r["dataset"], "model": r["model"],
                     "metric": r["metric"],
                     "paper": (_num(r["paper"], r["unit"]) if r["paper"] is not None
                               else f"≤ {r['versus']}" if r["versus"] else "unknown"),
                     "earlier reproduction": "-" if r.get("earlier") is None else _num(r["earlier"], r["unit"]),
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
                         "selected": round(layer["kept_fraction"], 3),
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
        ax.barh(labels, part["ms per image"],
                color=["C0" if family(l) in ("dgc", "dgcg") else "C7" for l in labels])
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
