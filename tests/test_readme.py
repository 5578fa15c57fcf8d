"""README's and docs/'s commands are written to work verbatim in a new user's shell, and their links hold.

A new user's PATH has no .venv/bin, so every command of a ```bash block must name its program by a
path the repository provides (`.venv/bin/...`, `bash benchmarks/...`) or be `make`/`git`; each `dgc`
subcommand it names must exist and each script it runs must be in the repository. The same holds in
every page of docs/, where the README's details went. The README stays a front page (at most 200
lines) that links every page of docs/, and every relative link of the README and of docs/ points to a
file of the repository (and to a heading of it, for a `#anchor` into a markdown file). (Running the
commands all is what the closing note of a release reports; this test keeps them from drifting
meanwhile.)
"""

import re
import shlex
from pathlib import Path

import pytest

from dgc.cli import build_parser

ROOT = Path(__file__).parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
FILES = [README, *DOCS]
IDS = [str(path.relative_to(ROOT)) for path in FILES]
PROGRAMS = ("make", "git", ".venv/bin/dgc", ".venv/bin/dvc", ".venv/bin/python", ".venv/bin/torchrun", ".venv/bin/jupyter",
            "bash", "open", "xdg-open")
README_MAX_LINES = 200


def commands_of(path: Path) -> list[str]:
    text = path.read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split(" #", 1)[0].strip()
            if line and not line.startswith("#"):
                commands += [part.strip() for part in re.split(r"&&|;", line) if part.strip()]
    return commands


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)


def subcommands() -> set[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return set(action.choices)


def prose(text: str) -> str:
    """The text outside fenced code blocks (links and headings only count there)."""
    return re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.S | re.M)


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: its text (links as their text, no code marks) lowercased, every
    character but letters, digits, spaces, `-` and `_` dropped, spaces turned into `-`."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())
    text = re.sub(r"[^\w\- ]", "", text.lower())
    return text.replace(" ", "-")


