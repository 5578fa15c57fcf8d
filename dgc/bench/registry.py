"""The benchmarks of the speed section, in its order: for each, its heading, the file under reports/
it reads and the function that renders that file (`dgc readme`, dgc/commands/readme.py
`speed_markdown`, shows each benchmark whose file exists).

A benchmark joins the section by an entry here and a `section_markdown` function in its module, which
takes the file's content (parsed JSON for a .json file, the text otherwise) and returns the Markdown
under the heading. Benchmarks without an entry: dgc/bench/slow_start.py (its own table,
reports/slow_start.md), fused_kernel.py (its JSON goes where --out says), ab_layer.py (prints only).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from dgc.bench import cpu_inference, cpu_kernels, gpu_check_report, repro_time, speed, train_throughput


@dataclass(frozen=True)
class Section:
    title: str  # the heading, without its "### "
    file: str  # the benchmark's output, relative to reports/
    render: Callable[[Any], str]  # the file's content -> the Markdown under the heading

    def read(self, reports: str | Path) -> Any:
        """The file's content: parsed JSON for a .json file, the text otherwise."""
        text = (Path(reports) / self.file).read_text()
        return json.loads(text) if self.file.endswith(".json") else text


SECTIONS: tuple[Section, ...] = (
    Section("`dvc repro` of the smoke profile (`bash benchmarks/repro_time.sh`)", "repro_time.json",
            repro_time.section_markdown),
    Section("Training step (`python benchmarks/train_throughput.py`)", "train_throughput.json",
            train_throughput.section_markdown),
    Section("Layers and whole models at inference (`dgc bench`)", "bench.json", speed.section_markdown),
    Section("Whole models on the CPU (`python benchmarks/cpu_inference.py --json reports/cpu_inference.json`)",
            "cpu_inference.json", cpu_inference.section_markdown),
    Section("The CPU kernels against the PyTorch ops they replace "
            "(`python benchmarks/cpu_kernels.py --json reports/cpu_kernels.json`)", "cpu_kernels.json",
            cpu_kernels.section_markdown),
    Section("On a GPU (`bash benchmarks/gpu_check.sh`)", "gpu/summary.md", gpu_check_report.section_markdown),
)
