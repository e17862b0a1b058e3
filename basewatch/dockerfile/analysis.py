"""Which base images a Dockerfile is built on: the runtime base and the build-time ones, read
as BuildKit reads them (frontend/dockerfile/dockerfile2llb/convert.go)."""
from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from basewatch.dockerfile.instructions import Instruction, extract_flags, parse_dockerfile
from basewatch.dockerfile.words import (ARG_NAME, ArgScope, ExpansionBudget, ExpansionError,
                                        ExpansionLimit, expand, split_words)
from basewatch.errors import DockerfileError, ImageReferenceError
from basewatch.oci.platforms import Platform, native_platform
from basewatch.oci.reference import ImageReference
from basewatch.textfiles import read_text_file

# Real Dockerfiles are kilobytes; past this one is refused before it is read.
MAX_DOCKERFILE_BYTES = 8 * 1024 * 1024
_STAGE_NAME = re.compile(r"[a-z][a-z0-9_.-]*")
_TOO_LARGE = (f"larger than {MAX_DOCKERFILE_BYTES // (1024 * 1024)} MiB, "
              "the most a Dockerfile may hold")
_STAGE_SCOPE = "in this stage (ARGs from before FROM must be repeated)"
# Mount types whose `from=` BuildKit resolves as an image or stage (tmpfs has no source, and
# secret and ssh mounts take none).
_MOUNTS_FROM = ("bind", "cache")


@dataclass(frozen=True)
class DockerfileBases:
    """The image a Dockerfile's result runs on, and the images only its build uses."""

    runtime: ImageReference | None  # None: the final stage is rooted at `scratch`
    buildtime: tuple[ImageReference, ...]  # sorted by str, unique, never containing runtime

    @property
    def images(self) -> list[ImageReference]:
        """Every image the build pulls: the runtime base first, then the build-time ones."""
        return [ref for ref in (self.runtime, *self.buildtime) if ref is not None]

    def to_json(self) -> dict:
        """A JSON-ready form, with `scratch` spelled out for a rootless runtime."""
        return {"runtime": str(self.runtime) if self.runtime else "scratch",
                "buildtime": [str(ref) for ref in self.buildtime]}


def automatic_args(platform: Platform, build_platform: Platform) -> dict[str, str]:
    """The ARGs BuildKit defines before the first FROM: the target and the build platform."""
    values = {}
    for prefix, each in (("TARGET", platform), ("BUILD", build_platform)):
        values.update({f"{prefix}PLATFORM": str(each), f"{prefix}OS": each.os,
                       f"{prefix}ARCH": each.architecture, f"{prefix}VARIANT": each.variant or ""})
    return values


def read_dockerfile_text(path: Path, shown: str | None = None) -> str:
    """The Dockerfile at `path`, refused unread past MAX_DOCKERFILE_BYTES (a hostile context's
    file may be any size); errors name it `shown`, by default its path."""
    name = shown or str(path)
    try:
        too_large = path.is_file() and path.stat().st_size > MAX_DOCKERFILE_BYTES
    except OSError:
        too_large = False  # reading it says what is wrong
    if too_large:
        raise DockerfileError(f"{name}: {_TOO_LARGE}")
    return read_text_file(path, "Dockerfile", DockerfileError, encoding="utf-8-sig", shown=name)


def analyse_dockerfile_path(path: Path | str, build_args: Mapping[str, str] | None = None,
                            target: str | None = None, platform: Platform | str | None = None,
                            build_platform: Platform | str | None = None) -> DockerfileBases:
    """Read the Dockerfile at `path` and analyse it."""
    path = Path(path)
    content = read_dockerfile_text(path)
    return analyse_dockerfile(content, build_args, target, source=str(path), platform=platform,
                              build_platform=build_platform)


def analyse_for_platforms(content: str, build_args: Mapping[str, str] | None,
                          target: str | None, source: str,
                          platforms: Iterable[Platform | str]) -> dict[str, DockerfileBases]:
    """Each platform analysed on its own, by name: TARGETARCH and its kin may make the same
    Dockerfile name other bases on other platforms."""
    return {str(platform): analyse_dockerfile(content, build_args, target, source, platform)
            for platform in platforms}


