"""Docker's shell-style word processing for Dockerfile instructions: quotes, escapes, ARGs and
the `${...}` modifiers, after BuildKit's frontend/dockerfile/shell/lex.go, within limits."""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from basewatch.dockerfile.patterns import (MatchBudget, PatternBudgetExceeded,
                                           PatternError, replace, trim_prefix,
                                           trim_suffix)

ARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Far above any real Dockerfile (image references are at most a few hundred characters), far
# below what hurts: 26 doubling ARG lines once asked for 2^27 characters and 2 GB.
MAX_WORD_LENGTH = 64 * 1024  # characters in one expanded word
MAX_EXPANSION_TOTAL = 4 * 1024 * 1024  # characters all the expansions of one Dockerfile make
MAX_PATTERN_STEPS = 2_000_000  # automaton steps all its ${V#p} ${V/p/r} patterns may take
MAX_NESTING = 64  # ${A:-${B:-...}} levels
# The special parameters BuildKit's lexer reads after `$` ($@, $#, ...).
_SPECIAL = "@*#?-$!0"


class ExpansionError(Exception):
    """Why a word could not be expanded, phrased to follow the instruction: 'FROM uses ...'."""


class ExpansionLimit(ExpansionError):
    """A word or the whole file expanded past a limit: an error at once, never deferred."""


@dataclass
class ExpansionBudget:
    """What the expansions of one Dockerfile may still produce."""

    characters: int = MAX_EXPANSION_TOTAL
    patterns: MatchBudget = field(default_factory=lambda: MatchBudget(MAX_PATTERN_STEPS))

    def spend(self, length: int) -> None:
        self.characters -= length
        if self.characters < 0:
            raise ExpansionLimit(
                f"takes the expansions of this Dockerfile past {MAX_EXPANSION_TOTAL} characters "
                "in all (the limit for one Dockerfile)")


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


def expand(text: str, scope: ArgScope, escape: str, budget: ExpansionBudget) -> str:
    """One word with its quotes and escapes processed and its ARGs substituted."""
    word = WordExpander(text, scope, escape, budget).word()
    budget.spend(len(word))
    return word


