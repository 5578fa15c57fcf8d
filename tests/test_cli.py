import json
import subprocess
import sys

import pytest

from dgc.cli import main


def test_flops_prints_the_paper_numbers(capsys):
    assert main(["flops", "densenet86_dgc", "--num-classes", "10"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["flops_expected"] == 71_037_118 and out["params"] == 4_264_810


def test_flops_accepts_overrides(capsys):
    assert main(["flops", "densenet86_dgc", "--set", "gate_factor=1.0"]) == 0
    assert json.loads(capsys.readouterr().out)["flops_expected"] == 182_513_854


def test_models_lists_the_registry(capsys):
    assert main(["models"]) == 0
    assert "resnet18_gc" in capsys.readouterr().out


def test_unknown_model_exits_2_with_one_line_and_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "dgc", "flops", "densenet99"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "densenet99" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_override_names_the_key(capsys):
    assert main(["flops", "resnet18_dgc", "--set", "gate_factor=2"]) == 2
    assert "gate_factor" in capsys.readouterr().err


@pytest.mark.parametrize("argv, word", [
    (["flops", "densenet99"], "densenet99"),
    (["flops", "resnet18_dgc", "--set", "heads=abc"], "heads='abc'"),
    (["flops", "resnet18_dgc", "--set", "gate_factor=[1,"], "not valid YAML"),
    (["train", "digits", "resnet18", "--params", "{empty}", "-S", "train=3"], "train must be a mapping"),
    (["train", "digits", "resnet18", "--params", "{missing}"], "--params {missing}: no such file"),
    (["ablations", "queue", "--grid", "smoke", "--dry-run", "--params", "{missing}"], "no such file"),
    (["compare", "--claims", "{missing}"], "no such file"),
    (["report", "--notebook", "{missing}", "--params", "{empty}"], "no such file"),
])
def test_expected_errors_exit_2_with_one_line(tmp_path, capsys, argv, word):
    (tmp_path / "empty.yaml").write_text("")  # every setting at its default
    argv = [a.replace("{missing}", str(tmp_path / "missing")).replace("{empty}", str(tmp_path / "empty.yaml"))
            for a in argv]
    word = word.replace("{missing}", str(tmp_path / "missing"))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("dgc: error: ") and word in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("argv, word", [
    (["queue", "--dry-run", "--params", "{missing}"], "--params {missing}: no such file"),
    (["queue", "--dry-run", "--budgets", "1,x"], "--budgets must be comma-separated integers"),
    (["page", "--budgets", "0"], "budgets must be distinct positive numbers of epochs"),
    (["page", "--from", "{missing}"], "--from {missing}: no such file"),
])
def test_the_budget_study_s_expected_errors_exit_2_with_one_line(tmp_path, capsys, argv, word):
    """studies/budget.py runs its table (queue, page) through dgc.cli.main: the same checks and error lines."""
    from studies.budget import main as study_main

    argv = [a.replace("{missing}", str(tmp_path / "missing")) for a in argv]
    assert study_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("studies/budget.py: error: ") and word.replace("{missing}", str(tmp_path / "missing")) in err
    assert len(err.strip().splitlines()) == 1


def test_the_budget_study_runs_as_a_script_with_its_two_commands():
    import os
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}  # this checkout's dgc, whatever the environment installed
    run = [sys.executable, "studies/budget.py"]
    shown = subprocess.run([*run, "--help"], cwd=root, env=env, capture_output=True, text=True)
    assert shown.returncode == 0 and "{queue,page}" in shown.stdout, shown.stderr
    proc = subprocess.run([*run, "page", "--budgets", "x"], cwd=root, env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("studies/budget.py: error: --budgets"), proc.stderr


def test_a_diverged_run_or_a_failing_notebook_exits_1(tmp_path, monkeypatch, capsys):
    from dgc.stages.report import NotebookFailed
    from dgc.stages.train import TrainingDiverged

    def diverge(*args, **kwargs):
        raise TrainingDiverged("training loss became nan in epoch 2; stopped")

    def fail(*args, **kwargs):
        raise NotebookFailed("notebooks/report.ipynb failed in cell 3: KeyError: 'x'")

    monkeypatch.setattr("dgc.stages.train.train_model", diverge)
    monkeypatch.setattr("dgc.stages.report.render", fail)
    empty = tmp_path / "empty.yaml"  # the default params
    empty.write_text("")
    assert main(["train", "digits", "resnet18", "--params", str(empty), "--history-dir", ""]) == 1
    assert main(["report", "--params", str(empty)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["dgc: error: training loss became nan in epoch 2; stopped",
                   "dgc: error: notebooks/report.ipynb failed in cell 3: KeyError: 'x'"]


@pytest.mark.parametrize("exc", [ZeroDivisionError("division by zero"), ValueError("a bug"),
                                 TypeError("a bug"), FileNotFoundError("a bug"), RuntimeError("a bug")])
def test_an_unexpected_exception_keeps_its_traceback(monkeypatch, exc):
    def broken(args):
        raise exc

    monkeypatch.setattr("dgc.cli.cmd_models", broken)
    with pytest.raises(type(exc), match=str(exc)):
        main(["models"])


def test_expected_error_classes_are_dgc_errors_and_keep_their_builtin_base():
    from dgc.cli import UsageError
    from dgc.commands.paper_ref import GitFailed
    from dgc.config import ConfigError
    from dgc.data import DataError
    from dgc.errors import BadInput, DGCError, MissingInput
    from dgc.experiments.grid import AblationError
    from dgc.experiments.queue import QueueError
    from dgc.measure.latency import NonFiniteOutputs
    from dgc.models.registry import ModelError
    from dgc.notebook import ReportInputError
    from dgc.runtime.checkpoint import CheckpointError
    from dgc.runtime.compat import OfficialCheckpointError
    from dgc.runtime.engine import NonFiniteLoss
    from dgc.stages.report import NotebookFailed
    from dgc.stages.train import GpuOutOfMemory, TrainingDiverged

    classes = {UsageError: ValueError, ConfigError: ValueError, DataError: ValueError,
               CheckpointError: ValueError, ModelError: ValueError, AblationError: ValueError, QueueError: ValueError,
               OfficialCheckpointError: ValueError, BadInput: ValueError, MissingInput: FileNotFoundError,
               ReportInputError: FileNotFoundError, NonFiniteOutputs: ValueError,
               GpuOutOfMemory: RuntimeError, TrainingDiverged: RuntimeError, NotebookFailed: RuntimeError,
               NonFiniteLoss: RuntimeError, GitFailed: RuntimeError}
    for cls, builtin in classes.items():
        assert issubclass(cls, DGCError) and issubclass(cls, builtin), cls
    failures = {TrainingDiverged, NotebookFailed, NonFiniteLoss, NonFiniteOutputs, GitFailed}
    assert {cls for cls in classes if cls.exit_status == 1} == failures
    assert all(cls.exit_status == 2 for cls in classes if cls not in failures)


def test_every_subcommand_of_the_table_has_its_cmd_function():
    """`dgc <name> [<action>]` runs cmd_<name>[_<action>] (dgc/imports.py reads its imports from it)."""
    import dgc.cli as cli

    names = [f"cmd_{c.name}" for c in cli.COMMANDS] + [f"cmd_{c.name}_{a.name}" for c in cli.COMMANDS for a in c.actions]
    assert [n for n in (name.replace("-", "_") for name in names) if not callable(getattr(cli, n, None))] == []
    defined = {n for n in dir(cli) if n.startswith("cmd_")}
    assert defined == {n.replace("-", "_") for n in names}  # and no cmd_ function without a subcommand


def test_the_budget_study_is_no_dgc_subcommand_and_its_table_has_its_cmd_functions():
    import dgc.cli as cli
    from studies import budget

    assert "budget" not in {c.name for c in cli.COMMANDS}
    assert [c.name for c in budget.COMMANDS] == ["queue", "page"]
    assert all(callable(getattr(budget, f"cmd_{c.name}", None)) for c in budget.COMMANDS)
    assert {n for n in dir(budget) if n.startswith("cmd_")} == {"cmd_queue", "cmd_page"}
