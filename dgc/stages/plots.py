"""The `plots` stage: the report's figures as PNG, and the curves `dvc plots show` draws.

- accuracy_vs_flops.png: best top-1 (mean ± std over seeds) against FLOPs, a panel per trained dataset
  with the paper's points for it; datasets not run are named in the title, not drawn empty;
- training_curves.png, system.png: per epoch, each model's mean over seeds with the seeds' range as a band;
- inactive_schedule.png: the schedule of docs/design.md next to the fraction measured in training;
- reports/curves/<run>.csv: per epoch the mean, min and max test top-1 over seeds, the mean training loss.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from dgc import figures
from dgc.figures import colour, label, linestyle, marker, mean_band
from dgc.io import write_atomic, write_text_atomic
from dgc.layers.pruning_schedule import inactive_channels
from dgc.measure.claims import Claim, load_metrics, metric_value

PAPER_DATASETS = ("cifar10", "cifar100", "imagenet")
CURVE_COLUMNS = ("epoch", "seeds", "test_top1_mean", "test_top1_min", "test_top1_max", "train_loss_mean")


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
    """{run: its rows of <history_dir>/<run>.csv, every value a float}."""
    return {path.stem: [{k: float(v) for k, v in row.items()} for row in csv.DictReader(path.read_text().splitlines())]
            for path in sorted(Path(history_dir).glob("*.csv"))}


def accuracy_figure(runs: dict[tuple[str, str], dict[str, Any]], points: list[dict[str, Any]]):
    """A panel per trained dataset, two a row: ours with the seeds' std as error bars, the paper's as stars."""
    datasets = sorted({d for d, _ in runs})
    not_run = sorted({p["dataset"] for p in points} - set(datasets))
    cols = 2 if len(datasets) > 1 else 1
    rows = max(1, -(-len(datasets) // cols))
    fig, axes = figures.figure(rows, cols, height=3.8, width=figures.PAGE_WIDTH if cols > 1 else 8.5)
    for ax in axes.flat[len(datasets):]:
        ax.set_visible(False)
    for ax, dataset in zip(axes.flat, datasets):
        for (_, model), m in sorted(r for r in runs.items() if r[0][0] == dataset):
            std = (m.get("best_std") or {}).get("top1_acc")
            seeds = int(m.get("seeds", 1))
            ax.errorbar(m["flops_expected"] / 1e6, metric_value(m, "best.top1_acc"),
                        yerr=std if std is not None and seeds > 1 else None, marker=marker(model),
                        markersize=7, capsize=4, linestyle="none", color=colour(model),
                        label=f"{label(model)}, {seeds} seed{'s' if seeds > 1 else ''}")
        for p in (p for p in points if p["dataset"] == dataset):
            ax.plot(p["flops"] / 1e6, p["top1_acc"], marker="*", markersize=13, linestyle="none",
                    color=colour(p["model"]), markeredgecolor="black",
                    label=f"paper: {p['model']}" + (f" ({100 - p['top1_acc']:.2f} % error)" if cols == 1 else ""))
        smoke = dataset not in PAPER_DATASETS
        ax.set_title(dataset + (" (smoke run: not comparable with the paper)" if smoke else ""))
        ax.set_xlabel("FLOPs (millions of multiply-adds, the paper's convention)")
        ax.set_ylabel("best top-1 accuracy (%)")
        ax.grid(alpha=0.3)
        ax.margins(x=0.15, y=0.15)
        if cols == 1:
            figures.legend_right(ax, title="ours: mean ± std over seeds")
    if cols > 1:
        figures.legend_below(fig, axes.flat, ncol=3, title="ours: mean ± std over seeds; stars: the paper")
    if not_run:
        fig.suptitle(f"Not run in this profile: {', '.join(not_run)} (the paper's numbers for them are in "
                     f"the claims table)", fontsize=figures.FONT, color="dimgray")
    return fig


def _epoch_figure(histories: dict[str, list[dict[str, float]]], panels: list[tuple[str, str]], rows: int,
                  height: float, ncol: int, title: str | None = None):
    """Panels of (history column, axis label) per epoch: each model's mean and seeds' band (inactive: pruning ones)."""
    fig, axes = figures.figure(rows, len(panels) // rows, height=height)
    for ax, (key, text) in zip(axes.flat, panels):
        for run, history in histories.items():
            if key == "inactive_fraction" and not any(r[key] for r in history):
                continue
            n = len({r["seed"] for r in history})
            mean_band(ax, history, "epoch", key, colour(run), f"{label(run)}, {n} seed{'s' if n > 1 else ''}",
                      linestyle=linestyle(run))
        ax.set_xlabel("epoch")
        ax.set_ylabel(text)
        ax.grid(alpha=0.3)
    if title:
        axes.flat[-1].set_title(title)
    figures.legend_below(fig, axes.flat, ncol=ncol, title="mean over seeds; band: range of the seeds")
    return fig


def curves_figure(histories: dict[str, list[dict[str, float]]]):
    """Training loss, test top-1, learning rate and inactive-channel fraction per epoch."""
    return _epoch_figure(histories, [("train_loss", "training loss (cross-entropy)"),
                                     ("test_top1", "test top-1 accuracy (%)"), ("lr", "learning rate"),
                                     ("inactive_fraction", "inactive input channels (fraction)")],
                         rows=2, height=3.0, ncol=2, title="models that prune (DGC, DGC-G)")


def system_figure(histories: dict[str, list[dict[str, float]]]):
    """Epoch time, training images per second and peak memory per epoch, per model."""
    return _epoch_figure(histories, [("epoch_seconds", "epoch time (s)"),
                                     ("images_per_second", "training throughput (images / s)"),
                                     ("peak_memory_mb", "peak memory (MiB)")], rows=1, height=3.2, ncol=4)


def schedule_figure(histories: dict[str, list[dict[str, float]]], gate_factors: dict[str, float]):
    """The inactive-channel schedule of each gate factor next to the fraction measured in training."""
    fig, axes = figures.figure(1, 1, height=3.6, width=8.5)
    ax = axes[0, 0]
    ps = [i / 400 for i in range(401)]
    for g in sorted(set(gate_factors.values())):
        ax.plot(ps, [inactive_channels(1000, g, p) / 1000 for p in ps], "--", color="black",
                label=f"schedule, g = {g:g}")
    for run, rows in histories.items():
        if run.split("-", 1)[-1] in gate_factors:
            mine = [r for r in rows if r["seed"] == min(r["seed"] for r in rows)]  # the same in every seed
            ax.plot([r["progress"] for r in mine], [r["inactive_fraction"] for r in mine], marker(run),
                    ms=4, color=colour(run), linestyle="none", label=f"measured: {label(run)}")
    ax.set_xlabel("training progress p (fraction of all iterations)")
    ax.set_ylabel("inactive input channels (fraction)")
    ax.grid(alpha=0.3)
    figures.legend_right(ax)
    return fig


def write_curves(history_dir: Path, folder: Path) -> list[Path]:
    """Per run, <folder>/<run>.csv (the data of `dvc plots show`): CURVE_COLUMNS per epoch over the seeds."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for run, rows in read_histories(history_dir).items():
        top1 = figures.by_seed(rows, "epoch", "test_top1")
        loss = figures.by_seed(rows, "epoch", "train_loss")
        lines = [",".join(CURVE_COLUMNS)] + [
            f"{int(e)},{len(v)},{sum(v) / len(v):.4f},{min(v):.4f},{max(v):.4f},{sum(loss[e]) / len(loss[e]):.6f}"
            for e, v in sorted(top1.items())]
        paths.append(write_text_atomic(folder / f"{run}.csv", "\n".join(lines) + "\n"))
    return paths


def make_plots(metrics_dir: str | Path, history_dir: str | Path, claims: list[Claim],
               out_dir: str | Path, gate_factors: dict[str, float],
               architectures: dict[str, dict[str, Any]] | None = None,
               curves_dir: str | Path | None = None) -> list[Path]:
    """Every figure under `out_dir`, the mean curves under `curves_dir` (default: beside out_dir)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    histories = read_histories(history_dir)
    return [_save(accuracy_figure(load_metrics(metrics_dir), paper_points(claims, architectures)),
                  out / "accuracy_vs_flops.png"),
            _save(curves_figure(histories), out / "training_curves.png"),
            _save(schedule_figure(histories, gate_factors), out / "inactive_schedule.png"),
            _save(system_figure(histories), out / "system.png"),
            *write_curves(Path(history_dir), Path(curves_dir) if curves_dir else out.parent / "curves")]


def _save(fig, path: Path) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_bytes(figures.png_bytes(fig)))
