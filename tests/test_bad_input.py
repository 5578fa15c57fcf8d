"""What a new user's mistakes and faults get: one line naming what is wrong (exit 2, or 1 for a run
that cannot go on), no traceback, and nothing already written lost. One test per case of the table
in docs/pipeline.md ("Bad input and faults"); the ones that start processes are in the slow set."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from helpers import copy_project, wait_for

from dgc.cli import main
from dgc.data.cifar_format import read_split, write_batch, write_meta
from dgc.errors import DGCError
from dgc.runtime.run_lock import RunLocked, run_lock
from dgc.stages.train import HISTORY_COLUMNS, history_csv, merge_histories

ROOT = Path(__file__).resolve().parents[1]


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


# -- commands that would replace committed evidence with less ------------------------------------
@pytest.mark.parametrize("page", ["ablations", "budget"])
def test_a_study_page_is_not_replaced_by_an_empty_one(page, tmp_path, monkeypatch, capsys):
    from dgc.experiments import queue
    from studies import budget

    (tmp_path / f"{page}.html").write_text("the measured page")
    monkeypatch.setattr(queue, "live_experiments", lambda all_commits=False: [])
    command = {"ablations": lambda argv: main(["ablations", *argv]), "budget": lambda argv: budget.main(["page", *argv])}
    assert command[page](["--reports", str(tmp_path)]) == 2
    assert (tmp_path / f"{page}.html").read_text() == "the measured page"
    assert "is kept" in one_line(capsys)


def _run_history(runs: Path, seed: int, epochs: int, top1: float) -> None:
    folder = runs / "digits-densenet86" / f"seed{seed}"
    folder.mkdir(parents=True)
    rows = [{c: 0.0 for c in HISTORY_COLUMNS} | {"epoch": e, "test_top1": top1} for e in range(1, epochs + 1)]
    (folder / "history.csv").write_text(history_csv(rows))


def test_training_one_seed_keeps_the_other_seeds_history(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "history"
    for seed in (0, 1, 2):
        _run_history(runs, seed, 3, 50.0 + seed)
    merge_histories(runs, "digits", "densenet86", [0, 1, 2], out)
    (runs / "digits-densenet86" / "seed0" / "history.csv").write_text(
        history_csv([{c: 0.0 for c in HISTORY_COLUMNS} | {"epoch": e, "test_top1": 99.0} for e in (1, 2, 3)]))
    merge_histories(runs, "digits", "densenet86", [0], out, keep_others=True)  # `dgc train ... --seed 0`
    lines = (out / "digits-densenet86.csv").read_text().splitlines()[1:]
    seeds = [line.split(",")[0] for line in lines]
    assert seeds == ["0"] * 3 + ["1"] * 3 + ["2"] * 3  # merged by seed, nothing dropped
    top1 = HISTORY_COLUMNS.index("test_top1") + 1
    assert [line.split(",")[top1] for line in lines[:3]] == ["99"] * 3 and lines[3].split(",")[top1] == "51"


def test_the_history_dvc_would_delete_before_a_refused_train_is_persistent():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    outs = {k: v for o in stages["train"]["outs"] if isinstance(o, dict) for k, v in o.items()}
    history = outs["reports/history/${item.dataset}-${item.model}.csv"]
    assert history["persist"] is True and history["cache"] is False


def test_a_gpu_check_dry_run_never_lands_in_the_docs():
    import gpu_check

    from dgc.bench.registry import gpu_section
    from dgc.errors import BadInput

    assert gpu_check.parse_args(["--dry-run"]).out_dir == "build/gpu-dry-run"
    with pytest.raises(BadInput, match="dry-run"):
        gpu_section("## GPU check: cpu\n\n**Dry run** (CPU, tiny models, 2 repeats): checks the script.\n")


# -- the wrong job ------------------------------------------------------------------------------------
def test_a_missing_params_file_starts_nothing(tmp_path, capsys):
    runs = tmp_path / "runs"
    assert main(["train", "digits", "densenet86", "--params", str(tmp_path / "nope.yaml"),
                 "--runs", str(runs)]) == 2
    assert "--params" in one_line(capsys) and not runs.exists()


@pytest.mark.parametrize("argv, named", [
    (["compare", "--metrics-dir", "/nonexistent/metrics"], "--metrics-dir"),
    (["compare", "--claims", "/nonexistent/paper.yaml"], "--claims"),
    (["plots", "--history-dir", "/nonexistent/history"], "--history-dir"),
    (["report", "--notebook", "/nonexistent/report.ipynb"], "--notebook"),
    (["ablations", "--from", "/nonexistent/exp.json"], "--from"),
])
def test_every_path_given_is_checked_before_any_work(argv, named, capsys):
    assert main(argv) == 2
    assert one_line(capsys).startswith(f"dgc: error: {named} /nonexistent")


# -- tracebacks that are one line now ---------------------------------------------------------------
def test_a_bad_thread_count_is_one_line(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["bench", "--threads", "-1"])
    assert stop.value.code == 2 and "--threads: must be at least 1" in one_line(capsys)


def test_a_truncated_data_batch_is_named(tmp_path):
    folder = tmp_path / "digits" / "digits-batches-py"
    folder.mkdir(parents=True)
    images, labels = np.zeros((4, 3, 8, 8), np.uint8), np.arange(4) % 10
    for name in ("data_batch_1", "test_batch"):
        write_batch(folder / name, images, labels)
    write_meta(folder / "batches.meta", label_names=[str(i).encode() for i in range(10)], image_size=8)
    batch = folder / "data_batch_1"
    batch.write_bytes(batch.read_bytes()[:100])
    with pytest.raises(DGCError, match=r"data_batch_1 is damaged .*run `dgc data digits` again") as error:
        read_split(tmp_path / "digits", "digits", "train")
    assert "\n" not in str(error.value)


def test_a_read_only_reports_folder_is_one_line_and_keeps_the_old_file(tmp_path, monkeypatch, capsys):
    out = tmp_path / "reports"
    out.mkdir()
    (out / "vs_paper.json").write_text("{}")

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    assert main(["compare", "--out-dir", str(out)]) == 2
    err = one_line(capsys)
    assert "cannot write" in err and "vs_paper.json" in err and "Read-only file system" in err
    assert (out / "vs_paper.json").read_text() == "{}"


def test_a_checkpoint_of_random_bytes_is_one_short_line(tmp_path):
    from dgc.runtime.checkpoint import load_checkpoint

    path = tmp_path / "checkpoint.pt"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(DGCError) as error:
        load_checkpoint(path)
    assert "\n" not in str(error.value) and "weights_only" not in str(error.value) and len(str(error.value)) < 400


# -- one trainer per run folder ----------------------------------------------------------------------
def test_a_second_trainer_of_the_same_run_folder_is_told_who_holds_it(tmp_path):
    with run_lock(tmp_path / "seed0"):
        with pytest.raises(RunLocked, match=rf"being trained by process {os.getpid()} on host"):
            with run_lock(tmp_path / "seed0"):
                pass
    with run_lock(tmp_path / "seed0"):  # released: the next one gets it
        pass


@pytest.mark.slow
def test_two_dgc_train_on_one_run_folder(tmp_path, tiny_params_file):
    raw = yaml.safe_load(tiny_params_file.read_text())
    raw["train"].update(epochs=200, seeds=[0])
    tiny_params_file.write_text(yaml.safe_dump(raw))
    cmd = [sys.executable, "-m", "dgc", "train", "digits", "densenet86", "--params", str(tiny_params_file),
           "--runs", str(tmp_path / "runs"), "--history-dir", ""]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        lock = tmp_path / "runs" / "digits-densenet86" / "seed0" / ".lock"
        wait_for(lambda: lock.exists() and lock.read_text(), "the first trainer's lock", timeout=120)
        second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 1
        assert f"is being trained by process {first.pid}" in second.stderr and "Traceback" not in second.stderr
    finally:
        first.kill()
        first.wait()
    time.sleep(0.2)
    assert not run_lock_held(tmp_path / "runs" / "digits-densenet86" / "seed0")  # kill -9 frees it


def run_lock_held(folder: Path) -> bool:
    try:
        with run_lock(folder):
            return False
    except RunLocked:
        return True


@pytest.mark.slow
def test_a_refused_dvc_repro_loses_no_history(tmp_path):
    dest = copy_project(tmp_path / "dgc")
    env = {**os.environ, "WANDB_MODE": "disabled", "PYTHONPATH": "", "DGC_PYTHON": sys.executable,
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    dvc = [sys.executable, "-m", "dvc"]
    for args in (["git", "init", "-q"], [*dvc, "repro", "data@digits"]):
        subprocess.run(args, cwd=dest, env=env, check=True, capture_output=True)
    history = dest / "reports" / "history" / "digits-densenet86_dgc.csv"
    history.parent.mkdir(parents=True, exist_ok=True)
    history.write_text("seed,epoch\n0,1\n")  # stands for the committed history
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["train"]["epochs"] = -1
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    proc = subprocess.run([*dvc, "repro", "-s", "train@digits-densenet86_dgc"], cwd=dest, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "train.epochs" in proc.stdout + proc.stderr
    assert history.read_text() == "seed,epoch\n0,1\n"


def test_dvc_plots_output_is_ignored():
    proc = subprocess.run(["git", "check-ignore", "-q", "dvc_plots/index.html"], cwd=ROOT)
    assert proc.returncode == 0