def analyse_dockerfile(content: str, build_args: Mapping[str, str] | None = None,
                       target: str | None = None, source: str = "Dockerfile",
                       platform: Platform | str | None = None,
                       build_platform: Platform | str | None = None) -> DockerfileBases:
    """Find the runtime base of `target` (default: the last stage) and the build-time bases of
    the stages it needs, for one target `platform` (default: the build platform, which defaults
    to this machine's, as BuildKit's do)."""
    if len(content) > MAX_DOCKERFILE_BYTES:
        raise DockerfileError(f"{source}: {_TOO_LARGE}")
    build_platform = _platform(build_platform) if build_platform else native_platform()
    platform = _platform(platform) if platform else build_platform
    analysis = _Analysis(content, dict(build_args or {}), source,
                         automatic_args(platform, build_platform))
    stages = analysis.stages()
    chosen = _target_index(stages, target, source)
    needed = _reachable(stages, chosen)
    unresolved = sorted((error for index in needed for error in stages[index].unresolved),
                        key=lambda error: error[0])
    if unresolved:
        raise unresolved[0][1]
    runtime = _root_image(stages, chosen)
    images = {_root_image(stages, index) for index in needed}
    images.update(ref for index in needed for ref in stages[index].images)
    images -= {None, runtime}
    return DockerfileBases(runtime, tuple(sorted(images, key=str)))


@dataclass
class _Stage:
    index: int
    name: str | None
    line: int
    base: ImageReference | int | None  # an image, an earlier stage's index, or None for scratch
    images: list[ImageReference] = field(default_factory=list)  # COPY --from, RUN --mount from
    uses: list[tuple[int, int]] = field(default_factory=list)  # the stages those name, lines
    # (line, error) of a COPY --from or mount whose ARGs have no value: an error only if the
    # target needs this stage, as BuildKit expands them only for the stages it builds.
    unresolved: list[tuple[int, DockerfileError]] = field(default_factory=list)


@dataclass
class _Source:
    """A COPY --from or RUN --mount from=, resolved once every stage is known."""

    stage: _Stage
    text: str  # expanded
    raw: str
    line: int
    instruction: str
    by_index: bool  # COPY --from=1 names the second stage; a mount's from= takes names only


