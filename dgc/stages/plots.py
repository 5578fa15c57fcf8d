"""The `plots` stage: the figures that matter, as PNG (no chart library from the internet needed),
and the curves `dvc plots show` draws.

- accuracy_vs_flops.png: best top-1 accuracy (mean ± std over seeds) against FLOPs, one panel per
  dataset this run trained, with the paper's points for that dataset (a smoke run on digits never
  shares axes with a CIFAR number); datasets not run are named in the title, not drawn empty;
- training_curves.png: training loss, test top-1, learning rate and inactive-channel fraction per
  epoch, each model's mean over seeds with the range of its seeds as a band;
- inactive_schedule.png: the schedule of docs/design.md next to the fraction measured in training;
- system.png: epoch time, training throughput and peak memory per epoch (mean and seed band);
- reports/curves/<dataset>-<model>.csv: per epoch the mean, min and max over seeds of test top-1 and the
  mean training loss (what `dvc plots show` draws: one line per run, seeds never joined).

Colours, bands and legends come from dgc.figures, which the report and the study pages share.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from dgc import figures
from dgc.figures import colour, label, linestyle, marker, mean_band
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
    out = {}
    for path in sorted(Path(history_dir).glob("*.csv")):
        with open(path) as fh:
            out[path.stem] = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]
    return out


def plot_accuracy_vs_flops(metrics_dir: Path, claims: list[Claim], out: Path,
                           architectures: dict[str, dict[str, Any]] | None = None) -> Path:
    fig = accuracy_figure(load_metrics(metrics_dir), paper_points(claims, architectures))
    return _save(fig, out / "accuracy_vs_flops.png")


def accuracy_figure(runs: dict[tuple[str, str], dict[str, Any]], points: list[dict[str, Any]]):
    """One panel per dataset that was trained, two panels a row; our points with the seeds' std as
    error bars, the paper's (stars) in the same colour as our model of the same name."""
    datasets = sorted({d for d, _ in runs})
    not_run = sorted({p["dataset"] for p in points} - set(datasets))
    cols = 2 if len(datasets) > 1 else 1
    rows = max(1, -(-len(datasets) // cols))
    fig, axes = figures.figure(rows, cols, height=3.8, width=figures.PAGE_WIDTH if cols > 1 else 8.5)
    for ax in axes.flat[len(datasets):]:
        ax.set_visible(False)
    for ax, dataset in zip(axes.flat, datasets):
        for (d, model), m in sorted(runs.items()):
            if d != dataset:
                continue
            std = (m.get("best_std") or {}).get("top1_acc")
            seeds = int(m.get("seeds", 1))
            ax.errorbar(m["flops_expected"] / 1e6, metric_value(m, "best.top1_acc"),
                        yerr=std if std is not None and seeds > 1 else None, marker=marker(model),
                        markersize=7, capsize=4, linestyle="none", color=colour(model),
                        label=f"{label(model)}, {seeds} seed{'s' if seeds > 1 else ''}")
        for p in points:
            if p["dataset"] == dataset:
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


def plot_training_curves(history_dir: Path, out: Path) -> Path:
    return _save(curves_figure(read_histories(history_dir)), out / "training_curves.png")


def curves_figure(histories: dict[str, list[dict[str, float]]]):
    """Four panels, one line per model (mean over seeds) with the range of its seeds as a band; the
    inactive-channel panel shows the models that prune."""
    panels = [("train_loss", "training loss (cross-entropy)"), ("test_top1", "test top-1 accuracy (%)"),
              ("lr", "learning rate"), ("inactive_fraction", "inactive input channels (fraction)")]
    fig, axes = figures.figure(2, 2, height=3.0)
    for ax, (key, text) in zip(axes.flat, panels):
        for run, rows in histories.items():
            if key == "inactive_fraction" and not any(r[key] for r in rows):
                continue
            mean_band(ax, rows, "epoch", key, colour(run), _run_label(run, rows), linestyle=linestyle(run))
        ax.set_xlabel("epoch")
        ax.set_ylabel(text)
        ax.grid(alpha=0.3)
    axes[1, 1].set_title("models that prune (DGC, DGC-G)")
    figures.legend_below(fig, axes.flat, ncol=2, title="mean over seeds; band: range of the seeds")
    return fig


def plot_schedule(history_dir: Path, out: Path, gate_factors: dict[str, float]) -> Path:
    fig, axes = figures.figure(1, 1, height=3.6, width=8.5)
    ax = axes[0, 0]
    ps = [i / 400 for i in range(401)]
    for g in sorted(set(gate_factors.values())):
        ax.plot(ps, [inactive_channels(1000, g, p) / 1000 for p in ps], "--", color="black",
                label=f"schedule, g = {g:g}")
    for run, rows in read_histories(history_dir).items():
        if run.split("-", 1)[-1] in gate_factors:
            mine = [r for r in rows if r["seed"] == min(r["seed"] for r in rows)]  # the same in every seed
            ax.plot([r["progress"] for r in mine], [r["inactive_fraction"] for r in mine], marker(run),
                    ms=4, color=colour(run), linestyle="none", label=f"measured: {label(run)}")
    ax.set_xlabel("training progress p (fraction of all iterations)")
    ax.set_ylabel("inactive input channels (fraction)")
    ax.grid(alpha=0.3)
    figures.legend_right(ax)
    return _save(fig, out / "inactive_schedule.png")


def plot_system(history_dir: Path, out: Path) -> Path:
    """Epoch time, training images per second and peak memory per epoch, per model."""
    histories = read_histories(history_dir)
    fig, axes = figures.figure(1, 3, height=3.2)
    for ax, (key, text) in zip(axes[0], (("epoch_seconds", "epoch time (s)"),
                                         ("images_per_second", "training throughput (images / s)"),
                                         ("peak_memory_mb", "peak memory (MiB)"))):
        for run, rows in histories.items():
            mean_band(ax, rows, "epoch", key, colour(run), _run_label(run, rows), linestyle=linestyle(run))
        ax.set_xlabel("epoch")
        ax.set_ylabel(text)
        ax.grid(alpha=0.3)
    figures.legend_below(fig, axes[0], ncol=4, title="mean over seeds; band: range of the seeds")
    return _save(fig, out / "system.png")


def write_curves(history_dir: Path, folder: Path) -> list[Path]:
    """Per run, <folder>/<run>.csv (reports/curves/): per epoch the mean, min and max test top-1
    over the seeds and the mean training loss (the data of `dvc plots show`)."""
    from dgc.io import write_text_atomic

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for run, rows in read_histories(history_dir).items():
        top1 = figures.by_seed(rows, "epoch", "test_top1")
        loss = figures.by_seed(rows, "epoch", "train_loss")
        lines = [",".join(CURVE_COLUMNS)]
        for epoch in sorted(top1):
            v = top1[epoch]
            lines.append(",".join([f"{int(epoch)}", f"{len(v)}", f"{sum(v) / len(v):.4f}", f"{min(v):.4f}",
                                   f"{max(v):.4f}", f"{sum(loss[epoch]) / len(loss[epoch]):.6f}"]))
        paths.append(write_text_atomic(folder / f"{run}.csv", "\n".join(lines) + "\n"))
    return paths


def _run_label(run: str, rows: list[dict[str, float]]) -> str:
    n = figures.seed_count(rows)
    return f"{label(run)}, {n} seed{'s' if n > 1 else ''}"


def _save(fig, path: Path) -> Path:
    from dgc.io import write_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    # Fixed metadata: the same inputs give the same bytes.
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=figures.DPI, metadata={"Software": None}))
    figures.plt.close(fig)
    return path


def make_plots(metrics_dir: str | Path, history_dir: str | Path, claims: list[Claim],
               out_dir: str | Path, gate_factors: dict[str, float],
               architectures: dict[str, dict[str, Any]] | None = None,
               curves_dir: str | Path | None = None) -> list[Path]:
    """Every figure under `out_dir`, the mean curves under `curves_dir` (default: beside out_dir)."""
    out = Path(out_dir)
    return [plot_accuracy_vs_flops(Path(metrics_dir), claims, out, architectures),
            plot_training_curves(Path(history_dir), out),
            plot_schedule(Path(history_dir), out, gate_factors),
            plot_system(Path(history_dir), out),
            *write_curves(Path(history_dir), Path(curves_dir) if curves_dir else out.parent / "curves")]

