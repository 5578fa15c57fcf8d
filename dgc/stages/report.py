"""The `report` stage: execute a notebook with papermill and render it to self-contained HTML.

Without papermill's timestamps and durations, with fixed cell ids, embedded figures and hidden code,
re-executing on unchanged inputs gives the same .ipynb and .html bytes, and the page needs no network.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from dgc.errors import DGCError, MissingInput
from dgc.io import write_text_atomic


class NotebookFailed(DGCError, RuntimeError):
    """A cell of the notebook raised; the message carries the cell's error."""

    exit_status = 1


def normalise(nb) -> Any:
    """Strip run-dependent metadata: timestamps, durations, execution counts' timing, random ids."""
    nb.metadata.pop("papermill", None)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        for out in cell.get("outputs", []):
            out.get("metadata", {}).pop("execution", None)
    return nb


def execute(notebook: str | Path, output: str | Path, parameters: dict[str, Any],
            cwd: str | Path = ".") -> Any:
    """Run `notebook` with `parameters` (kernel python3); returns the normalised executed notebook."""
    import nbformat
    import papermill as pm

    notebook, output = Path(notebook), Path(output)
    if not notebook.exists():
        raise MissingInput(f"notebook {notebook} does not exist")
    tmp = output.with_name(f".{output.name}.running.ipynb")
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        pm.execute_notebook(str(notebook), str(tmp), parameters=parameters, kernel_name="python3",
                            cwd=str(cwd), progress_bar=False, log_output=False)
    except pm.PapermillExecutionError as exc:
        raise NotebookFailed(f"{notebook} failed in cell {exc.exec_count}: {exc.ename}: "
                             + re.sub(r"\x1b\[[0-9;]*m", "", exc.evalue)) from None  # without ANSI colours
    finally:
        executed = nbformat.read(str(tmp), as_version=4) if tmp.exists() else None
        tmp.unlink(missing_ok=True)
    nb = normalise(executed)
    write_text_atomic(output, nbformat.writes(nb) + "\n")
    return nb


def to_html(nb, output: str | Path, title: str) -> Path:
    """Self-contained HTML (figures embedded, code hidden, no script needed to read it)."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", exclude_input=True, exclude_input_prompt=True,
                            exclude_output_prompt=True)
    nb.metadata["title"] = title
    body, _ = exporter.from_notebook_node(nb)
    # Drop scripts that load code from the internet (MathJax, require.js, mermaid): nothing here
    # needs them, and the page must read the same offline.
    body = re.sub(r"<script\b[^>]*>(?:(?!</script>).)*?https?://(?:(?!</script>).)*</script>\s*", "", body,
                  flags=re.S)
    body = re.sub(r'<script[^>]*src="https?://[^"]*"[^>]*>\s*</script>\s*', "", body)
    return write_text_atomic(output, body)


def render(notebook: str | Path, out_dir: str | Path, parameters: dict[str, Any], title: str,
           cwd: str | Path = ".") -> tuple[Path, Path]:
    """Execute and render; returns (executed .ipynb, .html) under `out_dir`."""
    ipynb, html = (Path(out_dir) / f"{Path(notebook).stem}.{ext}" for ext in ("ipynb", "html"))
    to_html(execute(notebook, ipynb, parameters, cwd), html, title)
    return ipynb, html
