"""Every page a reader opens, checked in a real browser (headless Chromium, tests/browser.py): no
broken image, nothing wider than a 1280-pixel window, every section there, and the pages linked to
each other. Screenshots of each first screen land in build/screenshots/."""

from __future__ import annotations

from pathlib import Path

import pytest
from browser import check_page, chromium

from dgc import notebook

ROOT = Path(__file__).resolve().parents[1]
PAGES = {"report": [key for key, _ in notebook.SECTIONS],
         "ablations": ["What-ran,-and-the-answer"],
         "budget": ["What-ran,-and-the-answer", "Accuracy-against-budget"]}

pytestmark = pytest.mark.skipif(chromium() is None, reason="Debian's chromium is not installed "
                                                           "(.ci/run installs it: apt-get install chromium)")


@pytest.mark.parametrize("name", PAGES)
def test_page_has_no_broken_image_no_overflow_and_every_section(name):
    seen = check_page(ROOT / "reports" / f"{name}.html")
    assert seen["images"] > 0 and seen["broken"] == 0, seen
    assert seen["scroll_width"] <= seen["width"], f"{name}.html is wider than the window: {seen['wide']}"
    assert not seen["wide"], seen["wide"]
    missing = [s for s in PAGES[name] if s not in seen["ids"]]
    assert not missing, f"{name}.html misses sections {missing}"


def test_pages_link_to_each_other():
    text = {name: (ROOT / "reports" / f"{name}.html").read_text() for name in PAGES}
    assert 'href="ablations.html"' in text["report"] and 'href="budget.html"' in text["report"]
    for side in ("ablations", "budget"):
        assert 'href="report.html"' in text[side], side


def test_the_check_catches_a_broken_image_and_a_wide_table(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text('<html><body><img src="data:image/png;base64,AAAA">'
                    '<table style="width:3000px"><tr><td>x</td></tr></table></body></html>')
    seen = check_page(page, screenshot=False)
    assert seen["broken"] == 1 and seen["scroll_width"] > seen["width"] and any(w.startswith("TABLE") for w in seen["wide"])
