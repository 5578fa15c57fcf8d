"""The `plots` stage: the figures that matter, as PNG (no chart library from the internet needed).

- accuracy_vs_flops.png: top-1 accuracy against FLOPs, ours and the paper's points, one panel per
  dataset (a smoke run on digits never shares axes with a CIFAR number);
- training_curves.png: loss, test top-1, learning rate and inactive-channel fraction per epoch;
- inactive_schedule.png: the schedule of docs/design.md next to the fraction measured during training.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dgc.layers.pruning_schedule import inactive_channels  # noqa: E402
from dgc.measure.claims import Claim, load_metrics, metric_value  # noqa: E402
from dgc.models.registry import family  # noqa: E402

STYLE = {"dgc": dict(marker="o"), "dgcg": dict(marker="D"), "gc": dict(marker="s"),
         "dense": dict(marker="^")}
PAPER_COLORS = ("black", "dimgray", "darkred", "navy", "darkgreen")


def paper_points(claims: list[Claim], architectures: dict[str, dict[str, Any]] | None = None
                 ) -> list[dict[str, Any]]:
    """(dataset, model, FLOPs, top-1 accuracy) of every paper accuracy row; its FLOPs are the paper's
    FLOPs claim, else the counter's on the authors' configuration (reports/architecture.json)."""
    by_key: dict[tuple[str, str], dict[str, float]] = {}
    for c in claims:
        if c.value is not None:
            by_key.setdefault((c.dataset, c.model), {})[c.metric] = c.value
    points = []
    for (d, m), v in sorted(by_key.items()):
        counted = (architectures or {}).get(f"{d}-{m}", {})
        flops = v.get("flops_expected", counted.get("flops_expected"))
        if flops is not None and "best.top1_err" in v:
            points.append({"dataset": d, "model": m, "flops": flops, "top1_acc": 100 - v["best.top1_err"]})
    return points


def read_histories(history_dir: str | Path) -> dict[str, list[dict[str, float]]]:
    out = {}
    for path in sorted(Path(history_dir).glob("*.csv")):
        with open(path) as fh:
            out[path.stem] = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]
    return out


def plot_accuracy_vs_flops(metrics_dir: Path, claims: list[Claim], out: Path,
                           architectures: dict[str, dict[str, Any]] | None = None) -> Path:
    """One panel per dataset; every marker, ours or the paper's, has a legend entry and a label."""
    runs = load_metrics(metrics_dir)
    points = paper_points(claims, architectures)
    datasets = sorted({d for d, _ in runs} | {p["dataset"] for p in points})
    fig, axes = plt.subplots(1, max(len(datasets), 1), figsize=(5 * max(len(datasets), 1), 4), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        for (d, model), m in sorted(runs.items()):
            if d != dataset:
                continue
            acc = metric_value(m, "best.top1_acc")
            ax.scatter(m["flops_expected"] / 1e6, acc, label=f"ours: {model}", **STYLE[family(model)])
            ax.annotate(model, (m["flops_expected"] / 1e6, acc), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        mine = [p for p in points if p["dataset"] == dataset]
        for p, color in zip(mine, PAPER_COLORS * len(mine)):
            ax.scatter(p["flops"] / 1e6, p["top1_acc"], marker="*", s=160, color=color,
                       label=f"paper: {p['model']} ({100 - p['top1_acc']:.2f}% err)")
            ax.annotate(f"paper: {p['model']}", (p["flops"] / 1e6, p["top1_acc"]), fontsize=7,
                        xytext=(5, -9), textcoords="offset points", color=color)
        smoke = dataset not in ("cifar10", "cifar100", "imagenet")
        ax.set_title(f"{dataset}" + (" (smoke run, not comparable)" if smoke else ""))
        ax.set_xlabel("FLOPs, millions of multiply-adds (paper convention)")
        ax.set_ylabel("best top-1 accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out / "accuracy_vs_flops.png")


def plot_training_curves(history_dir: Path, out: Path) -> Path:
    histories = read_histories(history_dir)
    panels = [("train_loss", "training loss"), ("test_top1", "test top-1 (%)"),
              ("lr", "learning rate"), ("inactive_fraction", "inactive input channels (fraction)")]
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    for ax, (key, label) in zip(axes.flat, panels):
        for name, rows in histories.items():
            for seed in sorted({r["seed"] for r in rows}):
                mine = [r for r in rows if r["seed"] == seed]
                ax.plot([r["epoch"] for r in mine], [r[key] for r in mine],
                        label=name + (f" seed {int(seed)}" if seed else ""))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes.flat[1].legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out / "training_curves.png")


def plot_schedule(history_dir: Path, out: Path, gate_factors: dict[str, float]) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    ps = [i / 400 for i in range(401)]
    for g in sorted(set(gate_factors.values())):
        ax.plot(ps, [inactive_channels(1000, g, p) / 1000 for p in ps], "--",
                label=f"schedule, g = {g:g}")
    for name, rows in read_histories(history_dir).items():
        if name.split("-", 1)[-1] in gate_factors:
            ax.plot([r["progress"] for r in rows], [r["inactive_fraction"] for r in rows], "o",
                    ms=3, label=f"measured: {name}")
    ax.set_xlabel("training progress p")
    ax.set_ylabel("inactive fraction of input channels")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, out / "inactive_schedule.png")


def _save(fig, path: Path) -> Path:
    from dgc.io import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    # Fixed metadata: the same inputs give the same bytes.
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, metadata={"Software": None}))
    plt.close(fig)
    return path


def make_plots(metrics_dir: str | Path, history_dir: str | Path, claims: list[Claim],
               out_dir: str | Path, gate_factors: dict[str, float],
               architectures: dict[str, dict[str, Any]] | None = None) -> list[Path]:
    out = Path(out_dir)
    return [plot_accuracy_vs_flops(Path(metrics_dir), claims, out, architectures),
            plot_training_curves(Path(history_dir), out),
            plot_schedule(Path(history_dir), out, gate_factors)]