class _Analysis:
    """One pass over the instructions, resolving ARGs in FROM, COPY --from and RUN --mount as
    BuildKit does; stage references are resolved once all stages are known."""

    def __init__(self, content: str, build_args: dict[str, str], source: str,
                 automatic: dict[str, str]):
        self.content, self.build_args, self.source = content, build_args, source
        self.budget = ExpansionBudget()
        self.escape = "\\"
        self.line = 0
        # BuildKit defines these in the global scope without an ARG line; build args win.
        self.meta = ArgScope({name: build_args.get(name, value)
                              for name, value in automatic.items()}, "before the first FROM")

    def stages(self) -> list[_Stage]:
        """The stages in order, each with its base and the images and stages it uses."""
        parsed = parse_dockerfile(self.content, self.source)
        self.escape = parsed.escape
        if not any(i.command == "from" for i in parsed.instructions):
            raise DockerfileError(f"{self.source}: Dockerfile has no FROM instruction")
        stages: list[_Stage] = []
        sources: list[_Source] = []
        scopes: list[ArgScope] = []
        scope = self.meta
        for instruction in parsed.instructions:
            command, rest = instruction.command, instruction.rest
            self.line = instruction.line
            if command == "from":
                stages.append(self._from(rest, stages))
                # A stage built on another starts with the ARGs that one declared, as in BuildKit.
                base = stages[-1].base
                inherited = dict(scopes[base].values) if isinstance(base, int) else {}
                scope = ArgScope(inherited, _STAGE_SCOPE)
                scopes.append(scope)
            elif command == "arg":
                self._declare(rest, scope)
            elif not stages:
                raise self._error(f"{command.upper()} comes before the first FROM; only ARG may")
            elif command == "copy":
                sources.extend(self._copy(instruction, stages[-1], scope))
            elif command == "run":
                sources.extend(self._mounts(instruction, stages[-1], scope))
            elif command == "env":
                self._env(rest)
        for used in sources:
            self._resolve(used, stages)
        self._check_acyclic(stages)
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
        if name is not None and not _STAGE_NAME.fullmatch(name):
            raise self._error(f"stage name {name!r} must start with a letter and hold only "
                              "letters, digits, '-', '_' and '.'")
        image = self._expand(words[0], self.meta, "FROM")
        # A FROM sees only the stages before it; of two with one name, the later one.
        base = self._stage_index(image, stages, by_index=True)
        if base is None and image.lower() != "scratch":
            base = self._reference(image, words[0], "FROM")
        return _Stage(len(stages), name, self.line, base)

    def _copy(self, instruction: Instruction, stage: _Stage, scope: ArgScope) -> list[_Source]:
        flags, _ = extract_flags(instruction.rest)
        found = []
        for flag in flags:
            if flag.lower().startswith("--from="):
                raw = flag.split("=", 1)[1]
                text = self._expand_later(raw, scope, "COPY --from", stage)
                if text is not None:
                    found.append(_Source(stage, text, raw, self.line, "COPY --from", True))
        return found

    def _mounts(self, instruction: Instruction, stage: _Stage, scope: ArgScope) -> list[_Source]:
        flags, _ = extract_flags(instruction.rest)
        found = []
        for flag in flags:
            if not flag.lower().startswith("--mount="):
                continue
            fields = self._mount_fields(flag.split("=", 1)[1])
            raw = fields.get("from", "")
            if fields.get("type", "bind").lower() in _MOUNTS_FROM and raw:
                text = self._expand_later(raw, scope, "RUN --mount from", stage)
                if text is not None:
                    found.append(_Source(stage, text, raw, self.line, "RUN --mount from", False))
        return found

    def _mount_fields(self, value: str) -> dict[str, str]:
        """A --mount value's key=value fields: one CSV record, as BuildKit reads it."""
        try:
            record = next(csv.reader([value]), [])
        except csv.Error as exc:
            raise self._error(f"RUN --mount={value!r} is not one CSV record: {exc}") from None
        fields = {}
        for item in record:
            key, _, found = item.partition("=")
            fields[key.strip().lower()] = found
        return fields

    def _env(self, value: str) -> None:
        """ENV's syntax checked as BuildKit checks it: `ENV NAME` alone sets nothing."""
        words = split_words(value, self.escape)
        if not words:
            raise self._error("ENV needs a NAME=VALUE (or NAME VALUE)")
        if "=" not in words[0]:
            if len(words) < 2:
                raise self._error(f"ENV {words[0]} has no value; write ENV {words[0]}=VALUE "
                                  "(ENV cannot unset a variable)")
            return
        for word in words:
            if "=" not in word:
                raise self._error(f"ENV cannot find '=' in {word!r}; write NAME=VALUE")

    def _resolve(self, used: _Source, stages: list[_Stage]) -> None:
        self.line = used.line
        index = self._stage_index(used.text, stages, by_index=used.by_index)
        if index is None and used.by_index and used.text.isdigit():
            raise self._error(f"{used.instruction}={used.text} names no stage: the Dockerfile "
                              f"has {len(stages)}")
        if index is not None:
            used.stage.uses.append((index, used.line))
        elif used.text.lower() != "scratch":
            used.stage.images.append(self._reference(used.text, used.raw, used.instruction))

    def _check_acyclic(self, stages: list[_Stage]) -> None:
        """BuildKit refuses a stage that needs itself, through COPY --from or mounts."""
        found = _cycle(stages)
        if found is not None:
            stage, self.line = found
            name = stage.name or f"stage {stage.index}"
            raise self._error(f"circular dependency: this makes stage {name} need itself")

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
                    scope.values[name] = expand(default, scope, self.escape, self.budget)
                except ExpansionLimit as exc:
                    raise self._error(f"ARG {name} {exc}") from None
                except ExpansionError as exc:
                    # Only an error if a FROM or COPY uses it, so keep it until then.
                    scope.values[name] = ExpansionError(f"uses ARG {name}, whose default {exc}")
            elif scope is not self.meta:
                # Inside a stage, a bare ARG brings in the value declared before the first FROM.
                scope.values[name] = self.meta.values.get(name)
            else:
                scope.values[name] = None

    @staticmethod
    def _stage_index(text: str, stages: list[_Stage], by_index: bool) -> int | None:
        """The stage `text` names among `stages`; of two with one name, the later one wins."""
        if text.isdigit():
            return int(text) if by_index and int(text) < len(stages) else None
        named = [s.index for s in stages if s.name == text.lower()]
        return named[-1] if named else None

    def _expand(self, word: str, scope: ArgScope, instruction: str) -> str:
        try:
            return expand(word, scope, self.escape, self.budget)
        except ExpansionError as exc:
            raise self._error(f"{instruction} {exc}") from None

    def _expand_later(self, word: str, scope: ArgScope, instruction: str,
                      stage: _Stage) -> str | None:
        try:
            return expand(word, scope, self.escape, self.budget)
        except ExpansionLimit as exc:
            raise self._error(f"{instruction} {exc}") from None
        except ExpansionError as exc:
            stage.unresolved.append((self.line, self._error(f"{instruction} {exc}")))
            return None

    def _reference(self, text: str, raw: str, instruction: str) -> ImageReference:
        try:
            return ImageReference.parse(text)
        except ImageReferenceError as exc:
            origin = f" ({instruction} {raw!r} expanded to {text!r})" if raw != text else ""
            raise self._error(f"{exc}{origin}") from None

    def _error(self, message: str) -> DockerfileError:
        return DockerfileError(f"{self.source} line {self.line}: {message}")


