"""Which base images a Dockerfile is built on: the runtime base and the build-time ones."""
from __future__ import annotations

import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dockerfile_parse import DockerfileParser

from basewatch.errors import DockerfileError, ImageReferenceError
from basewatch.textfiles import read_text_file
from basewatch.watcher.dockerfile_words import (ARG_NAME, ArgScope, ExpansionError, WordExpander,
                                                 split_words)
from basewatch.watcher.reference import ImageReference

# The same directive rules dockerfile-parse tokenises with, so both agree on the escape character.
_ESCAPE_DIRECTIVE = re.compile(r"\s*#\s*escape\s*=\s*(\\|`)\s*$", re.I)
_SYNTAX_DIRECTIVE = re.compile(r"\s*#\s*syntax\s*=.*$", re.I)
_STAGE_NAME = re.compile(r"[a-z][a-z0-9_.-]*")
# BuildKit defines these in the global scope without an ARG line; they can still come as build args.
_AUTOMATIC_ARGS = ("BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT",
                   "TARGETPLATFORM", "TARGETOS", "TARGETARCH", "TARGETVARIANT")


@dataclass(frozen=True)
class DockerfileBases:
    """The image a Dockerfile's result runs on, and the images only its build uses."""

    runtime: ImageReference | None  # None: the final stage is rooted at `scratch`
    buildtime: tuple[ImageReference, ...]  # sorted by str, unique, never containing runtime

    def to_json(self) -> dict:
        """A JSON-ready form, with `scratch` spelled out for a rootless runtime."""
        return {"runtime": str(self.runtime) if self.runtime else "scratch",
                "buildtime": [str(ref) for ref in self.buildtime]}


def analyse_dockerfile_path(path: Path | str, build_args: Mapping[str, str] | None = None,
                            target: str | None = None) -> DockerfileBases:
    """Read the Dockerfile at `path` and analyse it."""
    path = Path(path)
    content = read_text_file(path, "Dockerfile", DockerfileError, encoding="utf-8-sig")
    return analyse_dockerfile(content, build_args, target, source=str(path))


def analyse_dockerfile(content: str, build_args: Mapping[str, str] | None = None,
                       target: str | None = None, source: str = "Dockerfile") -> DockerfileBases:
    """Find the runtime base of `target` (default: the last stage) and the build-time bases."""
    stages = _Analysis(content.lstrip("\ufeff"), dict(build_args or {}), source).stages()
    chosen = _target_index(stages, target, source)
    runtime = _root_image(stages, chosen)
    built = stages[:chosen + 1]  # the stages after the target are not built
    images = {_root_image(stages, stage.index) for stage in built if stage.index != chosen}
    images.update(ref for stage in built for ref in stage.copied_images)
    images -= {None, runtime}
    return DockerfileBases(runtime, tuple(sorted(images, key=str)))


@dataclass
class _Stage:
    index: int
    name: str | None
    base: ImageReference | int | None  # an image, an earlier stage's index, or None for scratch
    copied_images: list[ImageReference] = field(default_factory=list)


