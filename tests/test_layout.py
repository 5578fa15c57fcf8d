"""The repository's layout."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_no_sys_path_insert():
    """benchmarks/, studies/ and tests/ import the installed dgc package (an editable install of this checkout,
    or PYTHONPATH=. on a bare machine), never a folder of their own put on sys.path."""
    needle = "sys.path" + ".insert"  # spelled apart so that this file does not match itself
    files = [p for folder in ("benchmarks", "studies", "tests") for p in sorted((ROOT / folder).rglob("*"))
             if p.is_file() and "__pycache__" not in p.parts]
    assert files
    assert [str(p.relative_to(ROOT)) for p in files if needle in p.read_text(errors="replace")] == []
