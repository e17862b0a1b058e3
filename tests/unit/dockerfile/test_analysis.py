"""Dockerfile analysis: the runtime base and build-time bases of real-world Dockerfile shapes."""
from textwrap import dedent

import pytest

from basewatch.errors import BasewatchError, DockerfileError
from basewatch.dockerfile.analysis import (DockerfileBases, analyse_dockerfile,
                                           analyse_dockerfile_path)
from basewatch.oci.reference import ImageReference

SHA = "sha256:" + "0123456789abcdef" * 4


def bases(content, build_args=None, target=None):
    """The analysis as JSON, which is how the rest of basewatch reports it."""
    return analyse_dockerfile(dedent(content), build_args, target).to_json()


def fails(content, match, build_args=None, target=None):
    with pytest.raises(DockerfileError, match=match) as caught:
        analyse_dockerfile(dedent(content), build_args, target)
    assert isinstance(caught.value, BasewatchError)
    assert "\n" not in str(caught.value)
    return str(caught.value)


def test_single_stage():
    result = analyse_dockerfile('FROM node:15-alpine\nWORKDIR /app\nCOPY . .\nCMD ["node"]\n')
    assert result == DockerfileBases(ImageReference.parse("node:15-alpine"), ())
    assert result.to_json() == {"runtime": "docker.io/library/node:15-alpine", "buildtime": []}


def test_multi_stage_node_builder():
    assert bases("""
        FROM node:20 AS build
        WORKDIR /src
        COPY package*.json ./
        RUN npm ci
        COPY . .
        RUN npm run build

        FROM node:20-alpine
        COPY --from=build /src/dist /app
        CMD ["node", "/app/index.js"]
    """) == {"runtime": "docker.io/library/node:20-alpine",
             "buildtime": ["docker.io/library/node:20"]}


def test_go_builder_to_distroless():
    assert bases("""
        FROM golang:1.22 AS build
        RUN CGO_ENABLED=0 go build -o /out/app ./cmd/app
        FROM gcr.io/distroless/static-debian12:nonroot
        COPY --from=build /out/app /app
        ENTRYPOINT ["/app"]
    """) == {"runtime": "gcr.io/distroless/static-debian12:nonroot",
             "buildtime": ["docker.io/library/golang:1.22"]}


def test_dotnet_layout_with_final_stage_from_alias():
    assert bases("""
        FROM mcr.microsoft.com/dotnet/aspnet:8.0 AS base
        WORKDIR /app
        EXPOSE 8080

        FROM mcr.microsoft.com/dotnet/sdk:8.0 AS build
        COPY . /src
        RUN dotnet publish /src/App.csproj -c Release -o /app/publish

        FROM base AS final
        COPY --from=build /app/publish .
        ENTRYPOINT ["dotnet", "App.dll"]
    """) == {"runtime": "mcr.microsoft.com/dotnet/aspnet:8.0",
             "buildtime": ["mcr.microsoft.com/dotnet/sdk:8.0"]}


def test_alias_chain_resolves_to_the_root_image():
    assert bases("""
        FROM python:3.12-slim AS base
        FROM base AS deps
        RUN pip install -r requirements.txt
        FROM deps AS test
        FROM deps
        COPY . /app
    """) == {"runtime": "docker.io/library/python:3.12-slim", "buildtime": []}


@pytest.mark.parametrize("build_args, runtime", [
    (None, "docker.io/library/node:18"),
    ({"BASE": "node:20-alpine"}, "docker.io/library/node:20-alpine"),
    ({"BASE": "127.0.0.1:5000/base/node:1"}, "127.0.0.1:5000/base/node:1"),
])
def test_arg_before_from(build_args, runtime):
    assert bases("ARG BASE=node:18\nFROM $BASE\n", build_args)["runtime"] == runtime
    assert bases("ARG BASE=node:18\nFROM ${BASE}\n", build_args)["runtime"] == runtime


@pytest.mark.parametrize("build_args, runtime", [
    (None, "docker.io/library/alpine:3.19"),
    ({"TAG": "3.20"}, "docker.io/library/alpine:3.20"),
    ({"REG": "127.0.0.1:5000", "TAG": ""}, "127.0.0.1:5000/library/alpine:3.19"),  # `:-` on empty
    ({"UNDECLARED": "x"}, "docker.io/library/alpine:3.19"),  # undeclared build args are ignored
])
def test_arg_defaults_in_from(build_args, runtime):
    content = "ARG REG\nARG TAG\nFROM ${REG:-docker.io}/library/alpine:${TAG:-3.19}\n"
    assert bases(content, build_args)["runtime"] == runtime


