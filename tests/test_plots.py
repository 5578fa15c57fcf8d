"""The figures do not mislead: one line per model (the mean over its seeds, never one seed's last
epoch joined to the next seed's first), one colour per model, legends outside the data, error bars
where a point is a mean, datasets that were not run left out and named."""

from __future__ import annotations

import csv

import matplotlib.colors as mcolors
import pytest

from dgc import figures
from dgc.stages import plots

MODELS = ("densenet86_dgc", "densenet86_dgcg", "densenet86_gc", "densenet86")


def history(model: str, seeds=(0, 1, 2), epochs=5):
    dgc = model.endswith(("_dgc", "_dgcg"))
    return [{"seed": float(s), "epoch": float(e), "lr": 0.1 / e, "progress": e / epochs,
             "inactive_fraction": 0.1 * e if dgc else 0.0, "train_loss": 1.0 / e + s, "test_top1": 50.0 + e + s,
             "epoch_seconds": 1.0 + s, "images_per_second": 100.0, "peak_memory_mb": 500.0}
            for s in seeds for e in range(1, epochs + 1)]


def test_curves_draw_one_line_per_model_with_a_band_and_nothing_joins_seeds():
    fig = plots.curves_figure({f"digits-{m}": history(m) for m in MODELS})
    test_top1 = fig.axes[1]
    lines = test_top1.get_lines()
    assert len(lines) == len(MODELS)  # not 12 seed lines
    for line in lines:
        xs = list(line.get_xdata())
        assert xs == sorted(set(xs))  # epochs only go forward
    # the mean of seeds 0, 1, 2 (test_top1 = 50 + epoch + seed) and a band from seed 0 to seed 2
    assert list(lines[0].get_ydata()) == pytest.approx([51 + e for e in range(1, 6)])
    assert len(test_top1.collections) == len(MODELS)
    assert len({mcolors.to_hex(line.get_color()) for line in lines}) == len(MODELS)
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1  # under the panels
    inactive = fig.axes[3]
    assert len(inactive.get_lines()) == 2  # only the models that prune
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel()


def test_a_model_has_the_same_colour_on_every_figure():
    assert figures.colour("digits-densenet86_dgc") == figures.colour("densenet86_dgc") == "C0"
    assert len(set(figures.MODEL_COLOUR.values())) == len(figures.MODEL_COLOUR)


def metrics(top1: float, std: float | None, seeds: int, flops: int) -> dict:
    m = {"best": {"top1_acc": top1, "top1_err": 100 - top1}, "seeds": seeds, "flops_expected": flops}
    if std is not None:
        m["best_std"] = {"top1_acc": std}
    return m


def test_accuracy_panels_only_for_trained_datasets_with_error_bars_for_means():
    runs = {("digits", "densenet86_dgc"): metrics(96.2, 1.05, 3, 385_086),
            ("digits", "densenet86"): metrics(99.3, None, 1, 554_378),
            ("cifar10", "densenet86_dgc"): metrics(95.0, 0.2, 3, 71_037_118)}
    points = [{"dataset": d, "model": "densenet86_dgc", "flops": 71_037_118, "top1_acc": 95.23}
              for d in ("cifar10", "cifar100", "imagenet")]
    fig = plots.accuracy_figure(runs, points)
    shown = [ax for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert sorted(ax.get_title().split(" ")[0] for ax in shown) == ["cifar10", "digits"]
    assert "cifar100, imagenet" in fig._suptitle.get_text()
    digits = next(ax for ax in shown if ax.get_title().startswith("digits"))
    bars = {c.get_label(): c for c in digits.containers}
    dgc = next(c for label, c in bars.items() if label.startswith("densenet86_dgc"))
    dense = next(c for label, c in bars.items() if label.startswith("densenet86 "))
    assert dgc.has_yerr and not dense.has_yerr  # one seed: no bar
    cifar = next(ax for ax in shown if ax.get_title().startswith("cifar10"))
    assert any(line.get_label().startswith("paper: densenet86_dgc") for line in cifar.get_lines())
    assert not any(line.get_label().startswith("paper") for line in digits.get_lines())


def test_mean_curves_for_dvc_plots(tmp_path):
    folder = tmp_path / "history"
    folder.mkdir()
    rows = history("densenet86_dgc", epochs=2)
    with open(folder / "digits-densenet86_dgc.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (path,) = plots.write_curves(folder, tmp_path / "curves")
    with open(path) as fh:
        got = list(csv.DictReader(fh))
    assert [(r["epoch"], r["seeds"], r["test_top1_mean"], r["test_top1_min"], r["test_top1_max"]) for r in got] == [
        ("1", "3", "52.0000", "51.0000", "53.0000"), ("2", "3", "53.0000", "52.0000", "54.0000")]
