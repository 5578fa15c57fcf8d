"""GPU leases, with simulated GPU counts (no GPU needed): real processes competing for lock files."""

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dgc.runtime.gpus import (
    default_lock_dir,
    lease_gpu,
    lease_status,
    lock_name,
    should_lease_gpu,
    try_lease,
    visible_gpu_ids,
)

ROOT = Path(__file__).resolve().parents[1]
# Leases one of 2 simulated GPUs, says which, holds it until a line arrives on stdin.
HOLDER = """
import sys
from dgc.runtime.gpus import lease_gpu
lease = lease_gpu(2, sys.argv[1], poll_seconds=0.05, log=lambda s: print("LOG", s, flush=True))
print("GOT", lease.index, flush=True)
sys.stdin.readline()
lease.release()
print("RELEASED", flush=True)
"""


class Holder:
    """A lease-holding subprocess whose output lines are read with a timeout."""

    def __init__(self, lock_dir: Path):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(lock_dir)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env)
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line.strip())

    def line(self, timeout: float = 30) -> str:
        return self.lines.get(timeout=timeout)

    def got(self) -> int:
        line = self.line()
        assert line.startswith("GOT "), line
        return int(line.split()[1])

    def let_go(self):
        self.proc.stdin.write("\n")
        self.proc.stdin.flush()
        assert self.line() == "RELEASED"
        self.proc.wait(timeout=30)

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)


def test_processes_get_distinct_gpus_a_third_waits_and_gets_the_gpu_of_a_killed_holder(tmp_path):
    a, b = Holder(tmp_path), None
    holders = [a]
    try:
        first = a.got()
        b = Holder(tmp_path)
        holders.append(b)
        second = b.got()
        assert {first, second} == {0, 1}
        held = lease_status(2, tmp_path)
        assert [h.held for h in held] == [True, True]
        assert f"pid {b.proc.pid}" in held[second].note

        c = Holder(tmp_path)
        holders.append(c)
        waiting = c.line()  # it found both held and says so, once
        assert waiting.startswith("LOG all 2 GPUs are leased")
        assert c.lines.empty() and c.proc.poll() is None

        b.proc.send_signal(signal.SIGKILL)  # no clean-up: the kernel drops its lock
        b.proc.wait(timeout=30)
        assert c.line().startswith("LOG GPU ")  # "GPU k is free now", not one line per poll
        assert c.got() == second
        assert [h.held for h in lease_status(2, tmp_path)] == [True, True]
        c.let_go()
        a.let_go()
        assert [h.held for h in lease_status(2, tmp_path)] == [False, False]
    finally:
        for h in holders:
            h.kill()


def test_a_lease_released_by_its_context_is_free_again(tmp_path):
    with lease_gpu(1, tmp_path, log=lambda s: None) as lease:
        assert lease.index == 0 and lease.held
        assert try_lease(1, tmp_path) is None  # another open file of this process is refused too
        assert f"pid {os.getpid()}" in (tmp_path / lock_name("0")).read_text()
    assert not lease.held
    assert (tmp_path / lock_name("0")).read_text() == ""  # no stale holder note
    again = lease_gpu(1, tmp_path, log=lambda s: None, timeout=10)
    assert again.index == 0
    again.release()
    again.release()  # idempotent


def test_the_first_free_gpu_is_taken_and_a_full_machine_times_out_with_one_log_line(tmp_path):
    held = lease_gpu(3, tmp_path, log=lambda s: None)
    second = lease_gpu(3, tmp_path, log=lambda s: None)
    assert (held.index, second.index) == (0, 1)
    held.release()
    assert lease_gpu(3, tmp_path, log=lambda s: None).index == 0  # the lowest free index
    logs = []
    with lease_gpu(1, tmp_path / "one", log=lambda s: None):
        with pytest.raises(TimeoutError, match="1 GPUs stayed leased"):
            lease_gpu(1, tmp_path / "one", poll_seconds=0.01, log=logs.append, timeout=0.2)
    assert len(logs) == 1 and "waiting" in logs[0]


def test_lock_files_are_named_by_the_host_and_the_physical_gpu(tmp_path, monkeypatch):
    assert visible_gpu_ids(2, "4,5") == ["4", "5"]
    assert visible_gpu_ids(2, None) == ["0", "1"]
    monkeypatch.setattr("socket.gethostname", lambda: "node7")
    assert lock_name("4") == "node7-gpu4.lock" and lock_name("4", "a/b") == "a_b-gpu4.lock"
    with lease_gpu(2, tmp_path, ids=["4", "5"], log=lambda s: None) as lease:
        assert lease.index == 0 and lease.path.name == "node7-gpu4.lock"
        # another machine sharing the folder (an NFS home) has a GPU 4 of its own
        monkeypatch.setattr("socket.gethostname", lambda: "node8")
        with lease_gpu(2, tmp_path, ids=["4", "5"], log=lambda s: None) as other:
            assert other.index == 0 and other.path.name == "node8-gpu4.lock"
        assert [i.held for i in lease_status(2, tmp_path, ["4", "5"])] == [False, False]  # node8's view
    with pytest.raises(ValueError, match="count=0"):
        try_lease(0, tmp_path)


def test_lock_dir_default(monkeypatch, tmp_path):
    monkeypatch.setenv("DGC_GPU_LOCK_DIR", str(tmp_path / "locks"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_lock_dir() == tmp_path / "locks"  # the variable wins over XDG_CACHE_HOME
    monkeypatch.delenv("DGC_GPU_LOCK_DIR")
    assert default_lock_dir() == tmp_path / "xdg" / "dgc" / "gpu-leases"
    monkeypatch.setenv("XDG_CACHE_HOME", "")  # empty counts as unset, as in the XDG spec
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_lock_dir() == tmp_path / ".cache" / "dgc" / "gpu-leases"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_lock_dir() == tmp_path / ".cache" / "dgc" / "gpu-leases"


@pytest.mark.parametrize("device_type, setting, distributed, visible, count, expected", [
    ("cuda", "auto", False, None, 8, True),
    ("cuda", "cuda", False, "0,1,2", 3, True),
    ("cuda", "auto", False, None, 1, False),      # one GPU: nothing to choose
    ("cuda", "cuda:3", False, None, 8, False),    # the user named the GPU
    ("cuda", "auto", True, None, 8, False),       # torchrun: LOCAL_RANK picks the GPU
    ("cuda", "auto", False, "2", 8, False),       # already narrowed to one GPU
    ("cuda", "auto", False, "", 0, False),
    ("cpu", "auto", False, None, 8, False),
    ("cpu", "cpu", False, None, 0, False),
])
def test_should_lease_gpu(device_type, setting, distributed, visible, count, expected):
    assert should_lease_gpu(device_type, setting, distributed, visible, count) is expected


def test_gpus_command_without_cuda_says_so_and_succeeds(capsys):
    import torch

    from dgc.cli import main

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    assert main(["gpus"]) == 0
    assert "no CUDA device is visible" in capsys.readouterr().out