@pytest.mark.parametrize("image, build_args, runtime", [
    ("node${V-:16}", None, "docker.io/library/node:16"),
    ("node${V-:16}", {"V": ""}, "docker.io/library/node:latest"),  # `-` keeps an empty value
    ("node${V:-:16}", {"V": ""}, "docker.io/library/node:16"),
    ("node${V:+:${V}}", None, "docker.io/library/node:latest"),
    ("node${V:+:${V}}", {"V": "19"}, "docker.io/library/node:19"),
    ("node:${V+set}", {"V": ""}, "docker.io/library/node:set"),
    ("node:${V:?required}", {"V": "21"}, "docker.io/library/node:21"),
    ("'node':\"${V:-22}\"", None, "docker.io/library/node:22"),
    ("node:${V:-${W:-23}}", None, "docker.io/library/node:23"),
    ("node:${V:-$UNDECLARED}", {"V": "24"}, "docker.io/library/node:24"),  # unused fallback
    ("node:${UNDECLARED:-25}", None, "docker.io/library/node:25"),  # a fallback, as in Docker
])
def test_substitution_forms(image, build_args, runtime):
    assert bases(f"ARG V\nARG W\nFROM {image}\n", build_args)["runtime"] == runtime


def test_arg_default_may_use_an_earlier_arg():
    content = 'ARG VERSION=18\nARG BASE="node:${VERSION}-alpine"\nFROM ${BASE}\n'
    assert bases(content)["runtime"] == "docker.io/library/node:18-alpine"
    assert bases(content, {"VERSION": "20"})["runtime"] == "docker.io/library/node:20-alpine"


def test_multiple_args_on_one_line_and_escaped_dollar():
    assert bases("ARG A=node B=20\nFROM ${A}:${B}\n")["runtime"] == "docker.io/library/node:20"
    fails("ARG A=x\nFROM \\$A\n", "invalid image reference '\\$A'")


@pytest.mark.parametrize("platform_flag", [
    "--platform=$BUILDPLATFORM", "--platform=linux/amd64", "--platform linux/amd64",
    "--platform ${TARGETPLATFORM}",
])
def test_platform_flag_is_ignored(platform_flag):
    assert bases(f"""
        FROM {platform_flag} golang:1.22 AS build
        RUN go build -o /app .
        FROM {platform_flag} alpine:3.19
        COPY --from=build /app /app
    """) == {"runtime": "docker.io/library/alpine:3.19",
             "buildtime": ["docker.io/library/golang:1.22"]}


def test_automatic_platform_args_can_come_as_build_args():
    content = "FROM golang:1.22-${TARGETARCH}\n"
    runtime = bases(content, {"TARGETARCH": "arm64"})["runtime"]
    assert runtime == "docker.io/library/golang:1.22-arm64"


def test_final_stage_from_scratch():
    result = analyse_dockerfile(dedent("""
        FROM golang:1.22 AS builder
        RUN go build -o /app .
        FROM scratch
        COPY --from=builder /app /app
    """))
    assert result.runtime is None
    assert result.to_json() == {"runtime": "scratch",
                                "buildtime": ["docker.io/library/golang:1.22"]}


def test_scratch_is_case_insensitive_and_followed_through_aliases():
    assert bases("FROM Scratch AS empty\nFROM empty\n") == {"runtime": "scratch", "buildtime": []}


def test_target_selects_a_middle_stage():
    content = """
        FROM node:20 AS deps
        FROM deps AS test
        COPY --from=busybox:1.36 /bin/busybox /bin/busybox
        FROM golang:1.22 AS tools
        FROM nginx:1.25 AS runtime
        COPY --from=deps /x /y
    """
    assert bases(content, target="test") == {
        "runtime": "docker.io/library/node:20", "buildtime": ["docker.io/library/busybox:1.36"]}
    # Only the stages a target needs count: BuildKit resolves no other stage's image.
    assert bases(content, target="TOOLS") == {
        "runtime": "docker.io/library/golang:1.22", "buildtime": []}
    assert bases(content) == {
        "runtime": "docker.io/library/nginx:1.25", "buildtime": ["docker.io/library/node:20"]}


def test_lowercase_instructions_and_mixed_case_names():
    assert bases("""
        from node:20 as Build
        run npm ci
        From node:20-slim
        copy --from=BUILD /src /app
    """) == {"runtime": "docker.io/library/node:20-slim",
             "buildtime": ["docker.io/library/node:20"]}


