"""Docker's shell-style word processing for Dockerfile instructions: quotes, escapes, ARGs."""
from __future__ import annotations

import re
from dataclasses import dataclass

ARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class ExpansionError(Exception):
    """Why a word could not be expanded, phrased to follow the instruction: 'FROM uses ...'."""


@dataclass
class ArgScope:
    """ARG values visible at one point: None means declared without a value."""

    values: dict[str, str | None | ExpansionError]
    where: str  # where a missing ARG should be declared, for the error message

    def get(self, name: str, declared: bool = False) -> str | None:
        """The value of `name`; with declared=True, an undeclared ARG is an error, not unset."""
        if name not in self.values:
            if not declared:
                return None
            raise ExpansionError(f"uses ARG {name}, which is not declared {self.where}; "
                                  f"add 'ARG {name}=...' there")
        value = self.values[name]
        if isinstance(value, ExpansionError):
            raise value  # its own default needed an ARG that has no value
        return value


class WordExpander:
    """Docker's shell-style word processing: quotes, escapes, $X and ${X[:]-+? word}."""

    def __init__(self, text: str, scope: ArgScope, escape: str):
        self.text, self.scope, self.escape, self.pos = text, scope, escape, 0

    def word(self, stop: str = "", evaluate: bool = True) -> str:
        """Process up to `stop` (or the end); with evaluate=False only skip over it."""
        out = []
        while self.pos < len(self.text) and self.text[self.pos] != stop:
            char = self._next()
            if char == self.escape and self.pos < len(self.text):
                out.append(self._next())
            elif char == "'":
                end = self.text.find("'", self.pos)
                end = len(self.text) if end < 0 else end
                out.append(self.text[self.pos:end])
                self.pos = end + 1
            elif char == '"':
                out.append(self._double_quoted(evaluate))
            elif char == "$":
                out.append(self._dollar(evaluate))
            else:
                out.append(char)
        return "".join(out)

    def _double_quoted(self, evaluate: bool) -> str:
        out = []
        while self.pos < len(self.text) and self.text[self.pos] != '"':
            char = self._next()
            if char == self.escape and self._peek() in ('"', "$", self.escape):
                out.append(self._next())
            elif char == "$":
                out.append(self._dollar(evaluate))
            else:
                out.append(char)
        self.pos += 1
        return "".join(out)

    def _dollar(self, evaluate: bool) -> str:
        braced = self._peek() == "{"
        self.pos += braced
        match = ARG_NAME.match(self.text, self.pos)
        if not match:
            if braced:
                raise ExpansionError(f"has a bad substitution in {self.text!r}")
            return "$"
        name, self.pos = match[0], match.end()
        if not braced or self._peek() == "}":
            self.pos += braced
            return self._required(name, evaluate)
        colon = self._peek() == ":"
        self.pos += colon
        operator = self._next()
        if operator not in ("-", "+", "?"):
            raise ExpansionError(f"has a bad substitution in {self.text!r}")
        # With a fallback written out, an undeclared ARG is merely unset, as Docker treats it.
        value = self.scope.get(name) if evaluate else ""
        # `:` makes an empty value count as unset, as in the POSIX shell.
        is_set = value is not None and (value != "" or not colon)
        wanted = (operator == "-" and not is_set) or (operator == "+" and is_set)
        word = self.word("}", evaluate and wanted)
        if self._next() != "}":
            raise ExpansionError(f"has a bad substitution in {self.text!r}")
        if operator == "?":
            if evaluate and not is_set:
                raise _no_value(name, word)
            return value or ""
        return word if wanted else (value if operator == "-" else "")

    def _required(self, name: str, evaluate: bool) -> str:
        value = self.scope.get(name, declared=True) if evaluate else ""
        if value is None:
            raise _no_value(name, "")
        return value

    def _next(self) -> str:
        self.pos += 1
        return self.text[self.pos - 1] if self.pos <= len(self.text) else ""

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""


def _no_value(name: str, reason: str) -> ExpansionError:
    hint = f" ({reason})" if reason else ""
    return ExpansionError(f"uses ARG {name}, which has no value{hint}; "
                           f"pass --build-arg {name}=...")


def split_words(text: str, escape: str) -> list[str]:
    """Split on whitespace outside quotes, keeping quotes and escapes for the expander."""
    words, current, quote, escaped = [], [], "", False
    for char in text:
        if escaped:
            escaped = False
        elif char == escape and quote != "'":
            escaped = True
        elif char in "'\"" and quote in ("", char):
            quote = "" if quote else char
        elif char.isspace() and not quote:
            if current:
                words.append("".join(current))
                current = []
            continue
        current.append(char)
    if current:
        words.append("".join(current))
    return words
