"""Each notebook runs where a user opens it: Jupyter starts its kernel in notebooks/, papermill (the
pipeline) in the project folder, `jupyter nbconvert --execute` in the notebook's folder whatever the
caller's. Uninjected parameters come from params.yaml; the inputs are the committed outputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ("report", "ablations", "budget")


def _execute(name: str, cwd: Path):
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def _text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            parts.append(data.get("text/html", "") + data.get("text/markdown", "") + out.get("text", ""))
    return "\n".join(parts)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_from_the_notebooks_folder_and_from_the_root(name, tmp_path):
    from_notebooks = _text(_execute(name, ROOT / "notebooks"))
    from_root = _text(_execute(name, ROOT))
    assert from_notebooks == from_root  # the same page (a failing cell would have raised)
    assert ("In short" if name == "report" else "What ran, and the answer") in from_notebooks


def test_report_notebook_defaults_to_params_yaml():
    from dgc.config import load_params

    params = load_params(ROOT / "params.yaml")
    text = _text(_execute("report", ROOT / "notebooks"))
    assert f"Profile {params.profile}" in text
    for model in params.pipeline.models:
        assert model in text


def test_jupyter_nbconvert_executes_the_report_from_notebooks(tmp_path):
    """The command a user types in notebooks/ (Jupyter's working folder is the notebook's)."""
    proc = subprocess.run([str(Path(sys.executable).parent / "jupyter"), "nbconvert", "--to", "notebook",
                           "--execute", "report.ipynb", "--output-dir", str(tmp_path)],
                          cwd=ROOT / "notebooks", capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "In short" in _text(nbformat.read(tmp_path / "report.ipynb", as_version=4))
