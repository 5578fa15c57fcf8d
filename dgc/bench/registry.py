"""The benchmarks of docs/speed.md's speed section, in its order: each one's heading, its file under reports/ and
the pure function rendering that file's content for `dgc readme` (which so runs no benchmark and shows each file
that exists). The studies (studies/) render their own results and have no entry."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from dgc.bench import speed
from dgc.errors import BadInput
from dgc.stages.compare import markdown_table


@dataclass(frozen=True)
class Section:
    title: str  # the heading, without its "### "
    file: str  # the benchmark's output, relative to reports/
    render: Callable[[Any], str]  # the file's content -> the Markdown under the heading

    def read(self, reports: str | Path) -> Any:
        """The file's content: parsed JSON for a .json file, the text otherwise."""
        text = (Path(reports) / self.file).read_text()
        return json.loads(text) if self.file.endswith(".json") else text


def made_by(result: Mapping[str, Any]) -> str:
    """One line: the commit and machine of a benchmark JSON's `provenance` (dgc.measure.provenance); '' if none."""
    p = result.get("provenance")
    if not p:
        return ""
    m = p["machine"]
    return (f"Made by commit {p['commit']} on {p['date']}: {m.get('cpu', '?')}, {m.get('cpus', '?')} "
            f"CPUs, {m.get('gpu', 'no GPU')}, torch {m.get('torch', '?')}.\n")