class WordExpander:
    """Docker's shell-style word processing: quotes, escapes, $X and ${X...}."""

    def __init__(self, text: str, scope: ArgScope, escape: str, budget: ExpansionBudget):
        self.text, self.scope, self.escape, self.budget = text, scope, escape, budget
        self.pos = self.depth = 0

    def word(self, stop: str = "", evaluate: bool = True, raw_escapes: bool = False) -> str:
        """Process up to `stop` (or the end); with evaluate=False only skip over it. With
        raw_escapes the escape characters stay, for a pattern to read them."""
        self.depth += 1
        if self.depth > MAX_NESTING:
            raise ExpansionLimit(f"nests ${{...}} more than {MAX_NESTING} levels deep")
        out = _Pieces()
        while self.pos < len(self.text) and self.text[self.pos] != stop:
            char = self._next()
            if char == self.escape:
                if raw_escapes:
                    out.add(char)
                if self.pos < len(self.text):
                    out.add(self._next())
            elif char == "'":
                end = self.text.find("'", self.pos)
                end = len(self.text) if end < 0 else end
                out.add(self.text[self.pos:end])
                self.pos = end + 1
            elif char == '"':
                out.add(self._double_quoted(evaluate, raw_escapes))
            elif char == "$":
                out.add(self._dollar(evaluate))
            else:
                out.add(char)
        self.depth -= 1
        return out.text()

    def _double_quoted(self, evaluate: bool, raw_escapes: bool) -> str:
        out = _Pieces()
        while self.pos < len(self.text) and self.text[self.pos] != '"':
            char = self._next()
            if char == self.escape:
                if raw_escapes:
                    out.add(char)
                if self._peek() in ('"', "$", self.escape):
                    char = self._next()
                elif not self._peek():
                    continue
                out.add(char)
            elif char == "$":
                out.add(self._dollar(evaluate))
            else:
                out.add(char)
        self.pos += 1
        return out.text()

    def _name(self) -> str:
        """A name after `$` as BuildKit reads it: digits, one special character, or a word."""
        start = self.pos
        if self._peek().isdecimal():
            while self._peek().isdecimal():
                self.pos += 1
        elif self._peek() and self._peek() in _SPECIAL:
            self.pos += 1
        else:
            while self._peek() and (self._peek().isalnum() or self._peek() == "_"):
                self.pos += 1
        return self.text[start:self.pos]

    def _dollar(self, evaluate: bool) -> str:
        if self._peek() != "{":
            name = self._name()
            return self._required(name, evaluate) if name else "$"
        self.pos += 1
        if not self._peek():
            raise self._bad("'}' is missing")
        if self._peek() in "{}:":
            raise self._bad("a name must follow '${'")
        name = self._name()
        if not name:
            raise self._bad("a name must follow '${'")
        operator = self._next()
        if operator == "}":
            return self._required(name, evaluate)
        if not operator:
            raise self._bad("'}' is missing")
        colon = operator == ":"
        if colon:
            operator = self._next()
        if operator in ("-", "+", "?"):
            return self._fallback(name, operator, colon, evaluate)
        if operator in ("#", "%"):
            pattern = self._closed(self.word("}", evaluate, raw_escapes=True), "}")
            # BuildKit accepts and ignores a colon here: ${V:#p} is ${V#p}.
            value = self._required(name, evaluate)
            if not evaluate:
                return ""
            longest = pattern.startswith(operator)
            pattern = pattern[1:] if longest else pattern
            trim = trim_prefix if operator == "#" else trim_suffix
            return self._matching(trim, value, pattern, longest)
        if operator == "/" and not colon:
            every = self._peek() == "/"
            self.pos += every
            pattern = self._closed(self.word("/", evaluate, raw_escapes=True), "/")
            replacement = self._closed(self.word("}", evaluate, raw_escapes=True), "}")
            value = self._required(name, evaluate)
            if not evaluate:
                return ""
            return self._matching(replace, value, pattern, replacement, every)
        shown = (":" if colon else "") + operator
        raise self._bad(f"'{shown}' is not a modifier Docker knows" if operator
                        else "'}' is missing")

    def _fallback(self, name: str, operator: str, colon: bool, evaluate: bool) -> str:
        # With a fallback written out, an undeclared ARG is merely unset, as Docker treats it.
        value = self.scope.get(name) if evaluate else ""
        # `:` makes an empty value count as unset, as in the POSIX shell.
        is_set = value is not None and (value != "" or not colon)
        wanted = (operator == "-" and not is_set) or (operator == "+" and is_set)
        word = self._closed(self.word("}", evaluate and wanted), "}")
        if operator == "?":
            if evaluate and not is_set:
                raise _no_value(name, word)
            return value or ""
        return word if wanted else (value if operator == "-" else "") or ""

    def _matching(self, function, value: str, *args) -> str:
        try:
            result = function(value, *args, self.budget.patterns)
        except PatternError as exc:
            raise self._bad(str(exc)) from None
        except PatternBudgetExceeded:
            raise ExpansionLimit(f"takes its ${{V#pattern}} and ${{V/pattern/...}} matching past "
                                 f"{MAX_PATTERN_STEPS} steps (the limit for one Dockerfile)"
                                 ) from None
        return _checked(result)

    def _closed(self, word: str, stop: str) -> str:
        if self._next() != stop:
            raise self._bad(f"'{stop}' is missing")
        return word

    def _required(self, name: str, evaluate: bool) -> str:
        value = self.scope.get(name, declared=True) if evaluate else ""
        if value is None:
            raise _no_value(name, "")
        return value

    def _bad(self, detail: str) -> ExpansionError:
        return ExpansionError(f"has a bad substitution in {_shown(self.text)}: {detail}")

    def _next(self) -> str:
        self.pos += 1
        return self.text[self.pos - 1] if self.pos <= len(self.text) else ""

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""


class _Pieces:
    """A word being built, refused as soon as it outgrows MAX_WORD_LENGTH."""

    def __init__(self):
        self.parts: list[str] = []
        self.length = 0

    def add(self, part: str) -> None:
        self.length += len(part)
        if self.length > MAX_WORD_LENGTH:
            raise _too_long()
        self.parts.append(part)

    def text(self) -> str:
        return "".join(self.parts)


def _checked(word: str) -> str:
    if len(word) > MAX_WORD_LENGTH:
        raise _too_long()
    return word


def _too_long() -> ExpansionLimit:
    return ExpansionLimit(f"expands a word to more than {MAX_WORD_LENGTH} characters "
                          "(the limit for one word)")


def _shown(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


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
