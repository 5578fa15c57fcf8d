"""benchmarks/: thin entry points into dgc.bench, whose registry makes the README's speed section."""

import ast
import importlib
import json
from pathlib import Path

import pytest

from dgc.bench import gpu_check_report, repro_time
from dgc.bench.registry import SECTIONS
from dgc.commands.readme import speed_markdown

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py"))


def test_there_are_benchmark_scripts():
    assert {p.stem for p in SCRIPTS} >= {"gpu_check", "cpu_kernels", "train_throughput"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_every_benchmark_script_is_a_thin_entry_point_into_dgc_bench(script):
    """A docstring, `from dgc.bench.<its name> import main` and `raise SystemExit(main())` under a
    __main__ guard: the code lives in the package."""
    text = script.read_text()
    assert len(text.splitlines()) < 30, f"{script.name}: the code belongs in dgc/bench/{script.name}"
    body = ast.parse(text).body
    assert ast.get_docstring(ast.Module(body=body, type_ignores=[])), f"{script.name} has no docstring"
    imports = [node for node in body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert [(node.module, [a.name for a in node.names]) for node in imports if isinstance(node, ast.ImportFrom)] \
        == [(f"dgc.bench.{script.stem}", ["main"])]
    assert len(imports) == 1
    guard = body[-1]
    assert isinstance(guard, ast.If) and ast.unparse(guard.test) == "__name__ == '__main__'"
    assert [ast.unparse(node) for node in guard.body] == ["raise SystemExit(main())"]
    assert len(body) == 3  # docstring, import, guard: nothing else
    module = importlib.import_module(f"dgc.bench.{script.stem}")
    assert callable(module.main)
    assert f"benchmarks/{script.name}" in module.__doc__  # the module says how it is run


def test_the_registry_lists_each_section_once_and_every_module_with_a_section_is_in_it():
    assert len({s.title for s in SECTIONS}) == len({s.file for s in SECTIONS}) == len(SECTIONS)
    renderers = {s.render for s in SECTIONS}
    for path in sorted((ROOT / "dgc" / "bench").glob("*.py")):
        module = importlib.import_module(f"dgc.bench.{path.stem}")
        assert module.__doc__, f"dgc/bench/{path.name} has no docstring"
        if hasattr(module, "section_markdown"):
            assert module.section_markdown in renderers, f"dgc/bench/{path.name} is not in the registry"


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
