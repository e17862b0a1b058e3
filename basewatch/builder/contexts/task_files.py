"""A task file's run plan: the file read from the run's context (or a quick run's own text),
rendered with the run's variables, values and secrets and the config's image aliases, and each
build step given the bases its Dockerfile names. Also what registration reads of a task file:
the bases of every build step's Dockerfile, whatever a run's variables will be."""
from __future__ import annotations

import posixpath
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from basewatch.builder.contexts.checkout import read_dockerfile
from basewatch.context_spec import ContextError, checked_dockerfile_name
from basewatch.dockerfile.analysis import DockerfileBases, analyse_for_platforms
from basewatch.errors import BasewatchError, ImageReferenceError, TaskFileError
from basewatch.oci.platforms import Platform
from basewatch.oci.reference import ImageReference
from basewatch.run_plan import BuildStep, TaskStep, Workspace
from basewatch.taskfile import load_task_file
from basewatch.templating import RunVariables
from basewatch.textfiles import read_text_file

# Registration renders a task file without a run: run variables and values that only a run
# has are stood in for by these, so `-t app:{{.Run.ID}}` still reads as a tag. A base named
# through one of them (`FROM $TOOLS`, given `--build-arg TOOLS={{.Values.tools}}`) is only
# known to a run: not watched.
_UNKNOWN = "basewatch-unknown-until-run"
PLACEHOLDER_VARIABLES = RunVariables(id=_UNKNOWN, date=datetime(2000, 1, 1,
                                                                tzinfo=timezone.utc),
                                     commit="0" * 40, branch=_UNKNOWN)
# In a pushed tag, what a run changes: the stand-ins for its id, values, branch, commit, date.
_PER_RUN_MARKS = (_UNKNOWN, PLACEHOLDER_VARIABLES.commit,
                  PLACEHOLDER_VARIABLES.as_dict()["Date"])


