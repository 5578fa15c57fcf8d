"""Stand-ins for a training job (the `fn` of dgc.commands.train_all.run_all), run by submitit's local
jobs: the `tests` folder must be on the job's PYTHONPATH (tests/test_train_all.py sets it)."""

import os
import signal
import time
from pathlib import Path


def stand_in(dataset: str, model: str, seed: int, running: str, ending: str) -> dict:
    """Marks itself running, notes how many stand-ins run at once, then ends as `ending` says:
    `ok` returns, `raise` raises, `kill` dies of SIGKILL (no result: an interrupted job)."""
    me = Path(running) / model
    me.touch()
    print("concurrent", len(list(Path(running).iterdir())), flush=True)
    time.sleep(0.5)
    me.unlink()
    print(f"last words of {model}", flush=True)
    if ending == "raise":
        raise ValueError(f"{model} went wrong")
    if ending == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    return {"best": {"test_top1": 50.0, "epoch": seed + 1}}
