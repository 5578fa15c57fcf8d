"""The GPU check (benchmarks/gpu_check.py, benchmarks/gpu_check_report.py): its arithmetic (fastest
settings, ratios, targets, the paper profile's hours, pytest's counts) on given records, and
`benchmarks/gpu_check.py --dry-run` end to end on CPU, in a child process that cannot import the
packages a bare GPU machine lacks."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

import gpu_check  # benchmarks/ is on pytest's pythonpath (pyproject.toml)
import gpu_check_report as report

ROOT = Path(__file__).resolve().parents[1]

# Imports that fail in the dry run's processes: the GPU machine has torch, triton, numpy, pandas,
# scikit-learn, pyyaml and pytest only.
ABSENT = ("tqdm", "wandb", "dvc", "papermill", "matplotlib", "torchvision", "nbformat", "nbconvert")


def rec(model, kind, ms, status="ok", compiled=False, precision="bf16", layout="channels_last",
        execution="auto"):
    return {"model": model, "kind": kind, "compiled": compiled, "mode": None, "precision": precision,
            "layout": layout, "execution": execution,
            "setting": report.setting_label(compiled, precision, layout, execution),
            "status": status, "ms": ms, "repeats": 5, "reason": None}


def test_fastest_takes_the_quickest_successful_setting_of_each_model():
    records = [rec("resnet18", "train", 30.0), rec("resnet18", "train", 20.0, compiled=True),
               rec("resnet18", "train", 5.0, status="failed"), rec("resnet18", "inference_b64", 4.0),
               rec("densenet86", "train", 50.0, precision="fp32-tf32", layout="nchw", execution="-")]
    best = report.fastest(records, "train")
    assert list(best) == ["densenet86", "resnet18"]  # MODELS order
    assert best["resnet18"] == {"ms": 20.0, "setting": "compiled bf16 channels_last auto"}
    assert best["densenet86"]["setting"] == "eager fp32-tf32 nchw -"


def test_ratios_and_targets_from_the_fastest_figures():
    train = {"densenet86_dgc": {"ms": 120.0, "setting": "s"}, "densenet86": {"ms": 100.0, "setting": "s"},
             "resnet18_dgc": {"ms": 40.0, "setting": "s"}, "resnet18": {"ms": 25.0, "setting": "s"}}
    inference = {"densenet86_dgc": {"ms": 30.0, "setting": "s"}, "densenet86": {"ms": 40.0, "setting": "s"}}
    memory = {"densenet86_dgc": {"mb": 900.0}, "densenet86": {"mb": 600.0}}
    r = report.ratios(train, inference, memory)
    assert r["densenet86_dgc/densenet86"] == {"train_step": 1.2, "inference_b64": 0.75, "peak_train_memory": 1.5}
    assert r["resnet18_dgc/resnet18"] == {"train_step": 1.6, "inference_b64": None, "peak_train_memory": None}
    t = {x["target"]: x for x in report.targets(r, {"densenet86_dgc": {"ms": 1.5, "setting": "s"}}, 13.0)}
    assert [x["limit"] for x in t.values()] == [1.3, 1.5, 1.0, 2.0, 12.0, 1.3, 1.3]
    assert t["densenet86_dgc / densenet86 train step"]["met"] is True
    assert t["resnet18_dgc / resnet18 train step"]["met"] is False  # 1.6 > 1.5
    assert t["densenet86_dgc / densenet86 inference b64"]["met"] is True
    assert t["densenet86_dgc inference batch 1, ms per image"]["measured"] == 1.5
    assert t["paper profile, hours on this GPU"]["met"] is False
    assert t["densenet86_dgc / densenet86 peak train memory"]["met"] is False  # 1.5 > 1.3
    assert t["resnet18_dgc / resnet18 peak train memory"]["met"] is None  # not measured


def test_paper_profile_hours_per_run_and_the_closest_model_for_untimed_ones():
    profile = {"pipeline": {"datasets": ["cifar10", "imagenet"], "models": ["densenet86_dgc", "densenet86_gc"]},
               "train": {"epochs": 10, "batch_size": 100, "seeds": [0, 1]}}
    train = {"densenet86_dgc": {"ms": 80.0, "setting": "compiled bf16 channels_last auto"},
             "densenet86": {"ms": 50.0, "setting": "eager bf16 channels_last -"}}
    inference = {"densenet86_dgc": {"ms": 32.0, "setting": "eager bf16 channels_last auto"},
                 "densenet86": {"ms": 16.0, "setting": "eager bf16 channels_last -"}}
    compiles = {"densenet86_dgc train": {"seconds": 60.0}}
    est = report.paper_profile_hours(profile, train, inference, compiles, inference_batch=64)
    runs = {(r["dataset"], r["model"]): r for r in est["runs"]}
    dgc = runs[("cifar10", "densenet86_dgc")]
    # 500 steps of 80 ms + 10,000 test images at 32/64 ms each, 10 epochs, 3 compiles of 60 s, 2 seeds
    assert dgc["steps_per_epoch"] == 500
    assert math.isclose(dgc["hours"], 2 * (10 * (500 * 0.080 + 10_000 * 0.5e-3) + 180) / 3600)
    gc = runs[("cifar10", "densenet86_gc")]
    assert gc["estimated_from"] == "densenet86"  # same family, not DGC
    assert math.isclose(gc["hours"], 2 * 10 * (500 * 0.050 + 10_000 * 0.25e-3) / 3600)  # eager: no compile
    assert runs[("imagenet", "densenet86_dgc")]["hours"] is None
    assert est["total_hours"] is None  # imagenet is not estimated, so no total
    assert math.isclose(est["partial_hours"], dgc["hours"] + gc["hours"])


def test_closest_model_prefers_the_family_then_the_kind():
    timed = ["densenet86", "densenet86_dgc", "resnet18"]
    assert report.closest_model("densenet86_dgcg", timed) == "densenet86_dgc"
    assert report.closest_model("resnet18_dgc", timed) == "resnet18"
    assert report.closest_model("condensenet74_dgc", timed) == "densenet86_dgc"
    assert report.closest_model("resnet18", []) is None


def test_pytest_counts_from_the_summary_line_or_from_the_progress_of_a_stopped_run():
    done = "..F.s\n=== short test summary info ===\nFAILED t.py::x\n1 failed, 3 passed, 1 skipped, 2 errors in 12.34s\n"
    assert gpu_check.parse_pytest(done) == {"passed": 3, "failed": 1, "errors": 2, "skipped": 1}
    stopped = "..F.s.E                                   [ 70%]\n...\n"
    assert gpu_check.parse_pytest(stopped) == {"passed": 7, "failed": 1, "errors": 1, "skipped": 1}


def test_bad_arguments_stop_with_one_line(capsys):
    with pytest.raises(SystemExit) as exc:
        gpu_check.parse_args(["--dry-run", "--budget", "0"])
    assert exc.value.code == 2 and "--budget must be positive" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--dry-run", "--skip", "benchh"])
    assert "unknown step 'benchh'" in capsys.readouterr().err
    args = gpu_check.parse_args(["--dry-run", "--skip", "bench,pytest"])
    assert args.steps_to_run == ["eager", "compiled", "memory", "train_run"]
    assert args.repeats == 2 and args.batch == 8


def test_a_failing_or_non_finite_candidate_is_recorded_as_failed_and_the_others_are_timed(tmp_path):
    import torch

    check = gpu_check.Check(gpu_check.parse_args(["--dry-run", "--out-dir", str(tmp_path)]))
    calls = {"ok": 0}

    def raises():
        raise RuntimeError("no kernel image for this device\nmore lines")

    def ok():
        calls["ok"] += 1
        holders["ok"]["value"] = torch.ones(3)

    def nan():
        holders["nan"]["value"] = torch.tensor([1.0, float("nan")])

    holders = {"ok": {}, "nan": {}, "raises": {}}
    candidates = {"ok": (ok, holders["ok"]), "nan": (nan, holders["nan"]), "raises": (raises, holders["raises"])}
    settings = dict.fromkeys(candidates, ("bf16", "nchw", "auto"))
    check.time_group("train", candidates, settings, deadline=gpu_check._now() + 30)
    got = {r["model"]: r for r in check.summary["all_settings"]}
    assert got["raises"]["status"] == "failed"
    assert got["raises"]["reason"] == "RuntimeError: no kernel image for this device"
    assert got["nan"]["status"] == "failed" and "non-finite" in got["nan"]["reason"]
    assert got["ok"]["status"] == "ok" and got["ok"]["ms"] > 0 and got["ok"]["repeats"] == 2
    assert calls["ok"] == 2 + check.warmup + 2  # two probes, warm-up, two timed runs
    # a deadline that leaves no room: every candidate is recorded as skipped, none is timed
    check.summary["all_settings"].clear()
    check.time_group("train", {"ok": (ok, holders["ok"])}, settings, deadline=gpu_check._now() - 1)
    (skipped,) = check.summary["all_settings"]
    assert skipped["status"] == "skipped" and skipped["reason"].startswith("budget")


@pytest.mark.slow
def test_dry_run_writes_the_whole_summary(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    # None in sys.modules: `import x` raises ModuleNotFoundError and find_spec(x) is None, as when
    # x is not installed (run at start-up of every Python process of the dry run, children included)
    (blocker / "sitecustomize.py").write_text(f"import sys\nsys.modules.update(dict.fromkeys({ABSENT!r}))\n")
    out = tmp_path / "gpu"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--dry-run", "--out-dir", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    s = json.loads((out / "summary.json").read_text())
    assert set(gpu_check.SUMMARY_KEYS) <= set(s)
    assert s["dry_run"] is True and s["wall_seconds"] < s["budget_seconds"]

    ok = [r for r in s["all_settings"] if r["status"] == "ok"]
    assert {r["kind"] for r in ok} == {"train", "inference_b64", "inference_b1"}
    assert all(r["ms"] > 0 for r in ok)
    fused = [r for r in s["all_settings"] if r["execution"] == "fused"]
    assert fused and all(r["status"] == "skipped" and "CUDA" in r["reason"] for r in fused)
    for key, kind in (("train_step_ms", "train"), ("inference_ms_b64", "inference_b64"),
                      ("inference_ms_b1", "inference_b1")):
        models = report.MODELS if kind != "inference_b1" else ("densenet86_dgc", "densenet86")
        assert sorted(s[key]) == sorted(models)
        for model, best in s[key].items():
            assert best["ms"] == min(r["ms"] for r in ok if r["model"] == model and r["kind"] == kind)
    # the one dry-run compile: densenet86_dgc's training step, timed like the eager settings
    assert s["compile_seconds"]["densenet86_dgc train"]["seconds"] > 0
    assert any(r["compiled"] and r["status"] == "ok" for r in ok)
    for dgc, dense in report.PAIRS:
        r = s["ratios"][f"{dgc}/{dense}"]
        assert math.isclose(r["train_step"], s["train_step_ms"][dgc]["ms"] / s["train_step_ms"][dense]["ms"])
        assert math.isclose(r["inference_b64"],
                            s["inference_ms_b64"][dgc]["ms"] / s["inference_ms_b64"][dense]["ms"])
        assert r["peak_train_memory"] is None  # CPU: not measured
    for t in s["targets"]:
        assert t["met"] is None if t["measured"] is None else t["met"] == (t["measured"] <= t["limit"])
    assert s["paper_profile_hours"]["total_hours"] > 0
    assert s["pytest"]["failed"] == 0 and s["pytest"]["skipped"] > 0  # the GPU tests, skipped on CPU
    assert s["train_run"]["status"] == "ok" and s["train_run"]["epochs"][0]["epoch_seconds"] > 0
    assert {"memory", "bench"} <= set(s["skipped"])

    md = (out / "summary.md").read_text()
    assert "| model | fastest train step ms (setting) |" in md
    for model in report.MODELS:
        assert f"| {model} | {s['train_step_ms'][model]['ms']:.1f} (" in md
    assert "| target | measured | limit | met |" in md and "Paper profile" in md
