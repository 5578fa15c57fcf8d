"""One trainer per run folder: `dgc train` holds an exclusive `fcntl.flock` on the folder's `.lock`
while it trains (the kernel drops it when the process ends, kill -9 included: never stale); the file
names its holder (pid, host, start) for the second process's message."""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import platform
from pathlib import Path
from typing import Iterator

from dgc.errors import DGCError


class RunLocked(DGCError, RuntimeError):
    """Another process trains into the same run folder."""

    exit_status = 1


@contextlib.contextmanager
def run_lock(folder: str | Path) -> Iterator[Path]:
    """Hold the lock of run `folder` (created if missing) for the block; RunLocked names another holder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(f"{folder} is being trained by {holder(path)}; wait for it to end, or stop it "
                            f"first") from None
        me = {"pid": os.getpid(), "host": platform.node(),
              "since": datetime.datetime.now().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def holder(path: Path) -> str:
    """'process 1234 on host h (since 2026-12-03T09:00:00)', or 'another process' when unknown."""
    try:
        who = json.loads(path.read_text() or "{}")
        return f"process {who['pid']} on host {who['host']} (since {who['since']})"
    except (OSError, ValueError, KeyError):
        return "another process"