class _Analysis:
    """One pass over the instructions, resolving ARGs in FROM and COPY --from as Docker does."""

    def __init__(self, content: str, build_args: dict[str, str], source: str):
        self.content, self.build_args, self.source = content, build_args, source
        self.escape = _escape_character(content)
        self.line = 0
        self.meta = ArgScope({name: build_args.get(name) for name in _AUTOMATIC_ARGS},
                           "before the first FROM")

    def stages(self) -> list[_Stage]:
        """The stages in order, each with its base and the images it copies from."""
        parser = DockerfileParser(fileobj=io.BytesIO(self.content.encode("utf-8")))
        instructions = [i for i in parser.structure if i["instruction"] != "COMMENT"]
        if not any(i["instruction"] == "FROM" for i in instructions):
            raise DockerfileError(f"{self.source}: Dockerfile has no FROM instruction")
        stages: list[_Stage] = []
        scope = self.meta
        for instruction in instructions:
            keyword, value = instruction["instruction"], instruction["value"]
            self.line = instruction["startline"] + 1
            if keyword == "FROM":
                stages.append(self._from(value, stages))
                scope = ArgScope({}, "in this stage (ARGs from before FROM must be repeated)")
            elif keyword == "ARG":
                self._declare(value, scope)
            elif not stages:
                raise self._error(f"{keyword} comes before the first FROM; only ARG may")
            elif keyword == "COPY":
                self._copy(value, stages, scope)
        return stages

    def _from(self, value: str, stages: list[_Stage]) -> _Stage:
        words = split_words(value, self.escape)
        while words and words[0].startswith("--"):
            flag = words.pop(0)
            # Only --platform is valid, and it never changes which image is the base.
            if flag.split("=", 1)[0].lower() != "--platform":
                raise self._error(f"FROM has an unknown flag {flag!r}; only --platform is allowed")
            if "=" not in flag and words:
                words.pop(0)  # the space-separated form: --platform linux/amd64
        if len(words) not in (1, 3) or (len(words) == 3 and words[1].lower() != "as"):
            raise self._error("FROM must be 'FROM [--platform=...] IMAGE [AS NAME]'")
        name = words[2].lower() if len(words) == 3 else None
        if name is not None:
            if not _STAGE_NAME.fullmatch(name):
                raise self._error(f"stage name {name!r} must start with a letter and hold only "
                                  "letters, digits, '-', '_' and '.'")
            if any(stage.name == name for stage in stages):
                raise self._error(f"stage name {name!r} is already used by an earlier stage")
        image = self._expand(words[0], self.meta, "FROM")
        base = self._stage_index(image, stages)
        if base is None and image.lower() != "scratch":
            base = self._reference(image, words[0], "FROM")
        return _Stage(len(stages), name, base)

    def _copy(self, value: str, stages: list[_Stage], scope: ArgScope) -> None:
        for word in split_words(value, self.escape):
            if not word.startswith("--"):
                return  # flags come before the sources
            if word.lower().startswith("--from="):
                raw = word.split("=", 1)[1]
                source = self._expand(raw, scope, "COPY --from")
                if (source.isdigit() and int(source) >= len(stages) - 1) or \
                        source.lower() == stages[-1].name:
                    raise self._error(f"COPY --from={source} does not name an earlier stage")
                if self._stage_index(source, stages[:-1]) is None and source.lower() != "scratch":
                    stages[-1].copied_images.append(self._reference(source, raw, "COPY --from"))

    def _declare(self, value: str, scope: ArgScope) -> None:
        """Add the ARGs of one ARG instruction to `scope`, with build args taking precedence."""
        for word in split_words(value, self.escape):
            name, has_default, default = word.partition("=")
            if not ARG_NAME.fullmatch(name):
                raise self._error(f"ARG {name!r} is not a valid argument name")
            if name in self.build_args:
                scope.values[name] = self.build_args[name]
            elif has_default:
                try:
                    scope.values[name] = WordExpander(default, scope, self.escape).word()
                except ExpansionError as exc:
                    # Only an error if a FROM or COPY uses it, so keep it until then.
                    scope.values[name] = ExpansionError(f"uses ARG {name}, whose default {exc}")
            elif scope is not self.meta:
                # Inside a stage, a bare ARG brings in the value declared before the first FROM.
                scope.values[name] = self.meta.values.get(name)
            else:
                scope.values[name] = None

    @staticmethod
    def _stage_index(text: str, stages: list[_Stage]) -> int | None:
        if text.isdigit():
            return int(text) if int(text) < len(stages) else None
        return next((s.index for s in stages if s.name == text.lower()), None)

    def _expand(self, word: str, scope: ArgScope, instruction: str) -> str:
        try:
            return WordExpander(word, scope, self.escape).word()
        except ExpansionError as exc:
            raise self._error(f"{instruction} {exc}") from None

    def _reference(self, text: str, raw: str, instruction: str) -> ImageReference:
        try:
            return ImageReference.parse(text)
        except ImageReferenceError as exc:
            origin = f" ({instruction} {raw!r} expanded to {text!r})" if raw != text else ""
            raise self._error(f"{exc}{origin}") from None

    def _error(self, message: str) -> DockerfileError:
        return DockerfileError(f"{self.source} line {self.line}: {message}")


def _target_index(stages: list[_Stage], target: str | None, source: str) -> int:
    if target is None:
        return len(stages) - 1
    for stage in stages:
        if stage.name == target.lower():
            return stage.index
    names = ", ".join(stage.name for stage in stages if stage.name) or "none are named"
    raise DockerfileError(f"{source}: no build stage named {target!r}; stages: {names}")


def _root_image(stages: list[_Stage], index: int) -> ImageReference | None:
    """Follow `FROM <stage>` links back to the external image (or scratch) they start from."""
    base = stages[index].base
    while isinstance(base, int):
        base = stages[base].base
    return base


def _escape_character(content: str) -> str:
    for line in content.splitlines():
        if match := _ESCAPE_DIRECTIVE.match(line):
            return match[1]
        if not _SYNTAX_DIRECTIVE.match(line):
            break
    return "\\"
