import json
import subprocess
import sys

from dgc.cli import main


def test_profile_prints_the_paper_numbers(capsys):
    assert main(["profile", "densenet86_dgc", "--num-classes", "10"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["flops_expected"] == 71_037_118 and out["params"] == 4_264_810


def test_profile_accepts_overrides(capsys):
    assert main(["profile", "densenet86_dgc", "--set", "gate_factor=1.0"]) == 0
    assert json.loads(capsys.readouterr().out)["flops_expected"] == 182_513_854


def test_models_lists_the_registry(capsys):
    assert main(["models"]) == 0
    assert "resnet18_gc" in capsys.readouterr().out


def test_unknown_model_exits_2_with_one_line_and_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "dgc", "profile", "densenet99"],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "densenet99" in proc.stderr and "Traceback" not in proc.stderr


def test_bad_override_names_the_key(capsys):
    assert main(["profile", "resnet18_dgc", "--set", "gate_factor=2"]) == 2
    assert "gate_factor" in capsys.readouterr().err
