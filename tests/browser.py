"""A page as a reader's browser shows it: Debian's headless Chromium at 1280 x 800 loads a copy of
the page with a small script that reports, once the page has loaded, its images (and the broken
ones), its width against the window's, the elements that stick out to the right, and the ids of its
sections; a screenshot of the first screen goes to build/screenshots/ (not committed).

    .venv/bin/python tests/browser.py reports/report.html    # prints the check, writes the screenshot
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "build" / "screenshots"
WIDTH, HEIGHT = 1280, 800
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
         f"--window-size={WIDTH},{HEIGHT}"]
CHECK = """<script>
window.addEventListener('load', function () {
  var root = document.documentElement, width = root.clientWidth;
  var images = Array.from(document.images);
  var wide = Array.from(document.querySelectorAll('img, table, pre, code, h1, h2, h3, p, li'))
    .filter(function (e) { return e.getBoundingClientRect().right > width + 1; })
    .map(function (e) { return e.tagName + ': ' + e.textContent.slice(0, 60); });
  var report = {images: images.length,
                broken: images.filter(function (i) { return !i.complete || i.naturalWidth === 0; }).length,
                scroll_width: root.scrollWidth, width: width, wide: wide,
                ids: Array.from(document.querySelectorAll('[id]')).map(function (e) { return e.id; }),
                headings: Array.from(document.querySelectorAll('h1, h2')).map(function (e) {
                  return e.textContent.replace(/\\u00b6/g, '').trim(); })};
  var out = document.createElement('pre');
  out.id = 'dgc-browser-check';
  out.textContent = JSON.stringify(report);
  document.body.appendChild(out);
});
</script>"""


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def check_page(page: str | Path, screenshot: bool = True) -> dict:
    """Load `page` in headless Chromium; return what the script reported (see the module's docstring)."""
    browser = chromium()
    if browser is None:
        raise FileNotFoundError("no chromium on PATH (Debian: apt-get install chromium)")
    page = Path(page).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / page.name  # the figures are data URIs: the copy shows what the page shows
        copy.write_text(page.read_text().replace("</body>", CHECK + "</body>"))
        dom = subprocess.run([browser, *FLAGS, f"--user-data-dir={tmp}/profile", "--virtual-time-budget=10000",
                              "--dump-dom", copy.as_uri()], capture_output=True, text=True, timeout=120).stdout
        if screenshot:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            subprocess.run([browser, *FLAGS, f"--user-data-dir={tmp}/shot",
                            f"--screenshot={SCREENSHOTS / (page.stem + '.png')}", page.as_uri()],
                           capture_output=True, timeout=120)
    found = re.search(r'<pre id="dgc-browser-check">(.*?)</pre>', dom, re.S)
    if not found:
        raise RuntimeError(f"the check script did not report on {page} (Chromium printed {len(dom)} characters)")
    import html

    return json.loads(html.unescape(found.group(1)))


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(arg, json.dumps(check_page(arg), indent=1))
    print(f"screenshots: {SCREENSHOTS}")
