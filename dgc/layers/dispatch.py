"""How a layer picks its execution: a layer type's `executions` table of `Execution` rows (PyTorch only; a
kernel adds its rows to one model's layers with `Executions.extended`, so training never imports one)."""

from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Mapping
from typing import Any, Callable, Iterator

import torch
from torch import nn

Applies = Callable[[nn.Module, torch.Tensor], bool]


def always(layer: nn.Module, x: torch.Tensor) -> bool:
    return True


@dataclass(frozen=True)
class Execution:
    """One way to run a layer: `run(layer, x, ...)`, where it applies, where `auto` picks it, its fallback."""

    name: str
    run: Callable[..., Any]
    applies: Applies = always
    needs: str = "nothing: it runs everywhere"  # where `applies` is true, in words (errors, test skips)
    auto: Applies | None = always  # where 'auto' picks it (tried in table order); None: only when asked for
    fallback: str | None = None  # the execution to turn to where this one does not apply
    differentiable: bool = True  # False: forward only (applies only with autograd off)
    select: Callable[..., Any] | None = None  # DGC: the selection it runs after (None: the layer's own)


class Executions(Mapping[str, Execution]):
    """The executions of one layer type by name, in the order `auto` tries them (immutable)."""

    def __init__(self, *rows: Execution) -> None:
        self.rows = {row.name: row for row in rows}

    def extended(self, *rows: Execution) -> Executions:
        """A new table with `rows` first (auto tries them before the others)."""
        return Executions(*rows, *(row for row in self.rows.values() if row.name not in {r.name for r in rows}))

    def __getitem__(self, name: str) -> Execution:
        return self.rows[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def choose(self, layer: nn.Module, x: torch.Tensor, asked: str = "auto") -> Execution:
        """For 'auto' the first row whose `auto` and `applies` hold; else `asked` (or its fallbacks)."""
        if asked == "auto":
            for row in self.rows.values():
                if row.auto is not None and row.auto(layer, x) and row.applies(layer, x):
                    return row
            # every table ends with an execution that always applies
            raise RuntimeError(f"no execution of {type(layer).__name__} applies")
        if asked not in self.rows:
            raise ValueError(f"unknown execution {asked!r}; use 'auto' or one of {', '.join(self.rows)}")
        execution = self.rows[asked]
        while not execution.applies(layer, x):
            if execution.fallback is None:
                told = "" if execution.name == asked else f" (asked for: {asked!r})"
                raise RuntimeError(f"the {execution.name} execution needs {execution.needs}{told}")
            execution = self.rows[execution.fallback]
        return execution
