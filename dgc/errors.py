"""The base class of the errors the `dgc` command expects: bad input, bad settings, a failed run.

`dgc.cli.main` prints a `DGCError` as one line, `dgc: error: <message>`, and exits with its
`exit_status`: 2 for input or settings the user can fix (the default), 1 for a run that failed
(a diverged training run, a failing notebook). Every other exception is a bug and keeps its traceback.
Each subclass also keeps the builtin base its callers catch (e.g. `ConfigError(DGCError, ValueError)`).
"""

from __future__ import annotations


class DGCError(Exception):
    """An expected error: its message is one line that names what is wrong and how to fix it."""

    exit_status: int = 2


class MissingInput(DGCError, FileNotFoundError):
    """A file a command reads does not exist; the message says which stage or step writes it."""


class BadInput(DGCError, ValueError):
    """An input file or argument the command cannot use; the message names it."""
