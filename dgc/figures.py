"""How every figure of the pages draws: one colour per model on every page, a mean line with a band
over the seeds (never joining one seed's last epoch to the next seed's first), legends outside the data.
Figures are at most 11 inches wide at 100 dpi: a 1280 px page shows them at their own size.
"""

from __future__ import annotations

import io
from typing import Any, Iterable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from dgc.model_names import family  # noqa: E402

DPI = 100
PAGE_WIDTH = 11.0  # inches: 1100 px at DPI
FONT = 9

# One colour per model, the same on every figure: DenseNet in blue / purple / red / grey by family,
# ResNet-18 and MobileNetV2 in the other colours of matplotlib's default cycle.
MODEL_COLOUR = {
    "densenet86_dgc": "C0", "densenet86_dgcg": "C4", "densenet86_gc": "C3", "densenet86": "C7",
    "resnet18_dgc": "C9", "resnet18_gc": "C1", "resnet18": "C5",
    "mobilenetv2_dgc": "C2", "mobilenetv2_gc": "C6", "mobilenetv2": "C8",
    "condensenet74_dgc": "black", "condensenet74_dgcg": "dimgray",
}
FAMILY_MARKER = {"dgc": "o", "dgcg": "D", "gc": "s", "dense": "^"}
FAMILY_LINE = {"dgc": "-", "dgcg": "--", "gc": "-", "dense": "-"}  # DGC-G dashed: it prunes as DGC does
FAMILY_LABEL = {"dgc": "DGC", "dgcg": "DGC-G", "gc": "static group conv", "dense": "dense"}

plt.rcParams.update({"font.size": FONT, "axes.titlesize": FONT + 1, "axes.labelsize": FONT,
                     "legend.fontsize": FONT - 0.5, "xtick.labelsize": FONT - 0.5,
                     "ytick.labelsize": FONT - 0.5})


def model_of(run: str) -> str:
    """'digits-densenet86_dgc' -> 'densenet86_dgc' (a bare model name is returned as it is)."""
    return run.split("-", 1)[1] if "-" in run else run


def colour(run_or_model: str) -> str:
    """The model's colour (a run name gives its model's); an unknown model gets a neutral one."""
    return MODEL_COLOUR.get(model_of(run_or_model), "tab:olive")


def marker(run_or_model: str) -> str:
    return FAMILY_MARKER[family(model_of(run_or_model))]


def linestyle(run_or_model: str) -> str:
    return FAMILY_LINE[family(model_of(run_or_model))]


def label(run_or_model: str) -> str:
    """'densenet86_dgc (DGC)': the model and what it is."""
    model = model_of(run_or_model)
    return f"{model} ({FAMILY_LABEL[family(model)]})"


def figure(rows: int = 1, cols: int = 1, height: float = 3.4, width: float = PAGE_WIDTH, **kwargs):
    """(figure, 2-d axes) of rows x cols panels at page width, in constrained layout (room for outside legends)."""
    return plt.subplots(rows, cols, figsize=(width, height * rows), squeeze=False, layout="constrained", **kwargs)


def by_seed(rows: Sequence[Mapping[str, float]], x: str, y: str) -> dict[float, list[float]]:
    """{x: [y of each seed]} of history rows: one seed's values are never joined to another's."""
    out: dict[float, list[float]] = {}
    for r in rows:
        out.setdefault(r[x], []).append(r[y])
    return out


def mean_band(ax, rows: Sequence[Mapping[str, float]], x: str, y: str, colour_: str, label_: str,
              **line) -> None:
    """The mean over seeds of `y` per `x` as a line, the seeds' range (min to max) as a band around it."""
    points = sorted(by_seed(rows, x, y).items())
    if not points:
        return
    xs = [p[0] for p in points]
    means = [sum(v) / len(v) for _, v in points]
    ax.plot(xs, means, color=colour_, label=label_, **line)
    if max(len(v) for _, v in points) > 1:
        ax.fill_between(xs, [min(v) for _, v in points], [max(v) for _, v in points], color=colour_,
                        alpha=0.18, linewidth=0)


def legend_below(fig, axes: Iterable[Any], ncol: int = 4, title: str | None = None) -> None:
    """One legend for the whole figure under its panels (outside every axes), each label once."""
    first: dict[str, Any] = {}  # label -> its first handle
    for ax in axes:
        for h, text in zip(*ax.get_legend_handles_labels()):
            first.setdefault(text, h)
    if first:
        fig.legend(list(first.values()), list(first), loc="outside lower center", ncol=min(ncol, len(first)),
                   frameon=False, title=title)


def legend_right(ax, title: str | None = None) -> None:
    """The axes' legend to its right, outside the data."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, title=title)


def png_bytes(fig) -> bytes:
    """PNG bytes of a figure (no timestamp metadata: the same figure gives the same bytes); closes it."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()