def test_windows_dockerfile_with_backtick_escape():
    assert bases("""\
        # escape=`
        ARG TAG=ltsc2022
        FROM mcr.microsoft.com/dotnet/sdk:8.0-windowsservercore-${TAG} `
            AS build
        RUN powershell -Command `
            $ErrorActionPreference = 'Stop'; `
            dotnet publish C:\\src -o C:\\out
        FROM mcr.microsoft.com/windows/nanoserver:${TAG}
        COPY --from=build C:\\out C:\\app
    """) == {"runtime": "mcr.microsoft.com/windows/nanoserver:ltsc2022",
             "buildtime": ["mcr.microsoft.com/dotnet/sdk:8.0-windowsservercore-ltsc2022"]}


def test_line_continuations_and_comments():
    assert bases("""\
        # syntax=docker/dockerfile:1
        # A comment before the first FROM.
        ARG NODE=20
        FROM \\
            node:${NODE} \\
            # a comment inside a continued instruction is dropped
            AS build
        RUN apt-get update && \\
            apt-get install -y curl
        # FROM ubuntu:22.04 is only a comment
        FROM debian:bookworm-slim
        COPY --from=build /a /b
    """) == {"runtime": "docker.io/library/debian:bookworm-slim",
             "buildtime": ["docker.io/library/node:20"]}


def test_copy_from_image_stage_and_index():
    assert bases("""
        FROM alpine:3.19 AS base
        FROM base AS build
        COPY --from=0 /etc/os-release /a
        COPY --from=base /etc /b
        FROM nginx:1.25-alpine
        COPY --from=nginx:latest /etc/nginx/nginx.conf /x
        COPY --chown=101:101 --from=ghcr.io/org/assets:1 /static /usr/share/nginx/html
        COPY --link --from=base /etc/os-release /os-release
        ADD --chown=1 https://example.com/x /y
        COPY --from=nginx:1.25-alpine /x /y
    """) == {"runtime": "docker.io/library/nginx:1.25-alpine",
             "buildtime": ["docker.io/library/alpine:3.19", "docker.io/library/nginx:latest",
                           "ghcr.io/org/assets:1"]}


def test_copy_from_uses_arg_declared_in_the_stage():
    content = """
        ARG ASSETS=ghcr.io/org/assets:1
        FROM alpine:3.19
        ARG ASSETS
        COPY --from=${ASSETS} /static /static
    """
    assert bases(content)["buildtime"] == ["ghcr.io/org/assets:1"]
    overridden = bases(content, {"ASSETS": "ghcr.io/org/assets:2"})
    assert overridden["buildtime"] == ["ghcr.io/org/assets:2"]
    fails(content.replace("ARG ASSETS\n", ""), "COPY --from uses ARG ASSETS, which is not declared "
                                               "in this stage")


def test_first_stage_index_in_from():
    assert bases("FROM ubuntu:22.04\nFROM 0\n") == {
        "runtime": "docker.io/library/ubuntu:22.04", "buildtime": []}


def test_digests_are_kept():
    content = f"FROM golang@{SHA} AS build\nFROM alpine:3.19@{SHA}\nCOPY --from=build / /\n"
    assert bases(content) == {
        "runtime": f"docker.io/library/alpine:3.19@{SHA}",
        "buildtime": [f"docker.io/library/golang@{SHA}"]}


def test_buildtime_is_unique_sorted_and_excludes_runtime():
    assert bases("""
        FROM node:20 AS a
        FROM node:20 AS b
        FROM alpine AS c
        FROM node:20
        COPY --from=docker.io/library/alpine:latest /x /y
    """) == {"runtime": "docker.io/library/node:20",
             "buildtime": ["docker.io/library/alpine:latest"]}


def test_arg_without_value_is_an_error_naming_it():
    message = fails("# base image\n\nARG BASE\nFROM $BASE\n", "BASE")
    assert message == ("Dockerfile line 4: FROM uses ARG BASE, which has no value; "
                       "pass --build-arg BASE=...")


def test_undeclared_arg_is_an_error():
    message = fails("FROM node:${VERSION}\n", "VERSION")
    assert "not declared before the first FROM" in message
    assert message.startswith("Dockerfile line 1: ")
    fails("FROM node\nARG VERSION=1\nFROM node:${VERSION}\n", "not declared before the first FROM")


