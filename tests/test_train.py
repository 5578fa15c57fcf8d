import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dgc.config import load_params
from dgc.data import cifar_batches
from dgc.runtime import engine
from dgc.runtime.checkpoint import load_checkpoint, load_model
from dgc.runtime.engine import evaluate
from dgc.stages.train import HISTORY_COLUMNS, TrainingDiverged, train_model

TIMING = ("epoch_seconds", "images_per_second", "peak_memory_mb")


def dies_in_second_epoch():
    """engine.train_one_epoch, but Ctrl-C in its second call (an interrupted run)."""
    real, calls = engine.train_one_epoch, {"n": 0}

    def epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    return epoch


def read_history(path: Path) -> list[dict]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def without_timing(rows):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def run_cli(*args, env_extra=None, **kw):
    env = {**os.environ, "WANDB_MODE": "disabled", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "dgc", *args], capture_output=True, text=True,
                          env=env, **kw)


def test_short_run_writes_history_and_a_checkpoint_that_reproduces_its_evaluation(tmp_path, tiny_params_file):
    params = load_params(tiny_params_file)
    result = train_model("digits", "densenet86_dgc", params, tmp_path / "runs", log=lambda s: None)
    rows = read_history(result.out_dir / "history.csv")
    assert list(rows[0]) == list(HISTORY_COLUMNS) and [r["epoch"] for r in rows] == ["1", "2"]
    assert float(rows[-1]["progress"]) > 0 and float(rows[-1]["inactive_fraction"]) > 0
    model, ck = load_model(result.out_dir / "checkpoint.pt")
    assert ck["epoch"] == 2 and ck["model_name"] == "densenet86_dgc"
    _, test = cifar_batches(Path(params.data.root) / "digits", "digits", 32, 128, torch.device("cpu"))
    again = evaluate(model, test)
    assert again["top1"] == pytest.approx(float(rows[-1]["test_top1"]), abs=1e-3)
    best, best_ck = load_model(result.out_dir / "best.pt")
    assert best_ck["epoch"] == result.best["epoch"]


def test_checkpoints_load_with_weights_only(tmp_path, tiny_params_file):
    result = train_model("digits", "resnet18", load_params(tiny_params_file, {"train.epochs": 1}),
                         tmp_path / "runs", log=lambda s: None)
    ck = torch.load(result.out_dir / "checkpoint.pt", weights_only=True)
    assert ck["settings"]["train"]["epochs"] == 1 and "optimizer" in ck


def test_interrupted_run_resumes_and_ends_like_an_uninterrupted_one(tmp_path, tiny_params_file, monkeypatch):
    params = load_params(tiny_params_file, {"train.epochs": 3})
    whole = train_model("digits", "densenet86_dgc", params, tmp_path / "a", log=lambda s: None)

    monkeypatch.setattr("dgc.stages.train.train_one_epoch", dies_in_second_epoch())
    with pytest.raises(KeyboardInterrupt):
        train_model("digits", "densenet86_dgc", params, tmp_path / "b", log=lambda s: None)
    assert load_checkpoint(tmp_path / "b" / "digits-densenet86_dgc" / "seed0" / "checkpoint.pt")["epoch"] == 1
    monkeypatch.setattr("dgc.stages.train.train_one_epoch", engine.train_one_epoch)
    logs = []
    resumed = train_model("digits", "densenet86_dgc", params, tmp_path / "b", log=logs.append)
    assert resumed.resumed_from == 1 and any("resuming" in line for line in logs)
    assert without_timing(read_history(resumed.out_dir / "history.csv")) == \
        without_timing(read_history(whole.out_dir / "history.csv"))


