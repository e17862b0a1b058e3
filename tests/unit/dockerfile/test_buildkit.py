"""Dockerfiles read as BuildKit reads them (moby/buildkit frontend/dockerfile: parser/parser.go,
parser/directives.go, shell/lex.go, dockerfile2llb/convert.go and platform.go): one test per
rule of issue 8, each failing on the analysis as it was before."""
import time
from textwrap import dedent

import pytest

from basewatch.errors import DockerfileError
from basewatch.oci.platforms import Platform
from basewatch.dockerfile.analysis import (MAX_DOCKERFILE_BYTES, analyse_dockerfile,
                                           analyse_dockerfile_path, automatic_args)
from basewatch.dockerfile.patterns import MatchBudget, replace, trim_suffix
from basewatch.dockerfile.words import (MAX_EXPANSION_TOTAL, MAX_PATTERN_STEPS,
                                        MAX_WORD_LENGTH)


def bases(content, build_args=None, target=None, platform=None, build_platform="linux/amd64"):
    return analyse_dockerfile(dedent(content), build_args, target, platform=platform,
                              build_platform=build_platform).to_json()


def runtime(content, **kwargs):
    return bases(content, **kwargs)["runtime"]


def fails(content, match, **kwargs):
    with pytest.raises(DockerfileError, match=match) as caught:
        bases(content, **kwargs)
    assert "\n" not in str(caught.value)
    return str(caught.value)


# ------------------------------------------------------------------ automatic platform ARGs

@pytest.mark.parametrize("platform, expected", [
    ("linux/amd64", "docker.io/library/bin:linux-amd64-"),
    ("linux/arm64", "docker.io/library/bin:linux-arm64-"),
    ("linux/arm/v7", "docker.io/library/bin:linux-arm-v7"),
    ("linux/arm/v6", "docker.io/library/bin:linux-arm-v6"),
])
def test_target_platform_args_come_from_the_tasks_platform(platform, expected):
    content = "FROM bin:${TARGETOS}-${TARGETARCH}-${TARGETVARIANT}\n"
    assert runtime(content, platform=platform) == expected


def test_build_platform_args_come_from_the_build_platform():
    content = """
        FROM --platform=$BUILDPLATFORM tools:${BUILDOS}-${BUILDARCH} AS tools
        FROM alpine
        COPY --from=tools /x /y
    """
    assert bases(content, platform="linux/arm64", build_platform="linux/amd64")["buildtime"] == \
        ["docker.io/library/tools:linux-amd64"]


def test_target_platform_defaults_to_the_build_platform_as_in_buildkit():
    assert runtime("FROM bin:${TARGETPLATFORM/\\//-}\n", build_platform="linux/arm64") == \
        "docker.io/library/bin:linux-arm64"


def test_each_platform_is_analysed_on_its_own():
    content = "FROM golang AS build-amd64\nFROM busybox AS build-arm64\nFROM build-${TARGETARCH}\n"
    assert runtime(content, platform="linux/amd64") == "docker.io/library/golang:latest"
    assert runtime(content, platform="linux/arm64") == "docker.io/library/busybox:latest"


def test_platform_args_in_a_stage_need_an_arg_line_as_in_buildkit():
    content = """
        FROM alpine AS a
        ARG TARGETARCH
        COPY --from=tools:${TARGETARCH} /x /y
    """
    assert bases(content, platform="linux/arm64")["buildtime"] == \
        ["docker.io/library/tools:arm64"]
    fails(content.replace("ARG TARGETARCH\n", ""), "ARG TARGETARCH, which is not declared "
                                                   "in this stage")


def test_a_stage_inherits_the_args_of_the_stage_it_is_built_on():
    content = """
        FROM alpine AS base
        ARG TOOLS=tools:1
        FROM base AS build
        COPY --from=$TOOLS /x /y
    """
    assert bases(content)["buildtime"] == ["docker.io/library/tools:1"]


def test_build_args_still_override_the_platform_args():
    assert runtime("FROM bin:${TARGETARCH}\n", build_args={"TARGETARCH": "riscv64"}) == \
        "docker.io/library/bin:riscv64"


def test_automatic_args_values():
    assert automatic_args(Platform.parse("linux/arm/v7"), Platform.parse("linux/amd64")) == {
        "TARGETPLATFORM": "linux/arm/v7", "TARGETOS": "linux", "TARGETARCH": "arm",
        "TARGETVARIANT": "v7", "BUILDPLATFORM": "linux/amd64", "BUILDOS": "linux",
        "BUILDARCH": "amd64", "BUILDVARIANT": ""}


