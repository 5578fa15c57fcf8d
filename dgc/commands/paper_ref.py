"""`dgc paper-ref`: the git tag `paper`, whose metrics files hold the paper's numbers, and one tag per
earlier reproduction of `references:` in the claims file (e.g. `mlrc2020`), built the same way.

A tag is a parentless commit of HEAD's tree with reports/metrics/ (and reports/architecture.json) holding
the claimed numbers at our metrics files' paths and keys, so `dvc metrics diff paper` compares them
offline; a fixed author and date make it idempotent (same claims and HEAD tree, same commit).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from dgc.errors import BadInput, DGCError
from dgc.measure.claims import Claim, Reference

TAG = "paper"
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


def paper_metrics(claims: list[Claim]) -> dict[str, dict[str, Any]]:
    """{relative path: nested metrics dict} with the paper's value of every numeric claim."""
    files: dict[str, dict[str, Any]] = {}
    for claim in claims:
        if claim.value is None:
            continue
        _put(files.setdefault(f"{METRICS_DIR}/{claim.dataset}-{claim.model}.json", {}), claim.metric, claim.value)
        if claim.kind == "architecture":  # also where the `architecture` stage writes ours
            arch = files.setdefault(ARCHITECTURE_JSON, {})
            arch.setdefault(f"{claim.dataset}-{claim.model}", {})[claim.metric] = claim.value
    return files


def reference_metrics(references: list[Reference]) -> dict[str, dict[str, dict[str, Any]]]:
    """{reference name: {relative path: nested metrics dict}} of the earlier reproductions."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for ref in references:
        files = out.setdefault(ref.reference, {})
        _put(files.setdefault(f"{METRICS_DIR}/{ref.dataset}-{ref.model}.json", {}), ref.metric, ref.value)
    return out


class GitFailed(DGCError, RuntimeError):
    """A git command the tags need failed (not a repository, a locked ref): one line with git's message."""

    exit_status = 1


class GitMissing(GitFailed):
    """No git to run."""


def _git(args: list[str], repo: Path, env: dict | None = None, input: str | None = None) -> str:
    try:
        proc = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, input=input,
                              env={**os.environ, **(env or {})})
    except FileNotFoundError:
        raise GitMissing(f"`dgc paper-ref` needs git, and no `git` is on PATH (or {repo} does not exist)") from None
    if proc.returncode != 0:
        why = proc.stderr.strip().splitlines()
        raise GitFailed(f"git {' '.join(args)} failed in {repo}: {why[0] if why else 'exit status %d' % proc.returncode}")
    return proc.stdout.strip()


def make_paper_ref(claims: list[Claim], repo: str | Path = ".") -> tuple[str, str]:
    """Create or move the tag `paper`; returns (commit, created / moved / unchanged)."""
    return make_metrics_tag(TAG, paper_metrics(claims), "The paper's numbers (claims/paper.yaml) as "
                            "metrics files, for `dvc metrics diff paper`", repo)


def make_reference_tags(references: list[Reference], repo: str | Path = ".") -> list[tuple[str, str, str]]:
    """One tag per earlier reproduction: [(tag, commit, created / moved / unchanged)]."""
    return [(name, *make_metrics_tag(name, files, f"The numbers of the earlier reproduction {name} "
                                     f"(claims/paper.yaml references) as metrics files", repo))
            for name, files in sorted(reference_metrics(references).items())]


def make_metrics_tag(tag: str, files: dict[str, dict[str, Any]], message: str,
                     repo: str | Path = ".") -> tuple[str, str]:
    """Create or move `tag` to a parentless commit of HEAD's tree with reports/metrics/ replaced by
    `files`; returns (commit, what happened to the tag: created, moved or unchanged)."""
    repo = Path(repo)
    try:
        _git(["rev-parse", "--verify", "HEAD"], repo)
    except GitMissing:
        raise
    except GitFailed:
        raise BadInput(f"{repo.resolve()} has no commit yet: commit the project first") from None
    texts = {path: json.dumps(content, indent=2, sort_keys=True) + "\n" for path, content in sorted(files.items())}
    # A dvc.yaml that only declares the metrics: the paper's tree has no pipeline outputs.
    texts["dvc.yaml"] = (f"# The {tag} numbers as metrics files (written by `dgc paper-ref`); no pipeline here.\n"
                         f"metrics:\n  - {METRICS_DIR}\n  - {ARCHITECTURE_JSON}\n")
    with tempfile.TemporaryDirectory() as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index"), **_IDENTITY}
        _git(["read-tree", "HEAD"], repo, env)
        _git(["rm", "-r", "--cached", "--quiet", "--ignore-unmatch", METRICS_DIR, ARCHITECTURE_JSON],
             repo, env)
        for path, text in texts.items():
            blob = _git(["hash-object", "-w", "--stdin"], repo, input=text)
            _git(["update-index", "--add", "--cacheinfo", f"100644,{blob},{path}"], repo, env)
        commit = _git(["commit-tree", _git(["write-tree"], repo, env), "-m", message], repo, env)
    try:
        old = _git(["rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}"], repo)
    except GitFailed:
        old = ""
    if old == commit:
        return commit, "unchanged"
    _git(["tag", "-f", tag, commit], repo)
    return commit, "moved" if old else "created"


def dvc_command() -> str:
    """How a new user's shell runs this environment's dvc (PATH may hold none): its path, relative to
    the working folder when inside it (`.venv/bin/dvc`)."""
    import sys

    dvc = Path(sys.executable).parent / "dvc"
    try:
        return str(dvc.relative_to(Path.cwd()))
    except ValueError:
        return str(dvc)
