"""README's commands are written to work verbatim in a new user's shell.

A new user's PATH has no .venv/bin, so every command of a ```bash block must name its program by a
path the repository provides (`.venv/bin/...`, `bash benchmarks/...`) or be `make`/`git`; each `dgc`
subcommand it names must exist and each script it runs must be in the repository. (Running them all
is what the closing note of a release reports; this test keeps them from drifting meanwhile.)
"""

import re
import shlex
from pathlib import Path

from dgc.cli import build_parser

ROOT = Path(__file__).parents[1]
PROGRAMS = ("make", "git", ".venv/bin/dgc", ".venv/bin/dvc", ".venv/bin/python", ".venv/bin/torchrun",
            "bash", "open", "xdg-open")


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                commands += [part.strip() for part in re.split(r"&&|;", line) if part.strip()]
    return commands


def subcommands() -> set[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return set(action.choices)


def test_readme_has_commands_and_each_names_its_program_by_a_path_that_exists():
    commands = readme_commands()
    assert len(commands) >= 10
    for command in commands:
        words = shlex.split(command)
        env = 0
        while "=" in words[env] and not words[env].startswith((".", "/")):
            env += 1  # VAR=value prefixes
        program = words[env]
        assert program in PROGRAMS, f"{command!r}: a new user's shell has no {program!r} on PATH"
        if program in ("bash", ".venv/bin/python") and words[env + 1].endswith((".sh", ".py")):
            assert (ROOT / words[env + 1]).exists(), command


def test_every_dgc_subcommand_in_the_readme_exists():
    known = subcommands()
    for command in readme_commands():
        words = shlex.split(command)
        if ".venv/bin/dgc" in words:
            sub = words[words.index(".venv/bin/dgc") + 1]
            assert sub in known, f"{command!r}: no `dgc {sub}`"


def test_readme_points_to_no_file_outside_the_repository():
    text = (ROOT / "README.md").read_text()
    assert "../" not in text
    for path in re.findall(r"`((?:docs|benchmarks|profiles|claims|notebooks|dgc|bin)/[\w./-]+)`", text):
        assert (ROOT / path).exists(), path
