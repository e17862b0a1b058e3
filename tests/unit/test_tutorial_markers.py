"""The tutorials are written so that tests/e2e/test_tutorials.py can follow them: every shell
block is marked (run, or skipped on purpose), markers are well formed, and links resolve."""
from __future__ import annotations

import re

import pytest

from tests.support.tutorials import RUNNABLE, TUTORIALS, parse

# Followed by tests/e2e/test_sidecar_compose.py with the daemon's image, not on the local stack.
SIDECAR = "sidecar-compose.md"


@pytest.mark.parametrize("name", [*RUNNABLE, SIDECAR])
def test_every_shell_block_is_run_or_skipped_on_purpose(name):
    tutorial = parse(TUTORIALS / name)
    assert not tutorial.unmarked, [f"{name}:{block.line}" for block in tutorial.unmarked]
    kinds = [step.kind for step in tutorial.steps]
    assert kinds.count("run") >= 3
    assert any(step.expect for step in tutorial.steps), "a tutorial checks what it claims"
    if name != SIDECAR:
        assert "write" in kinds
        first, last = tutorial.steps[0].text, tutorial.steps[-1].text
        assert "scripts/stack.py up" in first and "scripts/stack.py down" in last


@pytest.mark.parametrize("path", [*sorted(TUTORIALS.glob("*.md")), TUTORIALS.parent /
                                  "acr-comparison.md"], ids=lambda path: path.name)
def test_links_between_the_docs_resolve(path):
    for target in re.findall(r"\]\(([^)#\s]+\.md)(?:#[^)]*)?\)", path.read_text()):
        if target.startswith("http"):
            continue
        assert (path.parent / target).exists(), f"{path.name} links to {target}"


def test_a_marker_must_be_followed_by_its_block(tmp_path):
    page = tmp_path / "t.md"
    page.write_text("<!-- test: run -->\nsome prose\n```sh\ntrue\n```\n")
    with pytest.raises(ValueError, match="must be followed by its fenced block"):
        parse(page)


def test_markers_become_steps_in_order(tmp_path):
    page = tmp_path / "t.md"
    page.write_text("<!-- test: write a.txt -->\n```text\nA\n```\n"
                    "<!-- test: run -->\n```sh\ncat a.txt\n```\n<!-- test: expect ^A$ -->\n"
                    "<!-- test: until true -->\n```sh\nunmarked\n```\n"
                    "<!-- test: skip waits for Ctrl-C -->\n```sh\nwatch\n```\n")
    tutorial = parse(page)
    assert [(s.kind, s.argument) for s in tutorial.steps] == [
        ("write", "a.txt"), ("run", ""), ("until", "true")]
    assert tutorial.steps[0].text == "A\n" and tutorial.steps[1].expect == ["^A$"]
    assert [block.text for block in tutorial.unmarked] == ["unmarked\n"]
