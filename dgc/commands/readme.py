"""`dgc readme`: regenerate the generated blocks of README.md and docs/ from reports/.

Each block of BLOCKS, between `<!-- NAME:start -->` and `<!-- NAME:end -->`, is rebuilt whole: README.md's
`summary`, docs/results.md's `results` and docs/speed.md's `speed` (each benchmark of dgc/bench/registry.py)."""

from __future__ import annotations

import json
from pathlib import Path

from dgc.errors import BadInput, MissingInput
from dgc.io import write_text_atomic
from dgc.measure.claims import load_metrics
from dgc.stages.compare import markdown_table, to_markdown


def _comparison_parts(reports: Path) -> tuple[str, dict[str, str]]:
    """The claims table of reports/vs_paper.json and its other sections by heading."""
    path = reports / "vs_paper.json"
    if not path.exists():
        raise MissingInput(f"{path} is missing: it is written by the `compare` stage (run `dvc repro`)")
    md = to_markdown(json.loads(path.read_text())).replace("# Our results against the paper's claims\n\n", "")
    claims_md, *others = md.split("\n## ")
    return claims_md.strip(), {part.split("\n", 1)[0]: part.strip() for part in others}


def _section(parts: dict[str, str], prefix: str, level: str) -> list[str]:
    """The first section whose heading starts with `prefix`, at heading `level`, then a blank line."""
    return next(([f"{level} {body}", ""] for heading, body in parts.items() if heading.startswith(prefix)), [])


def results_markdown(reports: str | Path = "reports") -> str:
    """docs/results.md's block: the claims, the smoke evidence, the earlier reproduction, every run."""
    reports = Path(reports)
    claims_md, parts = _comparison_parts(reports)
    lines = ["### The paper's claims (`reports/vs_paper.md`)", "", claims_md, ""]
    lines += _section(parts, "Smoke evidence", "####")
    lines += _section(parts, "The paper, the earlier reproduction", "####")
    return "\n".join(lines + runs_table(reports)) + "\n"


def summary_markdown(reports: str | Path = "reports") -> str:
    """README's block: the smoke evidence for the relation claims and every run's numbers."""
    reports = Path(reports)
    _, parts = _comparison_parts(reports)
    return "\n".join(_section(parts, "Smoke evidence", "###") + runs_table(reports)) + "\n"


def runs_table(reports: Path) -> list[str]:
    """Every run of the last `dvc repro`: a heading and one row per (dataset, model)."""
    rows = []
    for (dataset, model), m in sorted(load_metrics(reports / "metrics").items()):
        lat = m.get("latency_ms_per_image", {})
        lat_s = " / ".join(f"{v:.2f}" for _, v in sorted(lat.items(), key=lambda kv: int(kv[0].split("_")[1])))
        std = m.get("best_std", {}).get("top1_acc", 0.0)
        plateau = m.get("plateau", {})
        gain = plateau.get("late_gain")
        done = ("-" if gain is None
                else f"{'yes' if plateau.get('plateaued') else 'no'} (+{gain:.2f} in the last quarter)")
        rows.append([dataset, model, f"{m['best']['top1_acc']:.2f} ± {std:.2f} ({m.get('seeds', 1)})", done,
                     f"{m['best']['top5_acc']:.2f}", f"{m['flops_expected']:,}", f"{m['flops_actual']:,}",
                     f"{m['params']:,}", lat_s])
    return ["### Every run of the last `dvc repro` (`reports/metrics/*.json`)", "", *markdown_table(
        "dataset | model | best top-1 acc (%), mean ± std (seeds) | finished learning | top-5 acc (%) | "
        "FLOPs expected | FLOPs actual | params | latency ms/img (batch 1 / 64)", rows)]


def speed_markdown(reports: str | Path = "reports") -> str:
    """The speed section: per benchmark of dgc.bench.registry.SECTIONS with a file in `reports`, its heading
    and the Markdown its module renders from that file."""
    from dgc.bench.registry import SECTIONS

    parts = []
    for section in SECTIONS:
        if (Path(reports) / section.file).exists():
            parts += [f"### {section.title}", "", section.render(section.read(reports))]
    return "\n".join(parts) + "\n"


def _replace(text: str, start: str, end: str, body: str, name: str) -> str:
    if start not in text or end not in text:
        raise BadInput(f"{name} has no {start} ... {end} section")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}{end}{tail}"


BLOCKS = (("README.md", "summary", summary_markdown),
          ("docs/results.md", "results", results_markdown),
          ("docs/speed.md", "speed", speed_markdown))


def update_readme(root: str | Path = ".", reports: str | Path = "reports") -> list[Path]:
    """Rewrite every block of BLOCKS under `root` from `reports`; every file is checked and every block
    built before any file is written, so a missing input leaves them all as they were."""
    root = Path(root)
    texts: dict[Path, str] = {}
    for name, block, render in BLOCKS:  # one block per file
        path = root / name
        if not path.is_file():
            raise MissingInput(f"{path} does not exist")
        texts[path] = _replace(path.read_text(), f"<!-- {block}:start -->", f"<!-- {block}:end -->", render(reports),
                               str(path))
    return [write_text_atomic(path, text) for path, text in texts.items()]
