"""`dgc paper-ref`: the git tag `paper`, whose metrics files hold the paper's numbers, and one tag per earlier
reproduction of the claims file's `references:` (e.g. `mlrc2020`).

A tag is a parentless commit of HEAD's tree with reports/metrics/ (and reports/architecture.json) holding the
claimed numbers at our metrics' paths and keys, for `dvc metrics diff paper` offline; a fixed author and date
make it idempotent (same claims and HEAD tree, same commit)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from dgc.errors import BadInput, DGCError
from dgc.measure.claims import Claim, Reference

TAG = "paper"
PAPER_MESSAGE = "The paper's numbers (claims/paper.yaml) as metrics files, for `dvc metrics diff paper`"
REFERENCE_MESSAGE = "The numbers of the earlier reproduction {} (claims/paper.yaml references) as metrics files"
METRICS_DIR = "reports/metrics"
ARCHITECTURE_JSON = "reports/architecture.json"
_IDENTITY = {f"GIT_{role}_{key}": value for role in ("AUTHOR", "COMMITTER") for key, value in
             (("NAME", "DGC paper (Su et al., ECCV 2020)"), ("EMAIL", "paper@dgc.invalid"),
              ("DATE", "2020-07-09T00:00:00Z"))}


def _put(node: dict[str, Any], metric: str, value: Any) -> None:
    """Set the dotted `metric` (best.top1_err) of a nested dict."""
    *parents, leaf = metric.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def metrics_tags(claims: list[Claim], references: list[Reference]) -> dict[str, dict[str, dict[str, Any]]]:
    """{tag: {relative path: nested metrics dict}}: `paper` with the value of every numeric claim, and one tag
    per earlier reproduction of `references`."""
    tags: dict[str, dict[str, dict[str, Any]]] = {TAG: {}}
    for row in [*(c for c in claims if c.value is not None), *references]:
        tag = row.reference if isinstance(row, Reference) else TAG
        files = tags.setdefault(tag, {})
        _put(files.setdefault(f"{METRICS_DIR}/{row.dataset}-{row.model}.json", {}), row.metric, row.value)
        if tag == TAG and row.kind == "architecture":  # also where the `architecture` stage writes ours
            arch = files.setdefault(ARCHITECTURE_JSON, {})
            arch.setdefault(f"{row.dataset}-{row.model}", {})[row.metric] = row.value
    return tags


class GitFailed(DGCError, RuntimeError):
    """A git command the tags need failed (not a repository, a locked ref): one line with git's message."""

    exit_status = 1


def _git(args: list[str], repo: Path, env: dict | None = None, input: str | None = None, check: bool = True) -> str:
    """git's output; a failure is a GitFailed (with `check`) or the output so far ("" for `rev-parse --quiet`)."""
    try:
        proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, input=input,
                              env={**os.environ, **(env or {})})
    except FileNotFoundError:
        raise GitFailed(f"`dgc paper-ref` needs git, and no `git` is on PATH (or {repo} does not exist)") from None
    if proc.returncode != 0 and check:
        why = proc.stderr.strip().splitlines()
        why = why[0] if why else f"exit status {proc.returncode}"
        raise GitFailed(f"git {' '.join(args)} failed in {repo}: {why}")
    return proc.stdout.strip()


def make_tags(claims: list[Claim], references: list[Reference], repo: str | Path = ".") -> list[tuple[str, str, str]]:
    """Create or move the tag `paper`, then one per earlier reproduction: [(tag, commit, created/moved/unchanged)]."""
    tags = sorted(metrics_tags(claims, references).items(), key=lambda kv: (kv[0] != TAG, kv[0]))  # paper first
    return [(tag, *make_metrics_tag(tag, files, PAPER_MESSAGE if tag == TAG else REFERENCE_MESSAGE.format(tag), repo))
            for tag, files in tags]


def make_metrics_tag(tag: str, files: dict[str, dict[str, Any]], message: str,
                     repo: str | Path = ".") -> tuple[str, str]:
    """Create or move `tag` to a parentless commit of HEAD's tree with reports/metrics/ replaced by
    `files`; returns (commit, what happened to the tag: created, moved or unchanged)."""
    repo = Path(repo)
    if not _git(["rev-parse", "--verify", "--quiet", "HEAD"], repo, check=False):
        raise BadInput(f"{repo.resolve()} has no commit yet: commit the project first")
    texts = {path: json.dumps(content, indent=2, sort_keys=True) + "\n" for path, content in sorted(files.items())}
    # A dvc.yaml that only declares the metrics: the paper's tree has no pipeline outputs.
    texts["dvc.yaml"] = (f"# The {tag} numbers as metrics files (written by `dgc paper-ref`); no pipeline here.\n"
                         f"metrics:\n  - {METRICS_DIR}\n  - {ARCHITECTURE_JSON}\n")
    with tempfile.TemporaryDirectory() as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index"), **_IDENTITY}
        _git(["read-tree", "HEAD"], repo, env)
        _git(["rm", "-r", "--cached", "--quiet", "--ignore-unmatch", METRICS_DIR, ARCHITECTURE_JSON], repo, env)
        for path, text in texts.items():
            blob = _git(["hash-object", "-w", "--stdin"], repo, input=text)
            _git(["update-index", "--add", "--cacheinfo", f"100644,{blob},{path}"], repo, env)
        commit = _git(["commit-tree", _git(["write-tree"], repo, env), "-m", message], repo, env)
    old = _git(["rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}"], repo, check=False)
    if old == commit:
        return commit, "unchanged"
    _git(["tag", "-f", tag, commit], repo)
    return commit, "moved" if old else "created"


def dvc_command() -> str:
    """How a new user's shell runs this environment's dvc (PATH may hold none): its path, relative to
    the working folder when inside it (`.venv/bin/dvc`)."""
    dvc = Path(sys.executable).parent / "dvc"
    try:
        return str(dvc.relative_to(Path.cwd()))
    except ValueError:
        return str(dvc)
