"""The .dockerignore matcher, held to the docker SDK's answers and, where the two differ, to
the docker CLI's (Go's filepath.Match: case-sensitive, `[^a]` negates a class)."""
from __future__ import annotations

from pathlib import Path

import pytest
from docker.utils.build import exclude_paths

from basewatch.builder.contexts.dockerignore import (IgnoreRules, clean, context_files,
                                                     read_patterns)

TREE = ["Dockerfile", "main.py", "a.log", "keep.log", "README.md", "build/out.bin",
        "build/keep/x", "node_modules/pkg/index.js", "node_modules/pkg/x.log", "src/app.py",
        "src/app.pyc", "src/deep/mod.pyc", "src/deep/mod.py", "docs/a.md", "docs/sub/b.md",
        "abc", "axc", "a.b.c", "temp1", "temp22", "x/temp1", ".git/HEAD", ".git/objects/ab",
        "secret.txt", "docker/Dockerfile.prod", "docker/notes.txt", "foo bar/baz"]

SAME_AS_THE_SDK = [
    "*.log\n!keep.log", "node_modules", "node_modules/", "/build", "build/*\n!build/keep",
    "**/*.pyc", "src/**/*.pyc", "docs/**", "**/mod.py", "a?c", "[ab]xc", "temp?", "*/temp*",
    "# comment\n.git\n\n  secret.txt  ", "*\n!src", "*\n!Dockerfile\n!main.py", "./main.py",
    "src/../main.py", "**", "*.md\n!docs/a.md", "a.b.c", "foo bar", "docker\n!docker/notes.txt",
    "**/*.log\n!node_modules/pkg/x.log", "build\n!build/keep/x", "src\n!src/deep/*.py",
    "src\n!src/app.py", "*.py\n!main.py\nmain.py", "**/temp1", "**temp1", "*/*/*.pyc", "src/*",
    "!main.py", "docs/*/b.md", "\\*.log", "node_modules\n!**/index.js", ".*",
]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("context")
    for name in TREE:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("x")
    return root


def sdk_files(root: Path, text: str) -> list[str]:
    # As APIClient.build reads the file before handing the patterns to exclude_paths.
    patterns = [line.strip() for line in text.splitlines()]
    return sorted(exclude_paths(str(root), [p for p in patterns if p and p[0] != "#"],
                                dockerfile="Dockerfile"))


@pytest.mark.parametrize("text", SAME_AS_THE_SDK)
def test_sends_what_the_sdk_sends(tree, text):
    (tree / ".dockerignore").write_text(text + "\n")
    assert context_files(tree, "Dockerfile") == sdk_files(tree, text)


def test_patterns_are_case_sensitive_as_in_the_docker_cli(tree):
    # The SDK lowercases both sides; Go's filepath.Match, and so `docker build`, does not.
    (tree / ".dockerignore").write_text("*.PY\n")
    assert "main.py" in context_files(tree, "Dockerfile")


def test_a_class_negates_with_a_caret_as_in_go():
    assert IgnoreRules(["[^a]xc"]).excludes("bxc")
    assert not IgnoreRules(["[^a]xc"]).excludes("axc")
    assert IgnoreRules(["[!a]xc"]).excludes("axc")  # "!" is just a character of the class


def test_reading_drops_comments_and_blank_lines_and_cleans_each_pattern():
    text = "\ufeff# top\n\n  /build/  \n!  ./keep.log\n a//b/../c \n #not a comment\n"
    assert read_patterns(text) == ["build", "!keep.log", "a/c", "#not a comment"]


def test_last_matching_pattern_decides_and_parents_count():
    rules = IgnoreRules(["logs", "!logs/keep", "logs/keep/*.tmp"])
    assert rules.excludes("logs/a.txt")
    assert not rules.excludes("logs/keep/a.txt")
    assert rules.excludes("logs/keep/b.tmp")


def test_suffix_patterns_match_as_moby_does():
    assert IgnoreRules(["**/foo"]).excludes("foo")
    assert IgnoreRules(["**/foo"]).excludes("a/b/foo")
    assert IgnoreRules(["**foo"]).excludes("a/barfoo")


def test_a_lone_exclamation_mark_is_an_error():
    with pytest.raises(ValueError, match="illegal exclusion pattern"):
        IgnoreRules(["!"])


def test_clean_is_gos_filepath_clean():
    assert [clean(p) for p in ("", ".", "a/./b/", "//a", "a/../..", "/../a")] == \
        [".", ".", "a/b", "/a", "..", "/a"]


def test_the_dockerfile_and_the_ignore_file_are_always_sent(tmp_path):
    (tmp_path / "ci").mkdir()
    (tmp_path / "ci" / "Dockerfile.ci").write_text("FROM scratch\n")
    (tmp_path / ".dockerignore").write_text("*\n")
    assert context_files(tmp_path, "ci/Dockerfile.ci") == [".dockerignore", "ci/Dockerfile.ci"]
