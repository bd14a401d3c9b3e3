"""The built HTML is whole offline: its maths does not come from a CDN.

Checks the book that `make book` (``_build/html``) or `make book-fast` (``_build/fast/_build/html``)
built last; skipped when there is none (`.ci/run` builds the fast book before the tests).
"""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILDS = [d for d in (ROOT / "_build" / "html", ROOT / "_build" / "fast" / "_build" / "html")
          if (d / "index.html").is_file()]
SCRIPT = re.compile(r"<script[^>]*\bsrc=\"([^\"]+)\"", re.I)


@pytest.mark.skipif(not BUILDS, reason="no built book: run `make book` or `make book-fast` first")
@pytest.mark.parametrize("html", BUILDS, ids=lambda d: str(d.relative_to(ROOT)))
def test_mathjax_is_served_with_the_book(html):
    pages = [p for p in html.rglob("*.html") if 'class="math' in p.read_text(errors="ignore")]
    assert pages, "no page with maths"
    for page in pages:
        scripts = SCRIPT.findall(page.read_text(errors="ignore"))
        mathjax = [s for s in scripts if "mathjax" in s.lower()]
        assert mathjax, f"{page.name} loads no MathJax"
        assert not any(s.startswith(("http:", "https:", "//")) for s in mathjax), f"{page.name}: {mathjax}"
        assert all((page.parent / s.split("?")[0]).resolve().is_file() for s in mathjax), f"{page.name}: {mathjax}"
