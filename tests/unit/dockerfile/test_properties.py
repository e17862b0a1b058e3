"""Property tests: whatever a Dockerfile holds, analysis gives bases or a DockerfileError with a
one-line message (never another exception), quickly and within a bounded amount of memory."""
from __future__ import annotations

import re
import tracemalloc
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from basewatch.errors import DockerfileError
from basewatch.dockerfile.analysis import DockerfileBases, analyse_dockerfile
from basewatch.dockerfile.patterns import (MatchBudget, PatternError, replace, trim_prefix,
                                           trim_suffix)

# The caps keep one analysis far below this; the doubling-ARG file once took 2.1 GB.
MEMORY_BOUND = 64 * 1024 * 1024
SETTINGS = settings(max_examples=300, deadline=timedelta(seconds=2),
                    suppress_health_check=[HealthCheck.too_slow])


def analyse(content: str, **kwargs) -> DockerfileBases | None:
    """The analysis, or None for a DockerfileError; anything else fails the property."""
    try:
        return analyse_dockerfile(content, build_platform="linux/amd64", **kwargs)
    except DockerfileError as exc:
        assert str(exc) and "\n" not in str(exc)
        return None


def within_memory(content: str, **kwargs) -> None:
    tracemalloc.start()
    try:
        analyse(content, **kwargs)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_BOUND


@SETTINGS
@given(st.text(max_size=2000))
def test_any_text(content):
    analyse(content)


# Text made of the characters that matter to the parser, so the edge cases come up often.
SYNTAX = st.text(alphabet=st.sampled_from(list("FROMASCPYRUNENVG-=${}#%/:?*\\`'\"<> \t\n@.0a")),
                 max_size=400)


@SETTINGS
@given(SYNTAX)
def test_syntax_soup(content):
    analyse(content)


NAME = st.sampled_from(["A", "B", "TAG", "V", "TARGETARCH", "BUILDPLATFORM"])
STAGE = st.sampled_from(["build", "base", "final", "Build", "0", "1", "5", "scratch"])
IMAGE = st.sampled_from(["alpine", "alpine:3.19", "golang:1.22", "ghcr.io/org/x:1",
                         "127.0.0.1:5000/a/b@sha256:" + "a" * 64, "Bad/Image", "node:", ""])
MODIFIER = st.sampled_from(["", ":-x", "-y", ":+z", "+w", "?", ":?msg", "#v", "##*.", "%.*",
                            "%%-*", "/a/b", "//./-", "/*/", "#\\*", "/[/]", ":/x/y", "!"])


@st.composite
def words(draw):
    parts = draw(st.lists(st.one_of(
        IMAGE, STAGE, NAME.map(lambda n: f"${n}"),
        st.tuples(NAME, MODIFIER).map(lambda t: f"${{{t[0]}{t[1]}}}"),
        st.sampled_from(["'", '"', "\\", "-", ":", "@"])), min_size=1, max_size=4))
    return "".join(parts)


@st.composite
def instruction(draw):
    kind = draw(st.sampled_from(["FROM", "ARG", "COPY", "RUN", "ENV", "heredoc", "comment",
                                 "directive", "continued"]))
    word = draw(words())
    if kind == "FROM":
        platform = draw(st.sampled_from(["", "--platform=$BUILDPLATFORM ", "--platform x "]))
        alias = draw(st.sampled_from(["", " AS build", " AS base", " as final", " AS 1x"]))
        return f"FROM {platform}{word}{alias}"
    if kind == "ARG":
        return f"ARG {draw(NAME)}" + draw(st.sampled_from(["", "=", f"={word}"]))
    if kind == "COPY":
        return f"COPY --from={word} /a /b"
    if kind == "RUN":
        mount = draw(st.sampled_from(["type=bind,from=", "type=cache,from=", "from=",
                                      "type=tmpfs,from=", "\"from="]))
        return f"RUN --mount={mount}{word},target=/x true"
    if kind == "ENV":
        return "ENV " + draw(st.sampled_from(["", "A", "A=1", "A 1", "A=1 B"]))
    if kind == "heredoc":
        name = draw(st.sampled_from(["EOF", "'EOT'", "-EOF", "\"E\""]))
        body = draw(st.sampled_from(["FROM evil", "EOF", "\tEOF", "x"]))
        return f"RUN <<{name} sh\n{body}\nEOF"
    if kind == "comment":
        return "# " + word
    if kind == "directive":
        return draw(st.sampled_from(["# escape=`", "# escape=\\", "# check=skip=all",
                                     "# syntax=docker/dockerfile:1", "# escape=x"]))
    return f"RUN echo {word} \\\\\n  {word} \\"


@SETTINGS
@given(st.lists(instruction(), max_size=25), st.sampled_from([None, "build", "base", "final"]),
       st.dictionaries(NAME, st.sampled_from(["", "1", "alpine", "x$y"]), max_size=2),
       st.sampled_from(["linux/amd64", "linux/arm64", "linux/arm/v7"]))
def test_structured_dockerfiles(lines, target, build_args, platform):
    within_memory("\n".join(lines) + "\n", target=target, build_args=build_args,
                  platform=platform)


@SETTINGS
@given(st.integers(min_value=1, max_value=40), st.sampled_from(["$A{i}$A{i}", "${{A{i}}}x" * 3]))
def test_growing_args_stay_bounded(count, template):
    lines = ["ARG A0=" + "x" * 1000]
    lines += [f"ARG A{i + 1}=" + template.format(i=i) for i in range(count)]
    within_memory("\n".join(lines) + f"\nFROM alpine:${{A{count}}}\n")


PATTERN = st.text(alphabet=st.sampled_from(list("ab*?\\[].")), max_size=12)
VALUE = st.text(alphabet=st.sampled_from(list("ab.[]\n")), max_size=200)


def _regex(pattern: str) -> str:
    """An independent reading of a pattern: the regular expression BuildKit compiles it to."""
    from basewatch.dockerfile.patterns import _ANY, _STAR, _tokens

    return "".join(".*" if t is _STAR else "." if t is _ANY else re.escape(t)
                   for t in _tokens(pattern))


@SETTINGS
@given(VALUE, PATTERN, st.booleans())
def test_patterns_agree_with_regular_expressions(value, pattern, longest):
    """Trims take the shortest (or longest) prefix or suffix the pattern matches in full, and a
    replacement the longest match at the leftmost place, as bash and BuildKit do."""
    try:
        regex = re.compile(_regex(pattern))
    except PatternError:
        return
    budget = MatchBudget(10**9)
    ends = [end for end in range(len(value) + 1) if regex.fullmatch(value, 0, end)]
    expected = value if not ends else value[(max(ends) if longest else min(ends)):]
    assert trim_prefix(value, pattern, longest, budget) == expected
    starts = [start for start in range(len(value) + 1) if regex.fullmatch(value, start)]
    expected = value if not starts else value[:(min(starts) if longest else max(starts))]
    assert trim_suffix(value, pattern, longest, budget) == expected
    first = next((start for start in range(len(value) + 1) if regex.match(value, start)), None)
    if first is None:
        assert replace(value, pattern, "R", False, budget) == value
    else:
        end = max(e for e in range(first, len(value) + 1) if regex.fullmatch(value, first, e))
        assert replace(value, pattern, "R", False, budget) == value[:first] + "R" + value[end:]
    replace(value, pattern, "R", True, budget)
