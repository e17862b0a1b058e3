"""A Dockerfile's text cut into instructions the way BuildKit's parser cuts it.

dockerfile-parse groups lines differently from BuildKit where it matters to us: it reads a
heredoc body as instructions (`FROM evil` inside `RUN <<EOF` became a stage), continues a line
that ends in an escaped escape character (`COPY x C:\\\\dir\\\\` swallowed the next FROM), and
stops looking for `# escape=` after a `# check=` directive. So the grouping is done here, after
BuildKit's frontend/dockerfile/parser (parser.go, directives.go, split_command.go).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from basewatch.dockerfile.words import split_words
from basewatch.errors import DockerfileError

# Go's \s (RE2) is ASCII whitespace only; Python's would also take Unicode spaces.
_DIRECTIVE = re.compile(r"([a-zA-Z][a-zA-Z0-9]*)[\t\n\f\r ]*=[\t\n\f\r ]*(.+?)[\t\n\f\r ]*\Z")
_DIRECTIVES = ("syntax", "escape", "check")
_HEREDOC = re.compile(r"(\d*)<<(-?)([^<]*)\Z")
_COMMAND_SPACE = re.compile(r"[\t\v\f\r ]+")
# Instructions whose text may open heredocs, directly or as ONBUILD's trigger.
_HEREDOC_COMMANDS = ("add", "copy", "run")


@dataclass(frozen=True)
class Instruction:
    command: str  # lower case: "from", "copy", ...
    rest: str  # everything after the command word, continuation lines joined
    line: int  # where it starts, counting from 1


@dataclass(frozen=True)
class ParsedDockerfile:
    escape: str
    instructions: list[Instruction]


def parse_dockerfile(content: str, source: str) -> ParsedDockerfile:
    """Instructions in order, with heredoc bodies consumed and comments dropped."""
    lines = content.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline ending the last line does not start another
    if lines:
        lines[0] = lines[0].removeprefix("\ufeff")
    directives = _Directives(source)
    instructions: list[Instruction] = []
    index = 0
    while index < len(lines):
        text = lines[index].rstrip("\r\n").lstrip()
        directives.read(text, index + 1)
        index += 1
        start = index
        text, ends = _continuation(directives.escape, "" if _is_comment(text) else text)
        if ends and not text:
            continue
        joined = [text]
        while not ends and index < len(lines):
            raw = lines[index]
            index += 1
            line = raw.rstrip("\r\n")
            if _is_comment(raw) or not line.strip():
                continue  # comments and empty lines inside a continued instruction are dropped
            line, ends = _continuation(directives.escape, line)
            joined.append(line)
        whole = "".join(joined)
        parts = _COMMAND_SPACE.split(whole.strip(), maxsplit=1)
        instruction = Instruction(parts[0].lower(), parts[1] if len(parts) == 2 else "", start)
        instructions.append(instruction)
        if "<<" in whole and _may_hold_heredocs(instruction):
            for name, chomp in heredocs_of(whole):
                index = _skip_heredoc(lines, index, name, chomp, source, start)
    return ParsedDockerfile(directives.escape, instructions)


def extract_flags(rest: str) -> tuple[list[str], str]:
    """The leading `--name[=value]` words (quotes and backslashes processed) and what follows,
    as BuildKit's extractBuilderFlags splits them."""
    flags: list[str] = []
    pos = 0
    while True:
        while pos < len(rest) and rest[pos].isspace():
            pos += 1
        if not rest.startswith("--", pos):
            return flags, rest[pos:].strip()
        word, quote, quoted = [], "", False
        while pos < len(rest):
            char = rest[pos]
            pos += 1
            if quote:
                if char == quote:
                    quote = ""
                    continue
            elif char.isspace():
                break
            elif char in "'\"":
                quote, quoted = char, True
                continue
            if char == "\\":
                if pos == len(rest):
                    continue
                char = rest[pos]
                pos += 1
            word.append(char)
        text = "".join(word)
        if text == "--" and not quoted:
            return flags, rest[pos:].strip()
        if text or quoted:
            flags.append(text)


def heredocs_of(line: str) -> list[tuple[str, bool]]:
    """The (name, strip leading tabs) of each heredoc a line opens, in order."""
    found = []
    for word in split_words(line, "\\"):
        match = _HEREDOC.match(word)
        if match and match[3]:
            name = _unquote(match[3])
            if name:
                found.append((name, match[2] == "-"))
    return found


def _skip_heredoc(lines: list[str], index: int, name: str, chomp: bool, source: str,
                  start: int) -> int:
    """The index of the line after the heredoc's terminator: its body is file content."""
    while index < len(lines):
        line = lines[index].rstrip("\r\n")
        index += 1
        if (line.lstrip("\t") if chomp else line) == name:
            return index
    raise DockerfileError(f"{source} line {start}: the heredoc <<{name} is never terminated "
                          f"(a line holding only {name} ends it)")


def _may_hold_heredocs(instruction: Instruction) -> bool:
    command, rest = instruction.command, instruction.rest
    if command == "onbuild":
        parts = _COMMAND_SPACE.split(rest.strip(), maxsplit=1)
        command, rest = parts[0].lower(), parts[1] if len(parts) == 2 else ""
    if command not in _HEREDOC_COMMANDS:
        return False
    _, args = extract_flags(rest)
    return not _is_json_array(args)  # the exec form takes no heredocs


def _is_json_array(text: str) -> bool:
    if not text.startswith("["):
        return False
    try:
        return isinstance(json.loads(text), list)
    except (ValueError, RecursionError):
        return False


def _unquote(word: str) -> str:
    """A heredoc delimiter as the shell reads it: quotes removed, escapes applied."""
    out, quote, pos = [], "", 0
    while pos < len(word):
        char = word[pos]
        pos += 1
        if quote == "'":
            if char == "'":
                quote = ""
            else:
                out.append(char)
        elif char == quote:
            quote = ""
        elif char in "'\"" and not quote:
            quote = char
        elif char == "\\" and pos < len(word) and (not quote or word[pos] in '"$\\'):
            out.append(word[pos])
            pos += 1
        else:
            out.append(char)
    return "".join(out)


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _continuation(escape: str, line: str) -> tuple[str, bool]:
    """The line without its continuation mark, and whether the instruction ends here. An escape
    character right before the mark escapes it: `C:\\\\dir\\\\` ends the instruction."""
    stripped = line.rstrip(" \t")
    if not stripped.endswith(escape):
        return line, True
    body = stripped[:-1]
    if body and body[-1] == escape:
        return line, True
    return body, False


class _Directives:
    """The parser directives at the top of the file; only `escape` changes how we read it."""

    def __init__(self, source: str):
        self.source, self.escape, self.seen, self.done = source, "\\", set(), False

    def read(self, line: str, number: int) -> None:
        if self.done:
            return
        match = _DIRECTIVE.match(line[1:].lstrip()) if line.startswith("#") else None
        if not match or match[1].lower() not in _DIRECTIVES:
            self.done = True
            return
        name, value = match[1].lower(), match[2]
        if name in self.seen:
            raise DockerfileError(f"{self.source} line {number}: only one {name} parser "
                                  "directive can be used")
        self.seen.add(name)
        if name == "escape":
            if value not in ("\\", "`"):
                raise DockerfileError(f"{self.source} line {number}: invalid escape character "
                                      f"{value!r}: use ` or \\")
            self.escape = value
