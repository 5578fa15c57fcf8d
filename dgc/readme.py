"""`dgc readme`: regenerate README's results section from the pipeline's outputs.

The text between `<!-- results:start -->` and `<!-- results:end -->` is replaced by tables built
from reports/vs_paper.json and reports/metrics/*.json; nothing in it is typed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

from dgc.compare import load_metrics, to_markdown
from dgc.io import write_text_atomic

START, END = "<!-- results:start -->", "<!-- results:end -->"


def results_markdown(reports: str | Path = "reports") -> str:
    reports = Path(reports)
    comparison = json.loads((reports / "vs_paper.json").read_text())
    claims_md = to_markdown(comparison).split("\n## ")[0].replace("# Our results against the paper's claims\n\n", "")
    lines = ["### The paper's claims (`reports/vs_paper.md`)", "", claims_md.strip(), "",
             "### Every run of the last `dvc repro` (`reports/metrics/*.json`)", "",
             "| dataset | model | best top-1 acc (%) | top-5 acc (%) | FLOPs expected | FLOPs actual | "
             "params | latency ms/img (batch 1 / 64) |", "|---|---|---|---|---|---|---|---|"]
    for (dataset, model), m in sorted(load_metrics(reports / "metrics").items()):
        lat = m.get("latency_ms_per_image", {})
        lat_s = " / ".join(f"{v:.2f}" for _, v in sorted(lat.items(), key=lambda kv: int(kv[0].split("_")[1])))
        lines.append(f"| {dataset} | {model} | {m['best']['top1_acc']:.2f} | {m['best']['top5_acc']:.2f} | "
                     f"{m['flops_expected']:,} | {m['flops_actual']:,} | {m['params']:,} | {lat_s} |")
    return "\n".join(lines) + "\n"


def update_readme(readme: str | Path = "README.md", reports: str | Path = "reports") -> Path:
    text = Path(readme).read_text()
    if START not in text or END not in text:
        raise ValueError(f"{readme} has no {START} ... {END} section")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return write_text_atomic(readme, f"{head}{START}\n{results_markdown(reports)}{END}{tail}")