def _needs(stage: _Stage) -> list[tuple[int, int]]:
    """The stages `stage` is built from, each with the line that says so."""
    return stage.uses + ([(stage.base, stage.line)] if isinstance(stage.base, int) else [])


def _cycle(stages: list[_Stage]) -> tuple[_Stage, int] | None:
    """A stage on a dependency cycle and the line closing it (an iterative depth-first
    search)."""
    visiting, done = set(), set()
    for first in stages:
        if first.index in done:
            continue
        visiting.add(first.index)
        stack = [(first.index, iter(_needs(first)))]
        while stack:
            index, following = stack[-1]
            step, line = next(following, (None, 0))
            if step is None:
                visiting.discard(index)
                done.add(index)
                stack.pop()
            elif step in visiting:
                return stages[step], line
            elif step not in done:
                visiting.add(step)
                stack.append((step, iter(_needs(stages[step]))))
    return None


def _reachable(stages: list[_Stage], target: int) -> set[int]:
    """The stages the target is built from: BuildKit resolves images only for these."""
    seen, pending = set(), [target]
    while pending:
        index = pending.pop()
        if index not in seen:
            seen.add(index)
            pending.extend(used for used, _ in _needs(stages[index]))
    return seen


def _target_index(stages: list[_Stage], target: str | None, source: str) -> int:
    if target is None:
        return len(stages) - 1
    # Of two stages with one name, BuildKit builds the later one.
    for stage in reversed(stages):
        if stage.name == target.lower():
            return stage.index
    names = ", ".join(dict.fromkeys(s.name for s in stages if s.name)) or "none are named"
    raise DockerfileError(f"{source}: no build stage named {target!r}; stages: {names}")


def _root_image(stages: list[_Stage], index: int) -> ImageReference | None:
    """Follow `FROM <stage>` links back to the external image (or scratch) they start from."""
    base = stages[index].base
    while isinstance(base, int):
        base = stages[base].base
    return base


def _platform(value: Platform | str) -> Platform:
    if isinstance(value, Platform):
        return value
    try:
        return Platform.parse(value)
    except ValueError as exc:
        raise DockerfileError(str(exc)) from None
