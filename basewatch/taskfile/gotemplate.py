"""The Go-template subset task files are written in: `{{.Run.ID}}`, `{{.Values.x}}`,
`{{.Secrets.x}}`, string literals, pipes into a few Sprig functions (`b64enc`...), `{{- -}}`
trimming and `{{/* comments */}}`, as Go's text/template reads them.

Control actions (`if`, `range`...) and variables are refused with the line: acr-builder's task
files do not use them. Unlike acr-builder (`missingkey=zero`), a name with no value is an error,
not an empty string, unless the pipe gives a `default`.
The rendered text comes with the source line of each of its lines, so that later errors (YAML,
steps) name the line a person wrote.
"""
from __future__ import annotations

import base64
import binascii
import bisect
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from basewatch.templating import missing_variable

_WHITESPACE = " \t\r\n"
_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<field>(?:\.[A-Za-z_][A-Za-z0-9_]*)+)
  | (?P<dot>\.)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<raw>`[^`]*`)
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<pipe>\|)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<other>:=|=|\$[A-Za-z0-9_]*|[()',])
""", re.VERBOSE)
_KEYWORDS = frozenset({"if", "else", "end", "range", "with", "define", "template", "block",
                       "break", "continue"})


class TemplateProblem(Exception):
    """A template that cannot be rendered, at a line of the source (1-based)."""

    def __init__(self, message: str, line: int):
        super().__init__(message)
        self.message, self.line = message, line


@dataclass(frozen=True)
class TemplateData:
    run: Mapping[str, str]  # RunVariables.as_dict()
    values: Mapping[str, object] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rendered:
    text: str
    source_lines: tuple[int, ...]  # the source line (1-based) of each rendered line
    outputs: tuple[str, ...]  # what each action wrote, before `escape`

    def source_line(self, rendered_line: int) -> int:
        """The source line of a rendered line (both 1-based)."""
        index = min(max(rendered_line, 1), len(self.source_lines)) - 1
        return self.source_lines[index]


def _b64dec(text: str) -> str:
    try:
        return base64.b64decode(text, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise ValueError("b64dec: not base64 of UTF-8 text") from None


def _default(fallback: object, value: object = None) -> object:
    return fallback if value in (None, "", 0, False) else value


_FUNCTIONS: dict[str, Callable[..., object]] = {
    "b64enc": lambda value: base64.b64encode(_text(value).encode()).decode(),
    "b64dec": lambda value: _b64dec(_text(value)),
    "quote": lambda value: json.dumps(_text(value)),
    "squote": lambda value: "'" + _text(value) + "'",
    "upper": lambda value: _text(value).upper(),
    "lower": lambda value: _text(value).lower(),
    "trim": lambda value: _text(value).strip(),
    "default": _default,
}


def _text(value: object) -> str:
    """A value as Go's fmt prints it: true, 3, text; nothing for nil."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        raise ValueError(f"is a {'mapping' if isinstance(value, dict) else 'list'}, "
                         "not a single value")
    return str(value)


class _Lines:
    def __init__(self, text: str):
        self._newlines = [i for i, c in enumerate(text) if c == "\n"]

    def at(self, index: int) -> int:
        return bisect.bisect_left(self._newlines, index) + 1


def render(text: str, data: TemplateData, *, escape: Callable[[str], str] | None = None,
           lenient: bool = False) -> Rendered:
    """Render `text`; `escape` is applied to what each action writes. `lenient`: a name with
    no value renders empty (to locate a step after an error, never to run)."""
    lines = _Lines(text)
    out: list[str] = []
    source_lines = [1]
    outputs: list[str] = []

    def emit(piece: str, start: int, literal: bool) -> None:
        for offset, char in enumerate(piece):
            if char == "\n":
                source_lines.append(lines.at(start + offset + 1) if literal else lines.at(start))
        out.append(piece)

    position, trim_next = 0, False
    while True:
        opening = text.find("{{", position)
        literal_end = len(text) if opening < 0 else opening
        literal_start = position
        if trim_next:
            while literal_start < literal_end and text[literal_start] in _WHITESPACE:
                literal_start += 1
        if opening < 0:
            emit(text[literal_start:], literal_start, True)
            break
        inner_start = opening + 2
        trim_left = text.startswith("-", inner_start) and inner_start + 1 < len(text) \
            and text[inner_start + 1] in _WHITESPACE
        literal = text[literal_start:literal_end]
        if trim_left:
            literal = literal.rstrip(_WHITESPACE)
            inner_start += 2
        emit(literal, literal_start, True)
        line = lines.at(opening)
        if text.startswith("/*", inner_start):
            closing, trim_next = _comment_end(text, inner_start, line)
            position = text.index("}}", closing) + 2
            continue
        closing, trim_next = _closing(text, inner_start, line)
        action = text[inner_start:closing].strip()
        position = text.index("}}", closing) + 2
        value = _evaluate(action, data, line, lenient)
        outputs.append(value)
        emit(escape(value) if escape else value, opening, False)
    return Rendered("".join(out), tuple(source_lines), tuple(outputs))


def _comment_end(text: str, start: int, line: int) -> tuple[int, bool]:
    """As `_closing`, for a `{{/* comment */}}`: Go wants `*/` right before `}}` or ` -}}`."""
    end = text.find("*/", start + 2)
    if end < 0:
        raise TemplateProblem("a template comment `{{/*` is not closed by `*/}}`", line)
    after = end + 2
    if text.startswith("}}", after):
        return after, False
    if text.startswith(" -}}", after):
        return after, True
    raise TemplateProblem("a template comment must end with */ right before }}", line)


def _closing(text: str, start: int, line: int) -> tuple[int, bool]:
    """Where the action starting at `start` ends (the index of its `}}`, or of the ` -` before
    it) and whether it trims what follows."""
    index, quote = start, None
    while index < len(text):
        char = text[index]
        if quote:
            if char == "\\" and quote == '"':
                index += 2
                continue
            if char == quote:
                quote = None
        elif char in "\"`":
            quote = char
        elif text.startswith("}}", index):
            if index - 2 >= start and text[index - 1] == "-" and text[index - 2] in _WHITESPACE:
                return index - 2, True
            return index, False
        index += 1
    raise TemplateProblem("a template action `{{` is not closed by `}}`", line)


