"""GPU leases: several single-GPU training runs on one machine, each on a GPU no other run holds.

`lease_gpu(count, lock_dir)` takes the first GPU k in range(count) whose lock file
`<lock_dir>/<host>-gpu<k>.lock` it can lock exclusively (fcntl.flock, non-blocking) and keeps that file
open for the whole run; when every GPU is held it waits and retries. The kernel drops a flock when
the process holding it exits, however it exits (kill -9 included), so a crashed run never leaves a
stale lease behind (processes forked by the run, e.g. DataLoader workers, share the lock until
they exit too; PyTorch's workers exit within seconds of their parent). The file also holds the
holder's pid and start time, for humans (`dgc gpus`).

The default lock folder, `$DGC_GPU_LOCK_DIR` or `$XDG_CACHE_HOME/dgc/gpu-leases` (XDG_CACHE_HOME
defaults to ~/.cache, as for the CPU kernels' cache), is shared by every workspace of the user (DVC's
temporary workspaces for queued experiments included), so runs started from anywhere share the GPUs.
The host name in each file's name keeps machines that share a home folder (NFS) from taking each
other's GPU k for their own. Nothing here imports torch: the lease is testable without a GPU.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Sequence

LOCK_DIR_ENV = "DGC_GPU_LOCK_DIR"


def default_lock_dir() -> Path:
    """$DGC_GPU_LOCK_DIR, else $XDG_CACHE_HOME/dgc/gpu-leases, XDG_CACHE_HOME defaulting to ~/.cache
    (one per user, shared by all workspaces)."""
    env = os.environ.get(LOCK_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dgc" / "gpu-leases"


def visible_gpu_ids(count: int, cuda_visible_devices: str | None) -> list[str]:
    """The physical id of each of the `count` CUDA devices a process sees, for naming lock files.

    Under CUDA_VISIBLE_DEVICES=4,5 device cuda:0 is GPU 4: its lock must be <host>-gpu4.lock, or a run
    started with another CUDA_VISIBLE_DEVICES would take the same GPU under another name."""
    entries = [e.strip() for e in (cuda_visible_devices or "").split(",") if e.strip()]
    if cuda_visible_devices is None or len(entries) < count:
        return [str(k) for k in range(count)]
    return entries[:count]


@dataclass
class GpuLease:
    """GPU `index` (the cuda:<index> of this process) held through the lock file at `path`."""

    index: int
    path: Path
    _file: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._file is not None

    def release(self) -> None:
        """Free the GPU (idempotent). Emptying the file first keeps `dgc gpus` from naming us."""
        if self._file is None:
            return
        try:
            self._file.truncate(0)
            self._file.flush()
        except OSError:
            pass  # a full disk must not keep the GPU leased: the unlock below still happens
        # Unlock explicitly rather than rely on close(): a DataLoader worker forked during the run
        # shares this open file, and the flock would last as long as that worker otherwise.
        fcntl.flock(self._file.fileno(), fcntl.LOCK_UN)
        self._file.close()
        self._file = None

    def __enter__(self) -> GpuLease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_name(gpu_id: str, host: str | None = None) -> str:
    """The lease file of GPU `gpu_id` of `host` (default: this machine): <host>-gpu<id>.lock."""
    host = (host or socket.gethostname() or "localhost").replace(os.sep, "_")
    return f"{host}-gpu{gpu_id}.lock"


def _lock_path(lock_dir: Path, gpu_id: str) -> Path:
    return lock_dir / lock_name(gpu_id)


def try_lease(count: int, lock_dir: str | Path, ids: Sequence[str] | None = None) -> GpuLease | None:
    """The lease of the first free GPU in range(count), or None when all are held (no waiting)."""
    if count < 1:
        raise ValueError(f"a GPU lease needs at least one GPU, got count={count}")
    ids = list(ids) if ids is not None else [str(k) for k in range(count)]
    if len(ids) != count:
        raise ValueError(f"{len(ids)} GPU ids for {count} GPUs")
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    for index, gpu_id in enumerate(ids):
        path = _lock_path(lock_dir, gpu_id)
        # "a+" creates the file without truncating it: the holder's note stays until we hold the lock
        fh = open(path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            continue
        except BaseException:
            fh.close()
            raise
        fh.seek(0)
        fh.truncate(0)
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        fh.write(f"pid {os.getpid()}\nstarted {started}\ngpu {gpu_id} (cuda:{index})\n")
        fh.flush()
        return GpuLease(index, path, fh)
    return None


def lease_gpu(count: int, lock_dir: str | Path | None = None, poll_seconds: float = 5.0,
              log: Callable[[str], None] = print, ids: Sequence[str] | None = None,
              timeout: float | None = None) -> GpuLease:
    """Lease the first free GPU in range(count) (lock dir default: `default_lock_dir()`), waiting
    while all are held; `ids` name the lock files (default 0..count-1, see `visible_gpu_ids`).
    Logs one line when it has to wait; raises TimeoutError after `timeout` seconds (None: never)."""
    lock_dir = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    deadline = None if timeout is None else time.monotonic() + timeout
    waiting = False
    while True:
        lease = try_lease(count, lock_dir, ids)
        if lease is not None:
            if waiting:
                log(f"GPU {lease.index} is free now: leased it")
            return lease
        if deadline is not None and time.monotonic() >= deadline:
            raise TimeoutError(f"all {count} GPUs stayed leased for {timeout} s (locks in {lock_dir})")
        if not waiting:
            log(f"all {count} GPUs are leased by other runs (locks in {lock_dir}); waiting for one")
            waiting = True
        time.sleep(poll_seconds)


@dataclass(frozen=True)
class LeaseInfo:
    """What `dgc gpus` shows for one GPU: whether it is leased and the holder's note."""

    index: int
    path: Path
    held: bool
    note: str


def lease_status(count: int, lock_dir: str | Path | None = None,
                 ids: Sequence[str] | None = None) -> list[LeaseInfo]:
    """Who holds each GPU's lease now. Probes with a shared lock that it drops at once; a run
    trying to lease in that instant sees the GPU busy and takes another or retries."""
    lock_dir = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    ids = list(ids) if ids is not None else [str(k) for k in range(count)]
    out = []
    for index, gpu_id in enumerate(ids):
        path = _lock_path(lock_dir, gpu_id)
        if not path.exists():
            out.append(LeaseInfo(index, path, False, ""))
            continue
        with open(path) as fh:
            note = fh.read().strip()
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
                held = False
            except BlockingIOError:
                held = True
        # a free GPU's note is from a run that died without releasing (kill -9): not a holder
        out.append(LeaseInfo(index, path, held, note if held else ""))
    return out


def should_lease_gpu(device_type: str, device_setting: str, distributed: bool,
                     cuda_visible_devices: str | None, device_count: int) -> bool:
    """Whether a training run leases one GPU of several: only a single-process CUDA run whose
    train.device names no index ('auto' or 'cuda'), on a machine where it sees more than one GPU
    (CUDA_VISIBLE_DEVICES not narrowed to one). Under torchrun each rank has its LOCAL_RANK GPU."""
    if device_type != "cuda" or distributed or device_setting not in ("auto", "cuda"):
        return False
    if cuda_visible_devices is not None:
        entries = [e for e in cuda_visible_devices.split(",") if e.strip()]
        if len(entries) <= 1:
            return False
    return device_count > 1