class _AnyValue(Mapping):
    """A value for every name a template asks for, nested too (`{{.Values.image.tag}}`):
    registration has no run's values, and reads only which Dockerfiles the steps build."""

    def __getitem__(self, key: object) -> "_AnyValue":
        return self

    def __contains__(self, key: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0

    def __str__(self) -> str:
        return _UNKNOWN


def read_task_file(context: Path, file: str) -> str:
    """The text of the task file `file` in `context`: refused unless it resolves inside it,
    as a Dockerfile is; named as the task names it."""
    try:
        name = checked_dockerfile_name(file)
    except ContextError as exc:
        raise TaskFileError(str(exc).replace("Dockerfile", "task file")) from None
    root = context.resolve()
    path = (context / name).resolve()
    if not path.is_relative_to(root):
        raise TaskFileError(f"the task file {file!r} leads outside the context "
                            "(a symbolic link)")
    if not path.is_file():
        raise TaskFileError(f"no such task file {file!r} in the context")
    return read_text_file(path, "task file", TaskFileError, shown=file)


def alias_file_reader(context: Path):
    """What the loader calls for an `alias: src:` file: its text, inside the context only."""

    def read(file: str) -> str:
        return read_task_file(context, file)

    return read


@dataclass(frozen=True)
class TaskFileInputs:
    """What a run gives its task file: variables, values, secrets, the config's aliases."""

    variables: RunVariables
    values: Mapping[str, object]
    secrets: Mapping[str, str]
    image_aliases: Mapping[str, str]


def load_from_context(text: str, context: Path, inputs: TaskFileInputs, source: str
                      ) -> tuple[list[TaskStep], Workspace]:
    """The file's steps, each build step given its Dockerfile's bases (blocking: a thread)."""
    steps, workspace = load_task_file(
        text, variables=inputs.variables, values=inputs.values, secrets=inputs.secrets,
        image_aliases=inputs.image_aliases, read_alias_file=alias_file_reader(context),
        source=source)
    built = _built_here(steps)
    return [_with_bases(step, context, built) for step in steps], workspace


@dataclass(frozen=True)
class TaskFileRegistration:
    """What registration reads of a task file: (platform, bases) of every build step's
    Dockerfile, and the images its push steps publish under a tag that is the same every run
    (what other tasks can be built on)."""

    builds: list[tuple[str, DockerfileBases]]
    published: set[str]


def read_for_registration(text: str, context: Path, source: str, registry: str | None,
                          image_aliases: Mapping[str, str], platform: Platform
                          ) -> TaskFileRegistration:
    """The file rendered with placeholder run variables and values (blocking: a thread).
    `platform`: the task's first, a build step's unless it says `--platform`."""
    variables = replace(PLACEHOLDER_VARIABLES, registry=registry, os=platform.os,
                        architecture=platform.architecture)
    inputs = TaskFileInputs(variables, _AnyValue(), _AnyValue(), image_aliases)
    steps, _ = load_task_file(
        text, variables=inputs.variables, values=inputs.values, secrets=inputs.secrets,
        image_aliases=inputs.image_aliases, read_alias_file=alias_file_reader(context),
        source=source)
    built = _built_here(steps)
    found = []
    for step in steps:
        if isinstance(step.action, BuildStep):
            build = step.action
            bases = _without(_analysed(build, context, step.control.id), built)
            found.append((build.platform, _without_unknown(bases)))
    return TaskFileRegistration(found, _stable_pushes(steps))


def bases_of_builds(text: str, context: Path, source: str, registry: str | None,
                    image_aliases: Mapping[str, str], platform: Platform
                    ) -> list[tuple[str, DockerfileBases]]:
    """What registration tracks: (platform, bases) of every build step's Dockerfile."""
    return read_for_registration(text, context, source, registry, image_aliases,
                                 platform).builds


def _stable_pushes(steps: list[TaskStep]) -> set[str]:
    """The pushed tags no run variable or value changes: one with a stand-in in it (`$ID`,
    `{{.Run.Date}}`, `$Commit`, a value) names a new image every run, or one only a run
    knows, so no other task can be built on it."""
    return {push.tag for step in steps if isinstance(step.action, tuple)
            for push in step.action
            if not any(mark in push.tag for mark in _PER_RUN_MARKS)}


def _built_here(steps: list[TaskStep]) -> set[str]:
    """The images the file's own build steps make: never pulled, never watched."""
    built = set()
    for step in steps:
        if isinstance(step.action, BuildStep):
            for tag in step.action.tags:
                try:
                    built.add(str(ImageReference.parse(tag)))
                except ImageReferenceError:
                    continue
    return built


def _analysed(build: BuildStep, context: Path, step_id: str) -> DockerfileBases:
    file = posixpath.normpath(posixpath.join(build.context, build.dockerfile))
    try:
        content = read_dockerfile(context, file)
        return analyse_for_platforms(content, build.build_args, build.target, file,
                                     [build.platform])[build.platform]
    except BasewatchError as exc:
        raise TaskFileError(f"step `{step_id}`: {exc}") from None


def _without(bases: DockerfileBases, built: set[str]) -> DockerfileBases:
    runtime = bases.runtime if bases.runtime is None or str(bases.runtime) not in built \
        else None
    return DockerfileBases(runtime, tuple(b for b in bases.buildtime if str(b) not in built))


def _without_unknown(bases: DockerfileBases) -> DockerfileBases:
    runtime = None if bases.runtime is None or _UNKNOWN in str(bases.runtime) \
        else bases.runtime
    return DockerfileBases(runtime, tuple(b for b in bases.buildtime
                                          if _UNKNOWN not in str(b)))


def _with_bases(step: TaskStep, context: Path, built: set[str]) -> TaskStep:
    if not isinstance(step.action, BuildStep):
        return step
    bases = _without(_analysed(step.action, context, step.control.id), built)
    return replace(step, action=replace(step.action, bases=[str(b) for b in bases.images]))


def with_pinned(steps: list[TaskStep], platform: str, reference: str, digest: str
                ) -> list[TaskStep]:
    """A base-image run builds every step on `reference` for `platform` at `digest`."""
    pinned = []
    for step in steps:
        build = step.action
        if isinstance(build, BuildStep) and build.platform == platform \
                and reference in build.bases:
            step = replace(step, action=replace(build, pinned={**build.pinned,
                                                               reference: digest}))
        pinned.append(step)
    return pinned
