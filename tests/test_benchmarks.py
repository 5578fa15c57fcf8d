"""benchmarks/ and studies/: scripts that import the installed dgc package and are not part of it;
dgc/bench/registry.py renders the benchmarks' results as the README's speed section."""

import ast
import importlib.util
import json
import sys
from pathlib import Path

import gpu_check_report  # benchmarks/ is on pytest's pythonpath (pyproject.toml)
import pytest
import repro_time

from dgc.bench.registry import SECTIONS
from dgc.commands.readme import speed_markdown

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted([*(ROOT / "benchmarks").glob("*.py"), *(ROOT / "studies").glob("*.py")])


def test_there_are_benchmark_and_study_scripts():
    assert {p.stem for p in SCRIPTS} >= {"gpu_check", "cpu_kernels", "train_throughput", "slow_start", "budget"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_script_is_a_program_over_the_installed_package(script, monkeypatch):
    """A docstring that says how it is run, absolute `dgc` imports only (the package, never a file of
    the scripts' folders put on sys.path), a `main` under a __main__ guard; and it imports."""
    text = script.read_text()
    tree = ast.parse(text)
    rel = script.relative_to(ROOT).as_posix()
    assert rel in (ast.get_docstring(tree) or ""), f"{rel}: its docstring does not say how it is run"
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level], f"{rel}: a relative import"
    guard = tree.body[-1]
    assert isinstance(guard, ast.If) and ast.unparse(guard.test) == "__name__ == '__main__'", rel
    assert "main(" in ast.unparse(guard)
    spec = importlib.util.spec_from_file_location(f"script_{script.parent.name}_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # as a script's __main__ is (dataclasses look it up)
    spec.loader.exec_module(module)
    assert callable(module.main)


def test_the_registry_lists_each_section_once_and_every_script_it_names_exists():
    assert len({s.title for s in SECTIONS}) == len({s.file for s in SECTIONS}) == len(SECTIONS)
    for section in SECTIONS:
        for script in (w.strip("`") for w in section.title.split() if w.strip("`(").startswith("benchmarks/")):
            assert (ROOT / script.strip("`()")).exists(), section.title


def test_speed_section_shows_the_benchmarks_whose_files_exist(tmp_path):
    assert speed_markdown(tmp_path) == "\n"
    (tmp_path / "gpu").mkdir()
    (tmp_path / "gpu" / "summary.md").write_text("## GPU check: X\n\nfigures\n\n")
    repro_time.record(0.0, 100.0, 102.5, 9, 0, "abc1234", 2, tmp_path / "repro_time.json")
    text = speed_markdown(tmp_path)
    assert text == ("### `dvc repro` of the smoke profile (`bash benchmarks/repro_time.sh`)\n\n"
                    "Fresh clone at commit abc1234, 2 CPU cores, wandb offline, install not counted: first "
                    "`dvc repro` 100 s (1.7 min, 9 stages); second `dvc repro` with nothing changed 2.5 s "
                    "(0 stages run).\n\n"
                    "### On a GPU (`bash benchmarks/gpu_check.sh`)\n\n## GPU check: X\n\nfigures\n\n")


def test_speed_section_of_the_committed_reports_has_a_heading_per_file_in_registry_order():
    present = [s for s in SECTIONS if (ROOT / "reports" / s.file).exists()]
    text = speed_markdown(ROOT / "reports")
    headings = [line[4:] for line in text.splitlines() if line.startswith("### ")]
    assert headings == [s.title for s in present]


def test_gpu_check_report_writes_summary_md_again_from_summary_json(tmp_path, capsys):
    ratios = gpu_check_report.ratios({}, {}, {})
    summary = {"device": "GPU X", "torch": "2.x", "date": "2026-01-01", "budget_seconds": 60.0,
               "command": "python3 benchmarks/gpu_check.py", "train_step_ms": {}, "inference_ms_b64": {},
               "ratios": ratios, "targets": gpu_check_report.targets(ratios, {}, None)}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    assert gpu_check_report.main([str(tmp_path / "summary.json")]) == 0
    assert (tmp_path / "summary.md").read_text() == gpu_check_report.markdown(summary)
    capsys.readouterr()
    assert gpu_check_report.main([str(tmp_path / "summary.json"), "--out", "-"]) == 0
    assert capsys.readouterr().out == gpu_check_report.markdown(summary)


def test_batch1_profile_splits_a_forward_by_layer_kind(tmp_path):
    """benchmarks/batch1_profile.py: one batch-1 forward of densenet86_dgc, its 42 DGC layers timed
    as one kind, ATen operators counted, and the JSON written."""
    import batch1_profile

    out = tmp_path / "batch1_profile.json"
    assert batch1_profile.main(["--models", "densenet86_dgc", "--repeats", "1", "--no-onnx", "--json", str(out)]) == 0
    row = json.loads(out.read_text())["models"]["densenet86_dgc"]
    assert "onnxruntime" not in row
    assert row["kinds"]["DGC layer"]["modules"] == 42
    assert 0 < row["kinds"]["DGC layer"]["ms"] < row["kinds"]["forward with timers"]["ms"]
    assert row["ms_per_image"] > 0 and row["op_calls_per_forward"] > 42
    assert row["top_ops"] and all(op["self_ms"] >= 0 for op in row["top_ops"])
    section = next(s for s in SECTIONS if s.file == "batch1_profile.json")
    table = [line for line in section.render(section.read(tmp_path)).splitlines()
             if line.startswith("| densenet86_dgc |")]
    assert len(table) == 1 and f"{row['kinds']['DGC layer']['ms']:.2f} (42)" in table[0]


def test_batch1_profile_times_the_onnx_graph_by_node_type(tmp_path):
    """The ONNX Runtime part of benchmarks/batch1_profile.py, on the smallest model (resnet18_gc)."""
    import batch1_profile

    out = tmp_path / "batch1_profile.json"
    assert batch1_profile.main(["--models", "resnet18_gc", "--repeats", "2", "--json", str(out)]) == 0
    ort = json.loads(out.read_text())["models"]["resnet18_gc"]["onnxruntime"]
    assert ort["node_runs_per_forward"] >= 20  # at least its 20 convs
    assert 0 < ort["ms_in_nodes"] < ort["ms_per_image_profiled"]
    assert "Conv" in {t["op"] for t in ort["top_node_types"]}
    section = next(s for s in SECTIONS if s.file == "batch1_profile.json")
    row = next(line for line in section.render(section.read(tmp_path)).splitlines() if line.startswith("| resnet18_gc |"))
    assert f"| {ort['node_runs_per_forward']:.0f} | " in row and "Conv " in row
