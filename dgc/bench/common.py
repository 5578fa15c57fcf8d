"""Markdown pieces the benchmarks' sections share (dgc/bench/registry.py lists the sections): the line
naming the commit and machine a result came from, and a table of timings per setting.

Pure functions over a benchmark's JSON (no torch).
"""

from __future__ import annotations

from typing import Any, Mapping


def made_by(result: Mapping[str, Any]) -> str:
    """One line: the commit and machine a benchmark JSON says made it (its `provenance`, written by
    dgc.measure.provenance.provenance); '' when it has none."""
    p = result.get("provenance")
    if not p:
        return ""
    m = p["machine"]
    return (f"Made by commit {p['commit']} on {p['date']}: {m.get('cpu', '?')}, {m.get('cpus', '?')} "
            f"CPUs, {m.get('gpu', 'no GPU')}, torch {m.get('torch', '?')}.\n")


def settings_table(ms_per_image: Mapping[str, Mapping[str, float]]) -> list[str]:
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