def test_kill_9_then_the_same_command_continues(tmp_path, tiny_params_file):
    args = ["train", "digits", "densenet86_dgc", "--params", str(tiny_params_file),
            "--runs", str(tmp_path / "runs"), "--history-dir", str(tmp_path / "hist"),
            "-S", "train.epochs=6", "-S", "train.max_batches=6"]
    ckpt = tmp_path / "runs" / "digits-densenet86_dgc" / "seed0" / "checkpoint.pt"
    proc = subprocess.Popen([sys.executable, "-m", "dgc", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, env={**os.environ, "WANDB_MODE": "disabled"})
    deadline = time.time() + 120
    while not ckpt.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists()
    done = load_checkpoint(ckpt)["epoch"]
    assert 1 <= done < 6
    second = run_cli(*args)
    assert second.returncode == 0, second.stderr
    assert "resuming" in second.stdout
    rows = read_history(ckpt.parent / "history.csv")
    assert [int(r["epoch"]) for r in rows] == list(range(1, 7))


def test_sparsity_lambda_zero_trains(tmp_path, tiny_params_file):
    params = load_params(tiny_params_file, {"train.sparsity_lambda": 0.0, "train.epochs": 1})
    result = train_model("digits", "resnet18_dgc", params, tmp_path, log=lambda s: None)
    assert result.final["train_loss"] > 0


def test_diverging_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, tiny_params_file, monkeypatch):
    params = load_params(tiny_params_file, {"train.epochs": 3})
    real = engine.train_one_epoch
    calls = {"n": 0}

    def nan_in_second_epoch(model, core, batches, ctx, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            with torch.no_grad():
                next(core.parameters()).fill_(float("nan"))
        return real(model, core, batches, ctx, *a, **kw)

    monkeypatch.setattr("dgc.stages.train.train_one_epoch", nan_in_second_epoch)
    with pytest.raises(TrainingDiverged, match="non-finite.*epoch 2.*checkpoint"):
        train_model("digits", "resnet18", params, tmp_path, log=lambda s: None)
    ck = load_checkpoint(tmp_path / "digits-resnet18" / "seed0" / "checkpoint.pt")
    assert ck["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in ck["state_dict"].values() if v.is_floating_point())


@pytest.mark.parametrize("override, key", [
    ("train.epochs=0", "train.epochs"),
    ("train.batch_size=-4", "train.batch_size"),
    ("models.densenet86_dgc.gate_factor=1.5", "gate_factor"),
    ("train.epochs=two", "train.epochs"),
    ("train.learning_rate=0.1", "train.learning_rate"),
])
def test_bad_settings_exit_2_naming_the_key(tmp_path, tiny_params_file, override, key):
    proc = run_cli("train", "digits", "densenet86_dgc", "--params", str(tiny_params_file),
                   "--runs", str(tmp_path), "-S", override)
    assert proc.returncode == 2
    assert key in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "digits-densenet86_dgc").exists()


@pytest.mark.parametrize("dataset, model, word", [("svhn", "resnet18", "svhn"),
                                                  ("digits", "vgg16", "vgg16")])
def test_unknown_dataset_or_model_exits_2(tmp_path, tiny_params_file, dataset, model, word):
    proc = run_cli("train", dataset, model, "--params", str(tiny_params_file), "--runs", str(tmp_path))
    assert proc.returncode == 2 and word in proc.stderr and "Traceback" not in proc.stderr


def test_wandb_failure_never_stops_training(tmp_path, tiny_params_file, monkeypatch, capsys):
    import wandb

    def broken(*args, **kwargs):
        raise RuntimeError("wandb is broken")

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setattr(wandb, "init", broken)
    result = train_model("digits", "resnet18", load_params(tiny_params_file, {"train.epochs": 1}),
                         tmp_path, log=lambda s: None)
    assert result.final and "wandb could not start" in capsys.readouterr().err


@pytest.mark.slow
def test_wandb_offline_run_is_written_for_a_later_sync(tmp_path, tiny_params_file, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    result = train_model("digits", "resnet18", load_params(tiny_params_file, {"train.epochs": 1}),
                         tmp_path, log=lambda s: None)
    runs = list((result.out_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


@pytest.mark.slow
def test_two_process_ddp_run_on_cpu_completes(tmp_path, tiny_params_file):
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
         "-m", "dgc", "train", "digits", "resnet18_dgc", "--params", str(tiny_params_file),
         "--runs", str(tmp_path), "--history-dir", str(tmp_path / "hist")],
        capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "x2" in proc.stdout and proc.stdout.count("epoch 2/2") == 1  # rank 0 logs alone
    rows = read_history(tmp_path / "digits-resnet18_dgc" / "seed0" / "history.csv")
    assert len(rows) == 2
    # both processes together saw every test image once
    ck = load_checkpoint(tmp_path / "digits-resnet18_dgc" / "seed0" / "checkpoint.pt")
    assert ck["epoch"] == 2


def test_a_finished_run_returns_its_stored_result_without_training(tmp_path, tiny_params_file, monkeypatch):
    params = load_params(tiny_params_file)
    first = train_model("digits", "resnet18", params, tmp_path, log=lambda s: None)
    names = ("history.csv", "checkpoint.pt", "best.pt")
    before = {n: ((first.out_dir / n).read_bytes(), (first.out_dir / n).stat().st_mtime_ns) for n in names}

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr("dgc.stages.train.train_one_epoch", must_not_run)
    monkeypatch.setattr("dgc.stages.train.make_batches", must_not_run)  # not even the data is loaded
    logs = []
    again = train_model("digits", "resnet18", params, tmp_path, log=logs.append)
    assert any("already complete" in line for line in logs)
    assert (again.best, again.final, again.resumed_from) == (first.best, first.final, 2)
    assert again.final["epoch"] == 2 and again.final["test_top1"] == first.final["test_top1"]
    assert {n: ((first.out_dir / n).read_bytes(), (first.out_dir / n).stat().st_mtime_ns)
            for n in names} == before


def test_cuda_out_of_memory_in_epoch_2_exits_2_with_one_line_and_keeps_epoch_1(
        tmp_path, tiny_params_file, monkeypatch, capsys):
    from dgc import cli
    from dgc.runtime.lr_schedule import cosine_lr

    def oom_from_step_3(base_lr, step, total_steps):  # max_batches 3: step 3 opens epoch 2
        if step >= 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return cosine_lr(base_lr, step, total_steps)

    monkeypatch.setattr("dgc.runtime.engine.cosine_lr", oom_from_step_3)
    monkeypatch.setenv("WANDB_MODE", "disabled")  # a user's WANDB_MODE=offline would log to stderr
    status = cli.main(["train", "digits", "resnet18", "--params", str(tiny_params_file),
                       "--runs", str(tmp_path), "--history-dir", ""])
    err = capsys.readouterr().err
    assert status == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "CUDA out of memory training resnet18 on digits in epoch 2 with 32 images per process" in err
    assert "train.batch_size 32 / 1 process" in err and "-S train.batch_size=16 -S train.lr=0.05" in err
    out = tmp_path / "digits-resnet18" / "seed0"
    assert f"{out / 'checkpoint.pt'} (epoch 1)" in err
    model, ck = load_model(out / "checkpoint.pt")
    assert ck["epoch"] == 1 and len(ck["history"]) == 1
    assert [r["epoch"] for r in read_history(out / "history.csv")] == ["1"]
    assert load_checkpoint(out / "best.pt")["epoch"] == 1


def test_cuda_out_of_memory_in_evaluation_names_the_eval_batch(tmp_path, tiny_params_file, monkeypatch):
    from dgc.stages.train import GpuOutOfMemory, out_of_memory_message

    def oom_in_first_evaluation(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr("dgc.stages.train.evaluate", oom_in_first_evaluation)
    with pytest.raises(GpuOutOfMemory, match="evaluating resnet18 on digits in epoch 1 .*"
                                             "train.eval_batch_size=64; no epoch was completed"):
        train_model("digits", "resnet18", load_params(tiny_params_file), tmp_path, log=lambda s: None)
    assert not (tmp_path / "digits-resnet18" / "seed0" / "checkpoint.pt").exists()
    # under torchrun: the per-process share of the global batch, and a smaller batch they divide
    cfg = load_params(tiny_params_file, {"train.batch_size": 96, "train.lr": 0.3}).train
    msg = out_of_memory_message("training", "m", "cifar10", cfg, 4, 7, "kept")
    assert "with 24 images per process (train.batch_size 96 / 4 processes)" in msg
    assert "-S train.batch_size=48 -S train.lr=0.15" in msg and "torchrun" in msg


def test_a_finished_run_is_trained_again_after_a_training_code_change(tmp_path, tiny_params_file, monkeypatch):
    params = load_params(tiny_params_file, {"train.epochs": 1})
    first = train_model("digits", "resnet18", params, tmp_path, log=lambda s: None)
    monkeypatch.setattr("dgc.stages.train.training_code_hash", lambda: "edited")
    logs = []
    again = train_model("digits", "resnet18", params, tmp_path, log=logs.append)
    assert any("other training code" in line for line in logs) and again.resumed_from == 0
    assert load_checkpoint(first.out_dir / "checkpoint.pt")["code"] == "edited"


def test_training_code_is_what_dgc_train_runs():
    # tests/test_stage_deps.py: the train stage's deps in dvc.yaml cover these files
    from dgc.imports import command_closure
    from dgc.stages.train import training_code

    files = training_code()
    assert files == sorted(command_closure("train"))
    names = {f.relative_to(Path(__file__).parents[1]).as_posix() for f in files}
    assert {"dgc/stages/train.py", "dgc/runtime/engine.py", "dgc/layers/dgc_conv.py"} <= names
    assert "dgc/cli.py" not in names
    assert not {name for name in names if name.startswith(("dgc/kernels/", "dgc/bench/"))}  # inference-only


def test_a_resumed_run_continues_its_wandb_run_and_a_fresh_one_starts_a_new_one(
        tmp_path, tiny_params_file, monkeypatch):
    resumes = []

    class Recorder:  # tests/test_tracking.py runs the real wandb (offline)
        def __init__(self, *args, resume=False, **kwargs):
            resumes.append(resume)

        def log(self, *args, **kwargs):
            pass

        def finish(self):
            pass

    real = engine.train_one_epoch
    monkeypatch.setattr("dgc.stages.train.Tracker", Recorder)
    monkeypatch.setattr("dgc.stages.train.train_one_epoch", dies_in_second_epoch())
    params = load_params(tiny_params_file)
    with pytest.raises(KeyboardInterrupt):
        train_model("digits", "resnet18", params, tmp_path, log=lambda s: None)
    monkeypatch.setattr("dgc.stages.train.train_one_epoch", real)
    assert train_model("digits", "resnet18", params, tmp_path, log=lambda s: None).resumed_from == 1
    train_model("digits", "resnet18", params, tmp_path, fresh=True, log=lambda s: None)
    assert resumes == [False, True, False]


def test_evaluate_compile_sets_how_the_latency_runs(tmp_path, tiny_params_file, monkeypatch):
    from dgc.config import with_overrides
    from dgc.stages.evaluate import evaluate_run

    params = load_params(tiny_params_file, {"train.epochs": 1, "evaluate.device": "cpu",
                                            "evaluate.latency_batch_sizes": [2], "evaluate.latency_repeats": 1})
    train_model("digits", "resnet18", params, tmp_path, log=lambda s: None)
    modes = []

    def fake_compile(model, mode=None, **kwargs):  # a real torch.compile costs ~20 s
        modes.append(mode)
        return lambda *args, **kw: model(*args, **kw)

    monkeypatch.setattr(torch, "compile", fake_compile)
    for setting, ran in (("off", "off"), ("auto", "off"), ("default", "default")):
        result = evaluate_run("digits", "resnet18", with_overrides(params, "evaluate", compile=setting), tmp_path,
                              log=lambda s: None)
        assert result["info"]["latency_compile"] == ran, setting
        assert result["metrics"]["latency_ms_per_image"]["batch_2"] > 0
    assert modes == ["default"]  # auto stays eager on the CPU


def test_spread_over_seeds_survives_a_diverged_seed():
    import math

    from dgc.stages.evaluate import _mean_and_spread

    mean, std = _mean_and_spread([{"loss": 1.0, "epoch": 3}, {"loss": 3.0, "epoch": 3}])
    assert (mean["loss"], std["loss"]) == (2.0, pytest.approx(math.sqrt(2)))
    mean, std = _mean_and_spread([{"loss": 1.0, "epoch": 3}, {"loss": float("nan"), "epoch": 3}])
    assert math.isnan(mean["loss"]) and math.isnan(std["loss"])
