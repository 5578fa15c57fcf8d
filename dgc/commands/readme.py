"""`dgc readme`: regenerate README's results section from the pipeline's outputs.

The text between `<!-- results:start -->` and `<!-- results:end -->` is replaced by tables built
from reports/vs_paper.json and reports/metrics/*.json; nothing in it is typed by hand.
"""

from __future__ import annotations

import json
from pathlib import Path

from dgc.measure.claims import load_metrics

from dgc.stages.compare import to_markdown
from dgc.errors import BadInput, MissingInput
from dgc.io import write_text_atomic

START, END = "<!-- results:start -->", "<!-- results:end -->"
SPEED_START, SPEED_END = "<!-- speed:start -->", "<!-- speed:end -->"


def results_markdown(reports: str | Path = "reports") -> str:
    reports = Path(reports)
    if not (reports / "vs_paper.json").exists():
        raise MissingInput(f"{reports / 'vs_paper.json'} is missing: it is written by the `compare` stage "
                           f"(run `dvc repro`)")
    comparison = json.loads((reports / "vs_paper.json").read_text())
    md = to_markdown(comparison).replace("# Our results against the paper's claims\n\n", "")
    claims_md, *others = md.split("\n## ")
    evidence = [part for part in others if part.startswith("Smoke evidence")]
    lines = ["### The paper's claims (`reports/vs_paper.md`)", "", claims_md.strip(), ""]
    if evidence:
        lines += ["#### " + evidence[0].strip(), ""]
    earlier = [part for part in others if part.startswith("The paper, the earlier reproduction")]
    if earlier:
        lines += ["#### " + earlier[0].strip(), ""]
    lines += [
             "### Every run of the last `dvc repro` (`reports/metrics/*.json`)", "",
             "| dataset | model | best top-1 acc (%), mean ± std (seeds) | finished learning | top-5 acc (%) | "
             "FLOPs expected | FLOPs actual | params | latency ms/img (batch 1 / 64) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (dataset, model), m in sorted(load_metrics(reports / "metrics").items()):
        lat = m.get("latency_ms_per_image", {})
        lat_s = " / ".join(f"{v:.2f}" for _, v in sorted(lat.items(), key=lambda kv: int(kv[0].split("_")[1])))
        std = m.get("best_std", {}).get("top1_acc", 0.0)
        plateau = m.get("plateau", {})
        gain = plateau.get("late_gain")
        done = "-" if gain is None else f"{'yes' if plateau.get('plateaued') else 'no'} (+{gain:.2f} in the last quarter)"
        lines.append(f"| {dataset} | {model} | {m['best']['top1_acc']:.2f} ± {std:.2f} ({m.get('seeds', 1)}) | "
                     f"{done} | {m['best']['top5_acc']:.2f} | "
                     f"{m['flops_expected']:,} | {m['flops_actual']:,} | {m['params']:,} | {lat_s} |")
    return "\n".join(lines) + "\n"


def speed_markdown(reports: str | Path = "reports") -> str:
    """Tables of `dgc bench` (reports/bench.json), benchmarks/train_throughput.py
    (reports/train_throughput.json) and benchmarks/repro_time.sh (reports/repro_time.json)."""
    from dgc.bench.speed import bench_markdown

    reports = Path(reports)
    parts = []
    repro = reports / "repro_time.json"
    if repro.exists():
        r = json.loads(repro.read_text())
        parts += ["### `dvc repro` of the smoke profile (`bash benchmarks/repro_time.sh`)", "",
                  f"Fresh clone at commit {r['commit']}, {r['cpus']} CPU cores, wandb offline, install "
                  f"not counted: first `dvc repro` {r['first_s']:.0f} s ({r['first_s'] / 60:.1f} min, "
                  f"{r['stages_first']} stages); second `dvc repro` with nothing changed {r['second_s']:.1f} s "
                  f"({r['stages_second']} stages run).", ""]
    throughput = reports / "train_throughput.json"
    if throughput.exists():
        t = json.loads(throughput.read_text())
        parts += ["### Training step (`python benchmarks/train_throughput.py`)", "",
                  f"Full-width models, CIFAR stem, batch 64, 32x32, pruned steady state; {t['device']}.", "",
                  "| model | step (ms) | images/s | peak memory of the step (MiB) |", "|---|---|---|---|"]
        for name, row in t.items():
            if isinstance(row, dict) and "step_s" in row:
                parts.append(f"| {name} | {1000 * row['step_s']:.0f} | {row['images_per_s']:.1f} | "
                             f"{row['peak_mb']:.0f} |")
        data = t.get("data_path", {})
        if "fraction_of_densenet86_dgc_step" in data:
            parts += ["", f"Data path (load + augment one batch of 64 on the device): "
                          f"{1000 * data['batch_s']:.2f} ms = "
                          f"{100 * data['fraction_of_densenet86_dgc_step']:.2f}% of a densenet86_dgc step."]
        parts.append("")
    bench = reports / "bench.json"
    if bench.exists():
        b = json.loads(bench.read_text())
        parts += ["### Layers and whole models at inference (`dgc bench`)", "", _made_by(b),
                  bench_markdown(b)]
    cpu = reports / "cpu_inference.json"
    if cpu.exists():
        c = json.loads(cpu.read_text())
        parts += ["### Whole models on the CPU "
                  "(`python benchmarks/cpu_inference.py --json reports/cpu_inference.json`)", "", _made_by(c),
                  f"{c['device']}, torch {c['torch']}, full width, CIFAR stem, median of {c['repeats']}; "
                  "ms per image. \"eager\" runs the C++ CPU kernels where they apply (DGC 1x1 convs, DGC "
                  "pre-activation, BN-ReLU-group convs), \"no kernels\" the same model in PyTorch ops only. "
                  "Compile time (inductor, not in the timings): "
                  + ", ".join(f"{n} {v:.0f} s" for n, v in c["compile_seconds"].items()) + ".", ""]
        parts += _settings_table(c["ms_per_image"])
        parts += ["", "Ratios (fastest setting of each): " + "; ".join(
            f"{k} {v:.2f}x" for k, v in c["ratios"].items()) + ".", ""]
    kernels = reports / "cpu_kernels.json"
    if kernels.exists():
        k = json.loads(kernels.read_text())
        blocks = k["blocks"]
        parts += ["### The CPU kernels against the PyTorch ops they replace "
                  "(`python benchmarks/cpu_kernels.py --json reports/cpu_kernels.json`)", "", _made_by(k),
                  f"{k['device']}, torch {k['torch']}, batch {k['batch']}, inference, median of "
                  f"{k['repeats']}; ms. Shapes of densenet86's last layer in each block; the DGC rows are "
                  "the whole layer (BN-ReLU, saliency generators, selection, conv), the dense conv rows "
                  "the conv alone.", "",
                  "| candidate | " + " | ".join(b["block"] for b in blocks) + " |",
                  "|---|" + "---|" * len(blocks)]
        for name in blocks[0]["ms"]:
            parts.append(f"| {name} | " + " | ".join(f"{b['ms'][name]:.2f}" for b in blocks) + " |")
        parts.append("")
    gpu = reports / "gpu" / "summary.md"
    if gpu.exists():
        parts += ["### On a GPU (`bash benchmarks/gpu_check.sh`)", "", gpu.read_text().strip(), ""]
    return "\n".join(parts) + "\n"


def _settings_table(ms_per_image: dict[str, dict[str, float]]) -> list[str]:
    """Rows (batch, model), columns = settings, from keys "<model> <setting>"; the fastest in bold."""
    rows: dict[tuple[str, str], dict[str, float]] = {}
    settings: list[str] = []
    for batch, timings in ms_per_image.items():
        for key, ms in timings.items():
            model, setting = key.split(" ", 1)
            rows.setdefault((batch, model), {})[setting] = ms
            if setting not in settings:
                settings.append(setting)
    lines = ["| batch | model | " + " | ".join(settings) + " |", "|---|---|" + "---|" * len(settings)]
    for (batch, model), row in rows.items():
        best = min(row.values())
        cells = [("**%.2f**" if row[s] == best else "%.2f") % row[s] if s in row else "-" for s in settings]
        lines.append(f"| {batch} | {model} | " + " | ".join(cells) + " |")
    return lines


def _made_by(result: dict) -> str:
    """One line: the commit and machine a benchmark JSON says made it."""
    p = result.get("provenance")
    if not p:
        return ""
    m = p["machine"]
    return (f"Made by commit {p['commit']} on {p['date']}: {m.get('cpu', '?')}, {m.get('cpus', '?')} "
            f"CPUs, {m.get('gpu', 'no GPU')}, torch {m.get('torch', '?')}.\n")


def _replace(text: str, start: str, end: str, body: str, name: str) -> str:
    if start not in text or end not in text:
        raise BadInput(f"{name} has no {start} ... {end} section")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{body}{end}{tail}"


def update_readme(readme: str | Path = "README.md", reports: str | Path = "reports") -> Path:
    if not Path(readme).is_file():
        raise MissingInput(f"{readme} does not exist")
    text = Path(readme).read_text()
    text = _replace(text, START, END, results_markdown(reports), str(readme))
    text = _replace(text, SPEED_START, SPEED_END, speed_markdown(reports), str(readme))
    return write_text_atomic(readme, text)
