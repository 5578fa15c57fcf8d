"""`torch.compile` as a setting (`train.compile`, `evaluate.compile`), timed apart, never fatal: `auto` is
'default' on CUDA (the DGC models are launch-bound), eager on CPU (docs/speed.md). A failed compile warns
once and runs eagerly; `CompileClock` times compilation so that step times leave it out."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, Iterator

import torch
from torch import nn

from dgc.config import COMPILE_MODES


def resolve_compile(setting: str, device: torch.device) -> str | None:
    """The torch.compile mode for `setting` on `device`, or None to run eagerly."""
    if setting not in COMPILE_MODES:
        raise ValueError(f"compile must be one of {', '.join(COMPILE_MODES)}, got {setting!r}")
    if setting == "auto":
        return "default" if device.type == "cuda" else None
    return None if setting == "off" else setting


def _is_compile_error(exc: BaseException) -> bool:
    """An error raised by dynamo/inductor/Triton while compiling (not by the model's own maths)."""
    from torch._dynamo.exc import TorchDynamoException

    return isinstance(exc, TorchDynamoException) or (type(exc).__module__ or "").startswith(
        ("torch._inductor", "torch._dynamo", "triton"))


class CompileClock:
    """Seconds spent compiling while active, and how many compilations ran (dynamo's callbacks; 0 without them)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.compilations = 0
        self._started: float | None = None

    def _start(self, _args: Any) -> None:
        self._started = time.perf_counter()

    def _end(self, _args: Any) -> None:
        if self._started is not None:
            self.seconds += time.perf_counter() - self._started
            self.compilations += 1
            self._started = None

    @contextlib.contextmanager
    def active(self) -> Iterator["CompileClock"]:
        handler = getattr(getattr(torch._dynamo, "callback", None), "callback_handler", None)
        if handler is None:
            yield self
            return
        handler.register_start_callback(self._start)
        handler.register_end_callback(self._end)
        try:
            yield self
        finally:
            handler.remove_start_callback(self._start)
            handler.remove_end_callback(self._end)


class Compiled:
    """`model` through torch.compile(mode) (eager when mode is None), eager for good once compiling fails."""

    def __init__(self, model: nn.Module, mode: str | None, log: Callable[[str], None] = print) -> None:
        self.eager, self.mode, self.log = model, mode, log
        self.module: Callable[..., Any] = model if mode is None else torch.compile(model, mode=mode)

    @property
    def compiled(self) -> bool:
        return self.module is not self.eager

    def run(self, fn: Callable[[Callable[..., Any]], Any]) -> Any:
        """fn(module) through the compiled module; on a compile error warn and run it again eagerly, for good."""
        try:
            return fn(self.module)
        except Exception as exc:  # noqa: BLE001 - only compile errors are absorbed, see below
            if not self.compiled or not _is_compile_error(exc):
                raise
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            self.log(f"warning: torch.compile(mode={self.mode!r}) failed ({type(exc).__name__}: "
                     f"{first}); continuing eagerly")
            self.module = self.eager
            for p in self.eager.parameters():
                p.grad = None
            return fn(self.module)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.run(lambda m: m(*args, **kwargs))
