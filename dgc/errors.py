"""The errors the `dgc` command expects: `dgc.cli.main` prints a `DGCError` as `dgc: error: <message>` and
exits with its `exit_status` (2: input the user can fix; 1: a failed run); anything else is a bug.
Subclasses keep the builtin base their callers catch (e.g. `ConfigError(DGCError, ValueError)`)."""

from __future__ import annotations


class DGCError(Exception):
    """An expected error: its message is one line that names what is wrong and how to fix it."""

    exit_status: int = 2


class MissingInput(DGCError, FileNotFoundError):
    """A file a command reads does not exist; the message says which stage or step writes it."""


class BadInput(DGCError, ValueError):
    """An input file or argument the command cannot use; the message names it."""
