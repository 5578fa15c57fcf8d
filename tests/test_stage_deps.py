"""Every dvc.yaml stage lists as deps the package files its command runs, so DVC reruns it when they change.

A stage's code is the import closure of its `bin/dgc <subcommand>` (dgc/imports.py, read from the
source with ast: the modules its `cmd_*` function in dgc/cli.py imports, and those of the notebooks
among its deps, followed through every `dgc.*` import, top-level or in a function, with each
package's `__init__.py`). Not counted: the
driver every subcommand runs, bin/dgc, dgc/__init__.py, dgc/__main__.py and dgc/cli.py itself (with
the exception classes its `main()` imports): listing them would rerun every stage, training included,
at each edit of the command line (docs/design.md, "Stage dependencies").
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from dgc.imports import DRIVER, code_deps, command_closure, command_entry_modules, import_closure, notebook_modules
from dgc.stages.train import training_code_hash

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def _covers(dep: str, file: str) -> bool:
    """A dep covers a file when it is the file or a folder above it."""
    dep = dep.rstrip("/")
    return file == dep or file.startswith(dep + "/")


def _code(stage: dict) -> list[str]:
    """The package files (relative to the repository) that the stage's command runs, with those of
    the notebooks it executes (its .ipynb deps)."""
    words = stage["cmd"].split()
    assert words[0] == "bin/dgc", f"{stage['cmd']!r} is not a `bin/dgc <subcommand>` command"
    notebooks = [d for d in stage["deps"] if d.endswith(".ipynb")]
    return sorted(p.relative_to(ROOT).as_posix() for p in command_closure(words[1], ROOT, notebooks))


def test_every_stage_lists_the_code_its_command_runs():
    missing = {name: [f for f in _code(stage) if not any(_covers(d, f) for d in stage["deps"])]
               for name, stage in STAGES.items()}
    missing = {name: files for name, files in missing.items() if files}
    assert not missing, "dvc.yaml stages miss code deps:\n" + "\n".join(
        f"  {name}: {', '.join(files)}" for name, files in missing.items())


def test_every_code_dep_of_a_stage_is_code_it_runs():
    stale = {name: [d for d in stage["deps"] if d.startswith("dgc/")
                    and not any(_covers(d, f) for f in _code(stage))]
             for name, stage in STAGES.items()}
    stale = {name: deps for name, deps in stale.items() if deps}
    assert not stale, f"dvc.yaml code deps that the stage's command never imports: {stale}"


def test_every_stage_lists_exactly_the_code_deps_its_closure_gives():
    """dvc.yaml's dgc/ deps are `code_deps` of each stage's closure: a folder only where the stage runs
    every file of it (rewrite a stage's dgc/ lines with the list this prints)."""
    for name, stage in STAGES.items():
        listed = [d for d in stage["deps"] if d.startswith("dgc/")]
        notebooks = [d for d in stage["deps"] if d.endswith(".ipynb")]
        expected = code_deps(command_closure(stage["cmd"].split()[1], ROOT, notebooks), ROOT)
        assert listed == expected, f"{name}: its dgc/ deps should be {expected}"


def _edited_by_the_test() -> list[str]:
    """The files whose edit must retrain nothing: the CPU kernels, the benchmarks, the studies and the
    comparison stage."""
    files = ["dgc/kernels/cpu_kernels.cpp", "dgc/kernels/cpu.py", "dgc/kernels/cpu_layers.py", "dgc/stages/compare.py"]
    for folder in ("benchmarks", "studies", "dgc/bench"):
        files += sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / folder).rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts)
    assert {"benchmarks/gpu_check.py", "studies/slow_start.py", "dgc/bench/speed.py"} <= set(files)
    return files


