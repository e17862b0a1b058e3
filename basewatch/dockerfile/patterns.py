"""The shell patterns of `${V#p}`, `${V%%p}`, `${V/p/r}`, read as BuildKit's shell/lex.go reads
them: `*` any run of characters, `?` one character, `\\` escaping `*`, `?` and `\\`; brackets
are plain characters. BuildKit turns a pattern into a Go (RE2) regular expression, which runs
in linear time; Python's backtracking `re` would not (`*a*a*a*b` against a long value), so the
pattern runs here as a bit-parallel automaton whose cost is counted against a budget."""
from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass

_STAR, _ANY = object(), object()


class PatternError(Exception):
    """A pattern BuildKit would refuse, phrased to follow 'has a bad substitution ...'."""


@dataclass
class MatchBudget:
    """Automaton steps left for the patterns of one Dockerfile."""

    remaining: int

    def spend(self, steps: int) -> None:
        self.remaining -= steps
        if self.remaining < 0:
            raise PatternBudgetExceeded


class PatternBudgetExceeded(Exception):
    """The Dockerfile's patterns took more steps than it may spend."""


class Pattern:
    """One compiled pattern; `reverse` reads it right to left (for `%` and `%%`)."""

    def __init__(self, text: str, reverse: bool = False):
        tokens = _tokens(text)
        if reverse:
            tokens.reverse()
        self.size = len(tokens)
        self.star = self.any = 0
        self.literal: dict[str, int] = {}
        for index, token in enumerate(tokens):
            bit = 1 << index
            if token is _STAR:
                self.star |= bit
            elif token is _ANY:
                self.any |= bit
            else:
                self.literal[token] = self.literal.get(token, 0) | bit
        self.accept = 1 << self.size
        self.cost = 1 + self.size // 256  # big-integer steps grow with the pattern

    def _closure(self, states: int) -> int:
        # Consecutive stars were merged, so one shift reaches everything a star can skip to.
        return states | ((states & self.star) << 1)

    def _step(self, states: int, char: str) -> int:
        # RE2 without the s flag: neither `?` nor `*` matches a newline.
        wild = 0 if char == "\n" else self.any
        moved = (states & (self.literal.get(char, 0) | wild)) << 1
        if char != "\n":
            moved |= states & self.star
        return self._closure(moved)

    def match_end(self, value: str, start: int, longest: bool, budget: MatchBudget) -> int | None:
        """Where the shortest (or longest) match of the pattern starting at `start` ends."""
        states, found = self._closure(1), None
        if states & self.accept:
            found = start
            if not longest:
                return found
        for position in range(start, len(value)):
            budget.spend(self.cost)
            states = self._step(states, value[position])
            if not states:
                break
            if states & self.accept:
                found = position + 1
                if not longest:
                    return found
        return found

    def match_starts(self, value: str, budget: MatchBudget) -> list[int]:
        """Every position at which some match begins; `self` must be the reversed pattern."""
        start = self._closure(1)
        states, starts = start, []
        if states & self.accept:
            starts.append(len(value))
        for steps, char in enumerate(reversed(value), 1):
            budget.spend(self.cost)
            states = self._step(states, char) | start
            if states & self.accept:
                starts.append(len(value) - steps)
        starts.reverse()
        return starts


def trim_prefix(value: str, pattern: str, longest: bool, budget: MatchBudget) -> str:
    end = Pattern(pattern).match_end(value, 0, longest, budget)
    return value if end is None else value[end:]


def trim_suffix(value: str, pattern: str, longest: bool, budget: MatchBudget) -> str:
    end = Pattern(pattern, reverse=True).match_end(value[::-1], 0, longest, budget)
    return value if end is None else value[:len(value) - end]


def replace(value: str, pattern: str, replacement: str, every: bool,
            budget: MatchBudget) -> str:
    """Leftmost longest matches replaced, the first or all of them, as Go's regexp does."""
    forward = Pattern(pattern)
    starts = Pattern(pattern, reverse=True).match_starts(value, budget)
    out, last_end, search = [], 0, 0
    while search <= len(value):
        at = bisect_left(starts, search)
        if at == len(starts):
            break
        start = starts[at]
        end = forward.match_end(value, start, True, budget)
        assert end is not None  # a start is where a match exists
        out.append(value[last_end:start])
        # Go's ReplaceAll: an empty match right after another match is not replaced.
        if end > last_end or start == 0:
            out.append(replacement)
        last_end = end
        if not every:
            break
        search = search + 1 if search + 1 > end else end
    out.append(value[last_end:])
    return "".join(out)


def _tokens(text: str) -> list:
    tokens: list = []
    pos = 0
    while pos < len(text):
        char = text[pos]
        pos += 1
        if char == "*":
            if not tokens or tokens[-1] is not _STAR:
                tokens.append(_STAR)
            continue
        if char == "?":
            tokens.append(_ANY)
            continue
        if char == "\\":
            following = text[pos] if pos < len(text) else ""
            if following in ("}", "/"):
                continue  # the escape only kept it out of the ${} syntax
            if following not in ("*", "?", "\\"):
                raise PatternError(f"invalid escape '\\{following}' in the pattern {text!r}")
            pos += 1
            char = following
        tokens.append(char)
    return tokens