def test_arg_default_using_an_unset_arg_is_reported_when_used():
    fails("ARG TAG\nARG BASE=node:$TAG\nFROM $BASE\n", "ARG BASE, whose default uses ARG TAG")
    unused = bases("ARG TAG\nARG BASE=node:$TAG\nFROM node\n")
    assert unused["runtime"] == "docker.io/library/node:latest"


@pytest.mark.parametrize("content, match", [
    ("ARG V\nFROM node:${V:?set_the_node_version}\n", "ARG V, which has no value \\(set_the_node"),
    ("FROM node:${V\n", "bad substitution"),
    ("FROM node:${V:=1}\n", "bad substitution"),
    ("FROM node:${}\n", "bad substitution"),
])
def test_substitution_errors(content, match):
    fails(content, match)


def test_unknown_target_lists_stages():
    message = fails("FROM node:20 AS build\nFROM node:20-slim AS final\n", "no build stage named",
                    target="tests")
    assert message == "Dockerfile: no build stage named 'tests'; stages: build, final"


@pytest.mark.parametrize("content", ["", "\n\n", "# just a comment\n", "ARG X=1\n"])
def test_no_from_is_an_error(content):
    assert fails(content, "has no FROM") == "Dockerfile: Dockerfile has no FROM instruction"


@pytest.mark.parametrize("content, match", [
    ("FROM Node:18\n", "line 1: invalid image reference 'Node:18': repository name must be lowerc"),
    ("FROM node:\n", "line 1: invalid image reference 'node:'"),
    ("ARG B=node@sha256:12\nFROM $B\n",
     "not a valid digest.*\\(FROM '\\$B' expanded to 'node@sha256:12'\\)$"),
    ("FROM alpine\nCOPY --from=Bad/Image /a /b\n", "line 2: .*must be lowercase"),
    ("FROM\n", "line 1: FROM must be"),
    ("FROM node AS\n", "FROM must be"),
    ("FROM node foo bar\n", "FROM must be"),
    ("FROM --squash node\n", "unknown flag '--squash'"),
    ("FROM node AS 1st\n", "stage name '1st' must start with a letter"),
    ("RUN echo hi\nFROM node\n", "line 1: RUN comes before the first FROM"),
    ("ARG 1X=2\nFROM node\n", "ARG '1X' is not a valid argument name"),
    ("FROM node AS a\nCOPY --from=1 /a /b\nFROM a\n", "line 3: circular dependency: this makes "
                                                       "stage a need itself"),
    ("FROM node AS a\nCOPY --from=A /a /b\n", "line 2: circular dependency: this makes stage a"),
    ("FROM node AS a\nCOPY --from=2 /a /b\nFROM a\n", "line 2: COPY --from=2 names no stage: "
                                                       "the Dockerfile has 2"),
])
def test_bad_dockerfiles(content, match):
    fails(content, match)


def test_source_prefixes_messages():
    with pytest.raises(DockerfileError, match=r"^apps/web/Dockerfile line 1: "):
        analyse_dockerfile("FROM $X\n", source="apps/web/Dockerfile")


def test_analyse_path(tmp_path):
    dockerfile = tmp_path / "Dockerfile.prod"
    dockerfile.write_bytes(b"\xef\xbb\xbfARG BASE=node:18\nFROM ${BASE} AS app\nFROM app\n")
    assert analyse_dockerfile_path(dockerfile).to_json() == {
        "runtime": "docker.io/library/node:18", "buildtime": []}
    assert analyse_dockerfile_path(str(dockerfile), {"BASE": "node:20"}, "app").runtime == \
        ImageReference.parse("node:20")
    with pytest.raises(DockerfileError, match=rf"^{dockerfile} line 2: FROM uses ARG BASE"):
        dockerfile.write_text("ARG BASE\nFROM ${BASE}\n")
        analyse_dockerfile_path(dockerfile)


def test_analyse_path_errors(tmp_path):
    missing = tmp_path / "nope" / "Dockerfile"
    with pytest.raises(DockerfileError, match="^.*nope/Dockerfile: no such Dockerfile$"):
        analyse_dockerfile_path(missing)
    with pytest.raises(DockerfileError, match="is a directory"):
        analyse_dockerfile_path(tmp_path)
    binary = tmp_path / "Dockerfile"
    binary.write_bytes(b"FROM node\n\xff\xfe\n")
    with pytest.raises(DockerfileError, match="must be UTF-8"):
        analyse_dockerfile_path(binary)
