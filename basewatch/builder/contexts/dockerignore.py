"""`.dockerignore` read and matched the way the docker CLI does (moby's ignorefile and
patternmatcher packages).

Ours rather than the docker SDK's matcher: importing the SDK costs `basewatch build` about
160 ms at every start, half of its start-up, for this one function. The unit tests hold these
answers to the SDK's on the same patterns and files.
"""
from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path

# Regular-expression characters that mean nothing special in a Go filepath.Match pattern.
_LITERAL = set(".+()|{}$")


def clean(path: str) -> str:
    """Go's filepath.Clean on a slash-separated path."""
    cleaned = posixpath.normpath(path) if path else "."
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def read_patterns(text: str) -> list[str]:
    """The patterns of a .dockerignore file: comments and blank lines dropped, each cleaned."""
    patterns = []
    for number, line in enumerate(text.splitlines()):
        if number == 0:
            line = line.removeprefix("\ufeff")
        if line.startswith("#"):
            continue
        line = line.strip()
        if not line:
            continue
        exclusion = line.startswith("!")
        if exclusion:
            line = line[1:].strip()
        if line:
            line = clean(line)
            if len(line) > 1 and line.startswith("/"):
                line = line[1:]
        patterns.append("!" + line if exclusion else line)
    return patterns


@dataclass(frozen=True)
class _Pattern:
    text: str          # cleaned, without its "!"
    exclusion: bool    # a "!" pattern: brings back what an earlier one left out
    regex: re.Pattern
    suffix: str | None  # "**" then only literal characters: moby matches by suffix

    @classmethod
    def compile(cls, pattern: str) -> "_Pattern":
        exclusion = pattern.startswith("!")
        text = clean(pattern[1:] if exclusion else pattern)
        if exclusion and not pattern[1:]:
            raise ValueError('illegal exclusion pattern: "!"')
        regex, i, wildcard = ["^"], 0, False
        while i < len(text):
            char = text[i]
            if text.startswith("**", i):
                wildcard = wildcard or i > 0
                i += 2
                if text.startswith("/", i):
                    i += 1  # "**/" is "**"
                regex.append(".*" if i == len(text) else "(.*/)?")
                continue
            if char == "*":
                regex.append("[^/]*")
                wildcard = True
            elif char == "?":
                regex.append("[^/]")
                wildcard = True
            elif char in _LITERAL:
                regex.append("\\" + char)
            elif char == "\\":
                i += 1
                regex.append(re.escape(text[i]) if i < len(text) else "\\\\")
            else:
                regex.append(char)  # "[" and "]" keep their character-class meaning
                wildcard = wildcard or char in "[]"
            i += 1
        try:
            compiled = re.compile("".join(regex) + "$")
        except re.error as error:
            raise ValueError(f"bad .dockerignore pattern {pattern!r}: {error}") from None
        suffix = text[2:] if text.startswith("**") and not wildcard else None
        return cls(text, exclusion, compiled, suffix)

    def matches(self, path: str) -> bool:
        if self.suffix:
            return path.endswith(self.suffix) or (
                self.suffix.startswith("/") and path == self.suffix[1:])
        return self.regex.match(path) is not None


class IgnoreRules:
    """An ordered list of patterns: the last one that matches a path (or a parent of it)
    decides, and a "!" pattern takes back what an earlier one excluded."""

    def __init__(self, patterns: list[str]):
        self._patterns = [_Pattern.compile(p) for p in patterns]

    def excludes(self, path: str) -> bool:
        path = clean(path)
        parent = posixpath.dirname(path) or "."
        parents = parent.split("/")
        matched = False
        for pattern in self._patterns:
            if pattern.exclusion != matched:
                continue  # only a "!" can undo a match, and only a match needs undoing
            match = pattern.matches(path)
            if not match and parent != ".":
                match = any(pattern.matches("/".join(parents[:i + 1]))
                            for i in range(len(parents)))
            if match:
                matched = not pattern.exclusion
        return matched

    def may_bring_back_under(self, folder: str) -> bool:
        """Whether a "!" pattern names something inside the excluded `folder`: by its text,
        as the docker CLI decides whether to walk into a folder it leaves out."""
        return any(p.exclusion and (p.text + "/").startswith(folder + "/")
                   for p in self._patterns)


def context_files(root: Path, dockerfile: str) -> list[str]:
    """The paths (files and folders, relative, sorted) the docker CLI sends from `root`.

    The Dockerfile and .dockerignore are always sent, even when the file ignores them."""
    ignore = root / ".dockerignore"
    patterns = read_patterns(ignore.read_text(errors="replace")) if ignore.is_file() else []
    rules = IgnoreRules(patterns + [f"!{clean(dockerfile)}", "!.dockerignore"])
    found = []
    for folder, subfolders, files in os.walk(root):
        relative = os.path.relpath(folder, root)
        prefix = "" if relative == "." else relative + "/"
        kept_subfolders = []
        for name in sorted(subfolders):
            path = prefix + name
            if not rules.excludes(path):
                found.append(path)
                kept_subfolders.append(name)
            elif rules.may_bring_back_under(path):
                kept_subfolders.append(name)  # walked into, for what a "!" brings back
        subfolders[:] = kept_subfolders
        found.extend(prefix + name for name in files if not rules.excludes(prefix + name))
    return sorted(found)