def test_editing_a_cpu_kernel_a_benchmark_a_study_or_the_comparison_retrains_nothing(tmp_path):
    """No train stage's dep covers these files, and editing them leaves the finished-run check
    (training_code_hash) as it was: `dvc repro` and `dgc train` retrain nothing."""
    edited = _edited_by_the_test()
    train_stages = [name for name, stage in STAGES.items() if stage["cmd"].split()[:2] == ["bin/dgc", "train"]]
    assert train_stages
    for name in train_stages:
        covered = [f for f in edited for d in STAGES[name]["deps"] if _covers(d, f)]
        assert not covered, f"{name}: editing {covered} would rerun it"
    copy = tmp_path / "checkout"
    for folder in ("dgc", "benchmarks", "studies"):
        shutil.copytree(ROOT / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
    before = training_code_hash(copy)
    for rel in edited:
        with open(copy / rel, "a") as fh:
            fh.write("\n// edited\n" if rel.endswith(".cpp") else "\n# edited\n")
    assert training_code_hash(copy) == before
    with open(copy / "dgc/layers/dgc_conv.py", "a") as fh:  # while an edit of the algorithm does retrain
        fh.write("\n# edited\n")
    assert training_code_hash(copy) != before


def test_the_driver_is_not_a_dep():
    for name, stage in STAGES.items():
        assert not {"bin/dgc", *DRIVER} & set(stage["deps"]), name


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def test_import_closure_follows_every_kind_of_import(tmp_path):
    _write(tmp_path, {
        "dgc/__init__.py": "",
        "dgc/a.py": "import os\nfrom dgc.pkg import thing\n\ndef f():\n    import dgc.lazy\n",
        "dgc/pkg/__init__.py": "from .sub import thing\n",
        "dgc/pkg/sub.py": "from pathlib import Path\nfrom .. import b\nSRC = Path(__file__).with_name('k.cpp')\n"
                          "thing = 1\n",
        "dgc/pkg/k.cpp": "",
        "dgc/pkg/unused.py": "",
        "dgc/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import dgc.typing_only\n",
        "dgc/lazy.py": "from dgc import deep\n",
        "dgc/deep/__init__.py": "",
        "dgc/typing_only.py": "",
    })
    found = {p.relative_to(tmp_path).as_posix() for p in import_closure(["dgc.a"], tmp_path)}
    assert found == {"dgc/__init__.py", "dgc/a.py", "dgc/pkg/__init__.py", "dgc/pkg/sub.py", "dgc/pkg/k.cpp",
                     "dgc/b.py", "dgc/lazy.py", "dgc/deep/__init__.py"}


def test_a_command_enters_through_its_function_and_the_cli_helpers_it_calls(tmp_path):
    _write(tmp_path, {"dgc/cli.py": (
        "from dgc.driver_only import X\n"
        "def _params(args):\n    from dgc.config import load\n\n"
        "def cmd_train_all(args):\n    from dgc.commands.train_all import run\n    _params(args)\n\n"
        "def cmd_other(args):\n    import dgc.other\n")})
    assert command_entry_modules("train-all", tmp_path / "dgc" / "cli.py") == {"dgc.config", "dgc.commands.train_all"}
    with pytest.raises(ValueError, match="no cmd_nope"):
        command_entry_modules("nope", tmp_path / "dgc" / "cli.py")


def test_notebook_modules_skip_magics_and_markdown(tmp_path):
    notebook = tmp_path / "n.ipynb"
    notebook.write_text(json.dumps({"cells": [
        {"cell_type": "markdown", "source": ["import dgc.not_code\n"]},
        {"cell_type": "code", "source": ["%matplotlib inline\n", "!ls\n", "from dgc import notebook as report\n",
                                         "import numpy\n"]},
        {"cell_type": "code", "source": "from dgc.notebook import heading"}]}))
    _write(tmp_path, {"dgc/__init__.py": "", "dgc/notebook.py": ""})
    assert notebook_modules(notebook, tmp_path) == {"dgc", "dgc.notebook"}


def test_no_stage_module_imports_another():
    """dgc/stages/<stage>.py runs no other stage's module, directly or through a shared module: what two
    stages share lives outside dgc/stages/ (runtime, measure, data, models)."""
    stage_files = sorted(p for p in (ROOT / "dgc" / "stages").glob("*.py") if p.name != "__init__.py")
    assert {p.stem for p in stage_files} == set(STAGES), "dgc/stages/ holds one module per dvc.yaml stage"
    crossing = {}
    for path in stage_files:
        reached = {p.resolve() for p in import_closure([f"dgc.stages.{path.stem}"], ROOT)}
        others = sorted(p.name for p in stage_files if p != path and p.resolve() in reached)
        if others:
            crossing[path.name] = others
    assert not crossing, f"stage modules that import other stage modules: {crossing}"