# ------------------------------------------------------------------ shell modifiers

@pytest.mark.parametrize("expression, value, expected", [
    ("${V#v}", "v1.2.3", "1.2.3"),
    ("${V#*.}", "1.2.3", "2.3"),
    ("${V##*.}", "1.2.3", "3"),
    ("${V%.*}", "1.2.3", "1.2"),
    ("${V%%.*}", "1.2.3", "1"),
    ("${V%-*}", "1.22-alpine", "1.22"),
    ("${V#?}", "x9", "9"),
    ("${V#nomatch}", "1.2", "1.2"),
    ("${V#[}", "[1", "1"),  # brackets are plain characters, as in BuildKit
    ("${V#\\*}", "*1", "1"),
    ("${V/./-}", "1.2.3", "1-2.3"),
    ("${V//./-}", "1.2.3", "1-2-3"),
    ("${V//\\//-}", "linux/arm/v7", "linux-arm-v7"),
    ("${V/*-/}", "a-b-c", "c"),  # the longest match at the leftmost place
    ("${V//?/x}", "abc", "xxx"),
    ("${V/#/p}", "abc", "abc"),  # `#` is a plain character in BuildKit's pattern
    ("${V:#v}", "v1", "1"),  # BuildKit ignores the colon here
])
def test_shell_modifiers(expression, value, expected):
    content = f"ARG V\nFROM alpine:{expression}x\n"
    assert runtime(content, build_args={"V": value}) == f"docker.io/library/alpine:{expected}x"


def test_modifiers_as_moby_uses_them():
    # moby/moby's Dockerfile: ARG GO_VERSION=1.22.5 ... FROM golang:${GO_VERSION}-... and the
    # like; a version stripped of its patch number.
    content = """
        ARG GO_VERSION=1.22.5
        ARG BASE_DEBIAN_DISTRO="bookworm"
        FROM golang:${GO_VERSION%.*}-${BASE_DEBIAN_DISTRO} AS base
        FROM base
    """
    assert runtime(content) == "docker.io/library/golang:1.22-bookworm"


def test_modifier_on_an_arg_without_value_is_an_error_naming_it():
    message = fails("ARG V\nFROM alpine:${V#v}\n", "ARG V, which has no value")
    assert message.count("ARG V") == 1


@pytest.mark.parametrize("expression, detail", [
    ("${V!x}", "'!' is not a modifier Docker knows"),
    ("${V:/a/b}", "':/' is not a modifier Docker knows"),
    ("${V#\\a}", "invalid escape '\\a'"),
    ("${V/a}", "'/' is missing"),
])
def test_bad_modifiers_say_what_is_wrong_once(expression, detail):
    message = fails(f"ARG V=1\nFROM alpine:{expression}\n", "bad substitution")
    assert detail in message
    assert message.count("bad substitution") == 1


def test_patterns_are_linear_not_backtracking():
    # A backtracking matcher takes hours on this; BuildKit's RE2 and ours take milliseconds.
    started = time.monotonic()
    value = "a" * 20000
    budget = MatchBudget(MAX_PATTERN_STEPS)
    assert trim_suffix(value, "*a*a*a*a*a*a*a*a*b", True, budget) == value
    assert replace(value, "a*a*a*a*a*b", "x", True, budget) == value
    assert time.monotonic() - started < 5


def test_pattern_work_is_bounded():
    content = "ARG V=" + "a" * 60000 + "\nFROM alpine:x" + "${V//a/}" * 40 + "\n"
    fails(content, f"past {MAX_PATTERN_STEPS} steps")


# ------------------------------------------------------------------ heredocs

def test_heredoc_bodies_are_not_instructions():
    assert bases("""
        FROM golang:1.22 AS build
        RUN <<EOF
        FROM evil:1
        COPY --from=evil:2 /a /b
        EOF
        FROM alpine:3.19
        COPY --from=build /x /y
    """) == {"runtime": "docker.io/library/alpine:3.19",
             "buildtime": ["docker.io/library/golang:1.22"]}


def test_heredoc_forms():
    content = (
        "FROM alpine:3.19\n"
        "RUN <<-'EOT' bash\n"
        "\tFROM evil:1\n"
        "\tEOT\n"
        "COPY <<A /a <<\"B\" /b\n"
        "FROM evil:2\n"
        "A\n"
        "FROM evil:3\n"
        "B\n"
        "RUN 3<<EOF cat /dev/fd/3\n"
        "FROM evil:4\n"
        "EOF\n"
        "ONBUILD RUN <<EOF\n"
        "FROM evil:5\n"
        "EOF\n"
        "COPY --from=tools:1 /t /t\n")
    assert bases(content) == {"runtime": "docker.io/library/alpine:3.19",
                              "buildtime": ["docker.io/library/tools:1"]}


