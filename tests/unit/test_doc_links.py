"""The README's and docs' relative links lead somewhere: each names a file of the repository and,
for `page.md#part`, a heading of that page (anchors as GitHub makes them), so a page moved or
a heading renamed does not leave readers at a dead link."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)  # links are not read inside code
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.*?)\s*#*$", re.M)


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]", "", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    for heading in HEADING.findall(re.sub(r"```.*?```", "", page.read_text(), flags=re.S)):
        name = anchor(heading)
        seen = counts.get(name, 0)
        counts[name] = seen + 1
        found.add(name if seen == 0 else f"{name}-{seen}")  # GitHub numbers repeats
    return found


def relative_links(page: Path) -> list[str]:
    return [target for target in LINK.findall(CODE.sub("", page.read_text()))
            if not re.match(r"[a-z][a-z0-9+.-]*:", target)]  # http:, https:, mailto:


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading(page):
    dead = []
    for target in relative_links(page):
        path, _, part = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        if not destination.exists():
            dead.append(f"{target}: no such file")
        elif part and destination.suffix == ".md" and part not in anchors(destination):
            dead.append(f"{target}: no heading #{part} in {destination.name}")
    assert not dead, dead


def test_anchors_are_made_as_github_makes_them():
    assert anchor("A Kubernetes backend (a design; not built)") == \
        "a-kubernetes-backend-a-design-not-built"
    assert anchor("`engines[]`") == "engines"
    assert anchor("What fails over, and how fast") == "what-fails-over-and-how-fast"