def anchors_of(path: Path) -> set[str]:
    """Every heading's anchor in a markdown file, a repeated one suffixed -1, -2, ... as GitHub does."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", prose(path.read_text()), flags=re.M):
        base = anchor(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        anchors.add(base if n == 0 else f"{base}-{n}")
    return anchors


def relative_links(path: Path) -> list[str]:
    """The targets of the markdown links `[text](target)` of a file that are not URLs."""
    targets = re.findall(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", prose(path.read_text()))
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_the_docs_have_commands_and_the_readme_its_own():
    assert len(commands_of(README)) >= 5 and python_blocks(README)
    assert sum(len(commands_of(path)) for path in FILES) >= 10


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_each_command_names_its_program_by_a_path_that_exists(path):
    for command in commands_of(path):
        words = shlex.split(command)
        env = 0
        while "=" in words[env] and not words[env].startswith((".", "/")):
            env += 1  # VAR=value prefixes
        program = words[env]
        assert program in PROGRAMS, f"{path.name}: {command!r}: a new user's shell has no {program!r} on PATH"
        if program in ("bash", ".venv/bin/python") and words[env + 1].endswith((".sh", ".py")):
            assert (ROOT / words[env + 1]).exists(), f"{path.name}: {command}"


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_every_dgc_subcommand_named_exists(path):
    known = subcommands()
    for command in commands_of(path):
        words = shlex.split(command)
        if ".venv/bin/dgc" in words:
            sub = words[words.index(".venv/bin/dgc") + 1]
            assert sub in known, f"{path.name}: {command!r}: no `dgc {sub}`"


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_points_to_no_file_outside_the_repository(path):
    text = path.read_text()
    if path == README:
        assert "../" not in text
    for up in re.findall(r"(?:\.\./)+[\w./-]*", text):
        assert (path.parent / up).resolve().is_relative_to(ROOT), f"{path.name}: {up}"
    for name in re.findall(r"`((?:docs|benchmarks|studies|profiles|claims|notebooks|dgc|bin)/[\w./-]+)`", text):
        assert (ROOT / name).exists(), f"{path.name}: {name}"


def test_readme_is_a_front_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines: move details to docs/"
    assert not [n for n, line in enumerate(lines, 1) if len(line) >= 400], "rows of 400+ characters"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / target.split("#", 1)[0]).resolve() for target in relative_links(README)}
    assert DOCS
    unlinked = [str(path.relative_to(ROOT)) for path in DOCS if path.resolve() not in linked]
    assert not unlinked, f"README.md links no {unlinked}"


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_every_relative_link_points_to_a_file_and_heading_that_exist(path):
    broken = []
    for target in relative_links(path):
        file, _, fragment = target.partition("#")
        dest = (path.parent / file).resolve() if file else path.resolve()
        if not dest.is_relative_to(ROOT) or not dest.exists():
            broken.append(f"{target}: no such file")
        elif fragment and dest.suffix == ".md" and fragment not in anchors_of(dest):
            broken.append(f"{target}: no such heading in {dest.relative_to(ROOT)}")
    assert not broken, f"{path.name}: {broken}"


def test_github_anchor_rule():
    assert anchor("The paper profile (GPU)") == "the-paper-profile-gpu"
    assert anchor("Why DGC starts slow (measured)") == "why-dgc-starts-slow-measured"
    assert anchor("The training-budget study (`studies/budget.py`)") == "the-training-budget-study-studiesbudgetpy"
    assert anchor("9. Several GPUs (`dgc/runtime/gpus.py`)") == "9-several-gpus-dgcruntimegpuspy"
    assert anchor("The DGC layer's executions") == "the-dgc-layers-executions"


def _pages(root: Path) -> None:
    (root / "docs").mkdir(parents=True)
    (root / "README.md").write_text("# x\n<!-- summary:start -->\nstale text\n<!-- summary:end -->\ntail\n")
    (root / "docs" / "results.md").write_text("<!-- results:start -->\nstale text\n<!-- results:end -->\n")
    (root / "docs" / "speed.md").write_text("a\n<!-- speed:start -->\nstale text\n<!-- speed:end -->\nb\n")


def test_dgc_readme_rebuilds_every_generated_block_from_reports(tmp_path):
    from dgc.commands.readme import update_readme

    _pages(tmp_path)
    written = update_readme(tmp_path, ROOT / "reports")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in written) == [
        "README.md", "docs/results.md", "docs/speed.md"]
    readme = (tmp_path / "README.md").read_text()
    assert "stale text" not in readme and readme.startswith("# x\n") and readme.endswith("<!-- summary:end -->\ntail\n")
    assert "### Smoke evidence" in readme and "| digits | densenet86_dgc |" in readme
    assert "The paper's claims" not in readme  # the claims table is docs/results.md's
    results = (tmp_path / "docs" / "results.md").read_text()
    assert "### The paper's claims" in results and "| digits | densenet86_dgc |" in results
    speed = (tmp_path / "docs" / "speed.md").read_text()
    assert "stale text" not in speed and "### " in speed


def test_dgc_readme_writes_nothing_when_a_block_is_missing(tmp_path):
    from dgc.commands.readme import update_readme
    from dgc.errors import BadInput

    _pages(tmp_path)
    (tmp_path / "docs" / "speed.md").write_text("no markers\n")
    with pytest.raises(BadInput, match="speed:start"):
        update_readme(tmp_path, ROOT / "reports")
    assert "stale text" in (tmp_path / "README.md").read_text()  # nothing written before the error


@pytest.mark.parametrize("path", FILES, ids=IDS)
def test_every_python_block_runs_verbatim(path):
    """What a reader pastes into Python works as printed (in a fresh interpreter, from the project folder)."""
    import subprocess
    import sys

    for block in python_blocks(path):
        proc = subprocess.run([sys.executable, "-c", block], cwd=ROOT, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{path.name}: the block\n{block}\nfails: {proc.stderr.strip().splitlines()[-1:]}"