def test_heredoc_terminator_must_be_alone_and_unindented_without_dash():
    content = "FROM alpine\nRUN <<EOF\n  EOF\nFROM evil\nEOF\nFROM busybox\n"
    assert runtime(content) == "docker.io/library/busybox:latest"


def test_exec_form_and_other_instructions_open_no_heredoc():
    content = 'FROM alpine\nRUN ["sh", "-c", "cat <<EOF"]\nFROM busybox\n'
    assert runtime(content) == "docker.io/library/busybox:latest"
    assert runtime("FROM alpine\nLABEL x=<<EOF\nFROM busybox\n") == \
        "docker.io/library/busybox:latest"


def test_unterminated_heredoc_is_an_error():
    fails("FROM alpine\nRUN <<EOF\necho hi\n", "line 2: the heredoc <<EOF is never terminated")


# ------------------------------------------------------------------ RUN --mount from

def test_run_mount_from_an_image_is_a_buildtime_base():
    assert bases("""
        FROM golang:1.22 AS build
        RUN --mount=type=bind,from=tonistiigi/xx:1.4,source=/,target=/xx true
        RUN --mount=type=cache,target=/root/.cache,from=busybox:1.36 true
        RUN --mount=from=ghcr.io/org/assets:1,target=/a true
        RUN --mount=type=tmpfs,target=/t --mount=type=secret,id=s true
        RUN --mount=type=cache,target=/c true
        FROM alpine:3.19
        COPY --from=build /x /y
    """)["buildtime"] == ["docker.io/library/busybox:1.36", "docker.io/library/golang:1.22",
                          "docker.io/tonistiigi/xx:1.4", "ghcr.io/org/assets:1"]


def test_run_mount_from_a_stage_makes_it_needed():
    assert bases("""
        FROM node:20 AS deps
        FROM golang:1.22 AS build
        RUN --mount=type=bind,from=deps,target=/deps true
        FROM alpine:3.19
        COPY --from=build /x /y
    """)["buildtime"] == ["docker.io/library/golang:1.22", "docker.io/library/node:20"]


def test_run_mount_from_expands_args():
    content = "FROM alpine\nARG XX=tonistiigi/xx:1.4\nRUN --mount=from=$XX,target=/x true\n"
    assert bases(content)["buildtime"] == ["docker.io/tonistiigi/xx:1.4"]


# ------------------------------------------------------------------ escapes and directives

def test_escaped_backslash_at_line_end_does_not_continue():
    assert runtime("""\
        FROM mcr.microsoft.com/windows/nanoserver:ltsc2022 AS build
        COPY x C:\\\\dir\\\\
        FROM alpine:3.19
    """) == "docker.io/library/alpine:3.19"


def test_escaped_backtick_at_line_end_does_not_continue():
    assert runtime("# escape=`\nFROM busybox AS a\nCOPY x C:\\dir``\nFROM alpine:3.19\n") == \
        "docker.io/library/alpine:3.19"


def test_check_directive_before_escape_leaves_escape_in_force():
    content = ("# check=skip=all\n# escape=`\nFROM busybox AS a\nRUN echo `\n"
               "COPY --from=evil /a /b\nFROM alpine\nCOPY --from=a / /\n")
    assert bases(content)["buildtime"] == ["docker.io/library/busybox:latest"]


def test_escape_directive_after_an_instruction_or_blank_line_is_a_comment():
    content = "\n# escape=`\nFROM busybox\nRUN echo `\nFROM alpine\n"
    assert runtime(content) == "docker.io/library/alpine:latest"


@pytest.mark.parametrize("content, match", [
    ("# escape=x\nFROM alpine\n", "line 1: invalid escape character 'x'"),
    ("# escape=`\n# escape=\\\nFROM alpine\n", "line 2: only one escape parser directive"),
])
def test_bad_directives(content, match):
    fails(content, match)


# ------------------------------------------------------------------ stage references

def test_copy_from_a_stage_defined_later_is_that_stage():
    assert bases("""
        FROM alpine:3.19 AS final
        COPY --from=builder /out /app
        FROM golang:1.22 AS builder
    """, target="final") == {"runtime": "docker.io/library/alpine:3.19",
                             "buildtime": ["docker.io/library/golang:1.22"]}


def test_copy_from_a_later_stage_by_index():
    assert bases("FROM alpine AS a\nCOPY --from=1 /x /y\nFROM golang\n", target="a")[
        "buildtime"] == ["docker.io/library/golang:latest"]


