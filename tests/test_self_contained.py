"""The repository is self-contained: no file refers to a path outside it (e.g. ../shared)."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_no_tracked_file_points_outside_the_repository():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.splitlines()
    offenders = []
    for name in files:
        path = ROOT / name
        if name.startswith("tests/data/") or not path.is_file() or path.suffix in (".png", ".pt"):
            continue
        text = path.read_text(errors="ignore")
        for needle in ("../shared", "shared/DESIGN.md", "shared/PAPER.md", "DESIGN.md"):
            if needle in text and name != "tests/test_self_contained.py":
                offenders.append(f"{name}: {needle}")
    assert not offenders, offenders


def test_the_design_document_exists_and_covers_the_assumptions():
    design = (ROOT / "docs" / "design.md").read_text()
    for topic in ("Ties at the cut-off", "round", "FLOPs", "Executions", "DGC-G", "MobileNetV2",
                  "angle", "680,000"):
        assert topic in design, topic