def _evaluate(action: str, data: TemplateData, line: int, lenient: bool) -> str:
    if not action:
        raise TemplateProblem("an empty template action `{{}}`", line)
    tokens = _tokens(action, line)
    if tokens[0][0] == "ident" and tokens[0][1] in _KEYWORDS:
        raise TemplateProblem(f"`{{{{{tokens[0][1]} ...}}}}` is not supported in task files: "
                              "only values, run variables, secrets and pipes into functions",
                              line)
    commands: list[list[tuple[str, str]]] = [[]]
    for token in tokens:
        if token[0] == "pipe":
            commands.append([])
        else:
            commands[-1].append(token)
    if any(not command for command in commands):
        raise TemplateProblem(f"`{{{{{action}}}}}`: an empty command in the pipe", line)
    # `default` exists for names without a value: with it, they are not an error.
    tolerant = lenient or any(c[0] == ("ident", "default") for c in commands)
    result: object = None
    for position, command in enumerate(commands):
        piped = position > 0
        head_kind, head = command[0]
        if head_kind == "ident" and head not in ("true", "false", "nil"):
            function = _FUNCTIONS.get(head)
            if function is None:
                known = ", ".join(sorted(_FUNCTIONS))
                raise TemplateProblem(f"`{head}` is not a template function task files may "
                                      f"use (known: {known})", line)
            args = [_operand(t, data, line, tolerant) for t in command[1:]]
            if piped:
                args.append(result)
            try:
                result = function(*args)
            except TypeError:
                raise TemplateProblem(f"`{head}` given {len(args)} argument(s) in "
                                      f"`{{{{{action}}}}}`", line) from None
            except ValueError as exc:
                raise TemplateProblem(f"`{{{{{action}}}}}`: {exc}", line) from None
        else:
            if piped or len(command) > 1:
                raise TemplateProblem(f"`{{{{{action}}}}}`: only a function can take "
                                      "arguments or a pipe", line)
            result = _operand(command[0], data, line, tolerant)
    try:
        return _text(result)
    except ValueError as exc:
        raise TemplateProblem(f"`{{{{{action}}}}}` {exc}", line) from None


def _tokens(action: str, line: int) -> list[tuple[str, str]]:
    tokens, index = [], 0
    while index < len(action):
        match = _TOKEN.match(action, index)
        if match is None:
            raise TemplateProblem(f"`{{{{{action}}}}}`: cannot read {action[index:]!r}", line)
        index = match.end()
        kind = match.lastgroup
        if kind == "space":
            continue
        if kind == "other":
            raise TemplateProblem(f"`{{{{{action}}}}}`: {match.group()!r} (variables, "
                                  "parentheses) is not supported in task files", line)
        tokens.append((kind, match.group()))
    return tokens


def _operand(token: tuple[str, str], data: TemplateData, line: int, tolerant: bool) -> object:
    kind, text = token
    if kind == "string":
        return json.loads(text)
    if kind == "raw":
        return text[1:-1]
    if kind == "number":
        return text
    if kind == "ident":
        return {"true": True, "false": False, "nil": None}.get(text, text)
    if kind == "dot":
        raise TemplateProblem("`{{.}}` names the whole of a run's data: name one value, "
                              "such as {{.Values.x}}", line)
    if kind == "field":
        return _field(text, data, line, tolerant)
    raise TemplateProblem(f"cannot use {text!r} here", line)


def _field(chain: str, data: TemplateData, line: int, tolerant: bool) -> object:
    scope, *path = chain[1:].split(".")
    written = "{{" + chain + "}}"
    if scope == "Build" and path == ["ID"]:  # acr-builder's older name for the run's id
        scope = "Run"
    if scope == "Run":
        if len(path) != 1 or path[0] not in data.run:
            if tolerant:
                return None
            raise TemplateProblem(missing_variable(written, "Run", ".".join(path),
                                                   dict(data.run)), line)
        return data.run[path[0]]
    if scope == "Secrets":
        if len(path) == 1 and path[0] in data.secrets:
            return data.secrets[path[0]]
        if tolerant:
            return None
        name = ".".join(path) or "NAME"
        raise TemplateProblem(f"{written} has no value: pass it with --set-secret {name}=...",
                              line)
    if scope == "Values":
        value: object = data.values
        for depth, part in enumerate(path):
            if not isinstance(value, Mapping) or part not in value:
                if tolerant:
                    return None
                how = (f"pass it with --set {path[0]}=... or in the values file" if depth == 0
                       else "give it in the values file")
                raise TemplateProblem(f"{written} has no value: {how}", line)
            value = value[part]
        return value
    if tolerant:
        return None
    raise TemplateProblem(f"{written}: task files know .Run, .Values and .Secrets", line)