def test_from_sees_only_earlier_stages():
    # BuildKit links a FROM to a stage only when that stage came before it.
    assert runtime("FROM later\nFROM alpine AS later\n", target=None) == \
        "docker.io/library/alpine:latest"
    assert bases("FROM later AS first\nFROM alpine AS later\n", target="first")["runtime"] == \
        "docker.io/library/later:latest"


def test_unreachable_stages_add_no_buildtime_bases():
    content = """
        FROM golang:1.22 AS build
        FROM node:20 AS docs
        COPY --from=python:3.12 / /
        FROM debian:12 AS tools
        FROM alpine:3.19
        COPY --from=build /x /y
    """
    assert bases(content) == {"runtime": "docker.io/library/alpine:3.19",
                              "buildtime": ["docker.io/library/golang:1.22"]}
    assert bases(content, target="docs") == {"runtime": "docker.io/library/node:20",
                                             "buildtime": ["docker.io/library/python:3.12"]}


def test_unresolvable_args_matter_only_in_needed_stages():
    content = """
        FROM alpine AS docs
        COPY --from=$UNDECLARED /x /y
        RUN --mount=from=${NOVALUE},target=/z true
        FROM busybox AS final
    """
    assert bases(content, target="final")["runtime"] == "docker.io/library/busybox:latest"
    message = fails(content, "line 3: COPY --from uses ARG UNDECLARED", target="docs")
    assert message.startswith("Dockerfile line 3:")


def test_duplicate_stage_names_are_legal_and_the_later_one_wins():
    content = """
        FROM golang:1.21 AS build
        FROM golang:1.22 AS build
        FROM alpine:3.19 AS final
        COPY --from=build /x /y
    """
    assert bases(content)["buildtime"] == ["docker.io/library/golang:1.22"]
    assert runtime(content, target="build") == "docker.io/library/golang:1.22"


def test_from_a_duplicated_name_takes_the_latest_before_it():
    content = """
        FROM golang:1.21 AS build
        FROM build AS one
        FROM golang:1.22 AS build
        FROM build AS two
    """
    assert runtime(content, target="one") == "docker.io/library/golang:1.21"
    assert runtime(content, target="two") == "docker.io/library/golang:1.22"


# ------------------------------------------------------------------ ENV

@pytest.mark.parametrize("line", ["ENV NAME", "ENV"])
def test_env_without_value_is_an_error(line):
    fails(f"FROM alpine\n{line}\n", "line 2: ENV")


@pytest.mark.parametrize("line", ["ENV A=1", "ENV A 1 2", 'ENV A="" B=2', "ENV A="])
def test_env_with_values(line):
    assert runtime(f"FROM alpine\n{line}\n") == "docker.io/library/alpine:latest"


def test_env_mixing_forms_is_an_error():
    fails("FROM alpine\nENV A=1 B\n", "line 2: ENV cannot find '=' in 'B'")


# ------------------------------------------------------------------ limits

def test_a_word_past_the_limit_names_the_line_and_the_limit():
    lines = ["ARG A0=" + "x" * 40_000, "ARG A1=$A0$A0", "FROM alpine:$A1"]
    message = fails("\n".join(lines) + "\n", "line 2: ARG A1 expands a word")
    assert f"{MAX_WORD_LENGTH} characters" in message


def test_all_words_past_the_total_limit_names_the_line_and_the_limit():
    count = MAX_EXPANSION_TOTAL // 60_000 + 2
    lines = ["ARG A0=" + "x" * 60_000] + [f"ARG B{i}=$A0" for i in range(count)] + ["FROM alpine"]
    message = fails("\n".join(lines) + "\n", "ARG B")
    assert f"{MAX_EXPANSION_TOTAL} characters in all" in message


def test_deep_nesting_is_refused():
    content = "ARG A\nFROM alpine:" + "${A:-" * 5000 + "x" + "}" * 5000 + "\n"
    fails(content, "nests")


def test_a_dockerfile_past_the_size_limit_is_refused_before_reading(tmp_path):
    huge = tmp_path / "Dockerfile"
    with huge.open("w") as out:
        out.write("FROM alpine\n")
        out.truncate(MAX_DOCKERFILE_BYTES + 1)
    with pytest.raises(DockerfileError, match=f"^{huge}: larger than 8 MiB"):
        analyse_dockerfile_path(huge)
    with pytest.raises(DockerfileError, match="^Dockerfile: larger than 8 MiB"):
        analyse_dockerfile("#" * (MAX_DOCKERFILE_BYTES + 1))
