"""The documentation site's configuration, checked without building it.

The strict build (``ci/docs.sh``) refuses a page that is not in the navigation;
this test says so in the ordinary test run, where a new page is first noticed.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXCLUDED = ("hooks/", "screenshots/")  # mkdocs.yml: exclude_docs


def _nav_pages() -> set[str]:
    text = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = text[text.index("\nnav:"):]
    return set(re.findall(r"([\w./-]+\.md)\s*$", nav, re.M))


def test_every_page_is_in_the_navigation():
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    pages = {p for p in pages if not p.startswith(EXCLUDED)}
    missing = sorted(pages - _nav_pages())
    assert not missing, f"add these pages to the nav of mkdocs.yml: {missing}"


def test_the_navigation_names_existing_pages():
    absent = sorted(p for p in _nav_pages() if not (ROOT / "docs" / p).is_file())
    assert not absent, f"mkdocs.yml's nav names pages that do not exist: {absent}"


def test_every_public_name_is_in_the_api_reference():
    import xpdiff

    text = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "docs" / "api").glob("*.md"))
    documented = set(re.findall(r"^::: xpdiff\.(\w+)", text, re.M))
    missing = sorted(set(xpdiff.__all__) - documented)
    assert not missing, f"add '::: xpdiff.NAME' entries to docs/api/*.md for: {missing}"