def settings_table(ms_per_image: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Rows (batch, model), columns = settings, from keys "<model> <setting>"; the fastest in bold."""
    rows: dict[tuple[str, str], dict[str, float]] = {}
    for batch, timings in ms_per_image.items():
        for key, ms in timings.items():
            model, setting = key.split(" ", 1)
            rows.setdefault((batch, model), {})[setting] = ms
    settings = list(dict.fromkeys(key.split(" ", 1)[1] for timings in ms_per_image.values() for key in timings))
    return markdown_table("batch | model | " + " | ".join(settings), [
        [batch, model, *(("**%.2f**" if row[s] == min(row.values()) else "%.2f") % row[s] if s in row else "-"
                         for s in settings)] for (batch, model), row in rows.items()])


def repro_time_section(r: Mapping[str, Any]) -> str:
    return (f"Fresh clone at commit {r['commit']}, {r['cpus']} CPU cores, wandb offline, install "
            f"not counted: first `dvc repro` {r['first_s']:.0f} s ({r['first_s'] / 60:.1f} min, "
            f"{r['stages_first']} stages); second `dvc repro` with nothing changed {r['second_s']:.1f} s "
            f"({r['stages_second']} stages run).\n")


def train_throughput_section(t: Mapping[str, Any]) -> str:
    """One row per model (step ms, images/s, peak MiB) and the data path's share of a step."""
    lines = [f"Full-width models, CIFAR stem, batch 64, 32x32, pruned steady state; {t['device']}.", "",
             *markdown_table("model | step (ms) | images/s | peak memory of the step (MiB)", [
                 [name, f"{1000 * row['step_s']:.0f}", f"{row['images_per_s']:.1f}", f"{row['peak_mb']:.0f}"]
                 for name, row in t.items() if isinstance(row, dict) and "step_s" in row])]
    data = t.get("data_path", {})
    if "fraction_of_densenet86_dgc_step" in data:
        lines += ["", f"Data path (load + augment one batch of 64 on the device): "
                      f"{1000 * data['batch_s']:.2f} ms = "
                      f"{100 * data['fraction_of_densenet86_dgc_step']:.2f}% of a densenet86_dgc step."]
    return "\n".join([*lines, ""])


def cpu_inference_section(c: Mapping[str, Any]) -> str:
    """The settings table (fastest in bold), the compile and export seconds and the ratios of a result."""
    exports = c.get("export_seconds", {})
    lines = [made_by(c),
             f"{c['device']}, torch {c['torch']}, full width, CIFAR stem, median of {c['repeats']}; "
             "ms per image. \"eager\" runs the C++ CPU kernels where they apply (a whole DGC layer in one "
             "call, BN-ReLU-group convs, pooling), \"no kernels\" the same model in PyTorch ops only, "
             "\"compiled\" torch.compile (inductor) of the PyTorch executions, \"onnxruntime\" the model "
             "exported to ONNX at that batch size (dgc/runtime/exported.py) in ONNX Runtime's CPU provider. "
             "Compile time (inductor, not in the timings): "
             + ", ".join(f"{n} {v:.0f} s" for n, v in c["compile_seconds"].items()) + "."
             + (" ONNX export time (not in the timings): "
                + ", ".join(f"{n} {v:.0f} s" for n, v in exports.items()) + "." if exports else ""), ""]
    lines += settings_table(c["ms_per_image"])
    lines += ["", "Ratios (fastest setting of each): " + "; ".join(
        f"{k} {v:.2f}x" for k, v in c["ratios"].items()) + ".", ""]
    return "\n".join(lines)


def cpu_kernels_section(k: Mapping[str, Any]) -> str:
    """One row per candidate, one column per block, in ms."""
    blocks = k["blocks"]
    return "\n".join([made_by(k),
                      f"{k['device']}, torch {k['torch']}, batch {k['batch']}, inference, median of "
                      f"{k['repeats']}; ms. Shapes of densenet86's last layer in each block; the DGC rows are "
                      "the whole layer (BN-ReLU, saliency generators, selection, conv), the dense conv rows "
                      "the conv alone.", "",
                      *markdown_table("candidate | " + " | ".join(b["block"] for b in blocks),
                                      [[name, *(f"{b['ms'][name]:.2f}" for b in blocks)] for name in blocks[0]["ms"]]),
                      ""])


PROFILE_KINDS = ("DGC layer", "conv", "BN / ReLU", "pooling", "linear", "outside the modules above")


def batch1_profile_section(p: Mapping[str, Any]) -> str:
    """One row per model: ms/image at batch 1, the ms inside each kind of module, ATen operator calls."""
    lines = [made_by(p),
             f"{p['device']}, torch {p['torch']}, batch 1, eager with the C++ kernels, full width, CIFAR stem; "
             f"ms per forward, {p['repeats']} forwards. The kinds are timed by a timer around each module "
             "(which costs a little itself: read the shares); \"elsewhere\" is the rest of the timed forward "
             "(the model's own Python: slicing, concatenation, additions). ATen operators exclude the "
             "project's C++ kernels (called through ctypes). ONNX Runtime: the model exported at batch 1, "
             "its graph nodes run per forward and the node types that take the most time, by ONNX "
             "Runtime's profiler (whose own cost grows with the number of nodes).", ""]
    rows = []
    for name, row in p["models"].items():
        top = row["top_ops"][0] if row["top_ops"] else None
        top_cell = f"{top['op']} {top['self_ms']:.2f} ms ({top['calls_per_forward']:.0f} calls)" if top else "-"
        ort = row.get("onnxruntime")
        ort_cells = (f"{ort['node_runs_per_forward']:.0f}", ", ".join(
            f"{t['op']} {t['ms']:.2f}" for t in ort["top_node_types"][:4])) if ort else ("-", "-")
        rows.append([name, f"{row['ms_per_image']:.2f}", *(_kind_cell(row["kinds"].get(k)) for k in PROFILE_KINDS),
                     f"{row['op_calls_per_forward']:.0f}", f"{row['ms_in_aten_ops']:.2f}", top_cell, *ort_cells])
    kinds = " | ".join(f"in {k} (modules)" if k != PROFILE_KINDS[-1] else "elsewhere" for k in PROFILE_KINDS)
    lines += markdown_table(f"model | ms/image | {kinds} | ATen op calls | ms in ATen ops | top ATen op | "
                            "ONNX Runtime nodes | ONNX Runtime: top node types (ms)", rows)
    return "\n".join([*lines, ""])


def _kind_cell(kind: Mapping[str, Any] | None) -> str:
    """'ms (modules)' of one kind of module; the ms alone for the rest of the forward (0 modules)."""
    if kind is None:
        return "-"
    return f"{kind['ms']:.2f} ({kind['modules']})" if kind["modules"] else f"{kind['ms']:.2f}"


def gpu_section(summary_md: str) -> str:
    """summary.md as the GPU check (benchmarks/gpu_check.py) wrote it; a dry run (CPU, tiny models)
    is no GPU measurement and is refused."""
    if "**Dry run**" in summary_md:  # the mark benchmarks/gpu_check_report.py puts on a dry run
        raise BadInput("reports/gpu/summary.md is a `--dry-run` of the GPU check (CPU, tiny models), not a GPU's "
                       "measurement: restore it (`git checkout reports/gpu`) or run the check on a GPU")
    return summary_md.strip() + "\n"


SECTIONS: tuple[Section, ...] = (
    Section("`dvc repro` of the smoke profile (`bash benchmarks/repro_time.sh`)", "repro_time.json",
            repro_time_section),
    Section("Training step (`python benchmarks/train_throughput.py`)", "train_throughput.json",
            train_throughput_section),
    Section("Layers and whole models at inference (`dgc bench`)", "bench.json",
            lambda result: made_by(result) + "\n" + speed.bench_markdown(result)),
    Section("Whole models on the CPU (`python benchmarks/cpu_inference.py --json reports/cpu_inference.json`)",
            "cpu_inference.json", cpu_inference_section),
    Section("The CPU kernels against the PyTorch ops they replace "
            "(`python benchmarks/cpu_kernels.py --json reports/cpu_kernels.json`)", "cpu_kernels.json",
            cpu_kernels_section),
    Section("Where batch 1 spends its time (`python benchmarks/batch1_profile.py --json reports/batch1_profile.json`)",
            "batch1_profile.json", batch1_profile_section),
    Section("On a GPU (`bash benchmarks/gpu_check.sh`)", "gpu/summary.md", gpu_section),
)
