"""A `build:` step's docker build arguments read into a BuildStep's fields, as the docker CLI
reads them: `-t/--tag`, `-f/--file` (relative to the working directory, like the CLI's current
directory), `--build-arg`, `--target`, `--platform`, `--no-cache`, `--pull`, and one context,
a folder in the working directory."""
from __future__ import annotations

import posixpath
import shlex
from dataclasses import dataclass, field

from basewatch.errors import ImageReferenceError
from basewatch.oci.reference import ImageReference

_WITH_VALUE = {"-t": "tag", "--tag": "tag", "-f": "file", "--file": "file",
               "--build-arg": "build_arg", "--target": "target", "--platform": "platform",
               "--cache-from": "cache_from"}
# Accepted and needing nothing: the backend pulls every base before it builds, and a cache
# source is only an optimisation.
_SWITCHES = {"--no-cache": "no_cache", "--pull": "pull", "--rm": "rm", "--force-rm": "rm"}
_REFUSED = {
    "--secret": "build secrets need BuildKit, which the engine here does not run",
    "--ssh": "SSH forwarding needs BuildKit, which the engine here does not run",
    "--network": "build steps run on the config's build_network",
    "--isolation": "isolation other than the engine's default is not supported",
    "--output": "a build step's image stays in the engine, to be pushed by a push step",
    "-o": "a build step's image stays in the engine, to be pushed by a push step",
}


class BuildArgsError(Exception):
    pass


@dataclass
class BuildArgs:
    tags: list[str] = field(default_factory=list)
    dockerfile: str = "Dockerfile"  # relative to the context
    build_args: dict[str, str] = field(default_factory=dict)
    target: str | None = None
    platform: str | None = None
    no_cache: bool = False
    context: str = "."  # relative to the workspace


def parse_build(text: str, working_directory: str, workspace: str) -> BuildArgs:
    """`text` read as `docker build` reads it, in `working_directory` (absolute, inside
    `workspace`). Raises BuildArgsError."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise BuildArgsError(f"cannot split the build arguments: {exc}") from None
    found: dict[str, list[str]] = {}
    switches: set[str] = set()
    positional: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        index += 1
        if word == "--" or not word.startswith("-") or word == "-":
            positional.append(word)
            continue
        name, equals, value = word.partition("=")
        if name in _SWITCHES and not equals:
            switches.add(_SWITCHES[name])
            continue
        if name in _REFUSED:
            raise BuildArgsError(f"`{name}` is not supported: {_REFUSED[name]}")
        if name not in _WITH_VALUE:
            if name.startswith("-t") and len(name) > 2 and not name.startswith("--"):
                name, value, equals = "-t", word[2:], "="
            elif name.startswith("-f") and len(name) > 2 and not name.startswith("--"):
                name, value, equals = "-f", word[2:], "="
            else:
                known = ", ".join(sorted({*_WITH_VALUE, *_SWITCHES}))
                raise BuildArgsError(f"unknown build flag `{name}` (known: {known})")
        if not equals:
            if index >= len(words):
                raise BuildArgsError(f"`{name}` needs a value")
            value = words[index]
            index += 1
        found.setdefault(_WITH_VALUE[name], []).append(value)
    if len(positional) != 1 or positional[0] == "--":
        shown = " ".join(positional) or "none"
        raise BuildArgsError("a build step takes exactly one context (a folder in the working "
                             f"directory, such as .); found: {shown}")
    for key in ("file", "target", "platform"):
        if len(found.get(key, [])) > 1:
            raise BuildArgsError(f"`--{key}` is given more than once")
    result = BuildArgs(no_cache="no_cache" in switches)
    for tag in found.get("tag", []):
        try:
            ImageReference.parse(tag)
        except ImageReferenceError as exc:
            hint = " ($ aliases are expanded in files of `version: v1.1.0` only)" \
                if "$" in tag else ""
            raise BuildArgsError(f"tag {tag!r}: {exc}{hint}") from None
        result.tags.append(tag)
    for pair in found.get("build_arg", []):
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise BuildArgsError(f"--build-arg {pair!r}: expected NAME=VALUE (a value taken "
                                 "from the environment is not supported)")
        result.build_args[key] = value
    result.target = (found.get("target") or [None])[0]
    result.platform = (found.get("platform") or [None])[0]
    result.context = _inside(positional[0], working_directory, workspace, "the context")
    context_path = posixpath.join(workspace, result.context)
    dockerfile = (found.get("file") or [None])[0]
    if dockerfile is not None:
        if dockerfile == "-":
            raise BuildArgsError("a Dockerfile from standard input (-f -) is not supported")
        path = posixpath.join(workspace, _inside(dockerfile, working_directory, workspace,
                                                 "the Dockerfile"))
        relative = posixpath.relpath(path, context_path)
        if relative == ".." or relative.startswith("../"):
            raise BuildArgsError(f"the Dockerfile {dockerfile!r} must be inside the context "
                                 f"{positional[0]!r}")
        result.dockerfile = relative
    return result


def _inside(path: str, working_directory: str, workspace: str, what: str) -> str:
    """`path` (as written, relative to `working_directory`) relative to `workspace`."""
    if "://" in path or path.startswith("git@"):
        raise BuildArgsError(f"{what} {path!r}: a build step builds from the working "
                             "directory, not from a URL: make it the run's context instead")
    full = posixpath.normpath(posixpath.join(working_directory, path))
    relative = posixpath.relpath(full, workspace)
    if relative == ".." or relative.startswith("../"):
        raise BuildArgsError(f"{what} {path!r} is outside the working directory {workspace}")
    return relative
