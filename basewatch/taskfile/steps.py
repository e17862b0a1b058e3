"""One step of a task file (a parsed, alias-expanded mapping) into a TaskStep: its kind
(`build`, `push` or `cmd`), its properties checked, typed and defaulted as acr-builder does."""
from __future__ import annotations

import difflib
import posixpath
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from basewatch.errors import ImageReferenceError
from basewatch.oci.platforms import Platform
from basewatch.oci.reference import ImageReference
from basewatch.run_plan import (
    BuildStep,
    CmdStep,
    Container,
    PushStep,
    StepControl,
    TaskStep,
    VolumeMount,
)
from basewatch.taskfile.build_args import BuildArgsError, parse_build
from basewatch.taskfile.document import Located, LocatedList

KINDS = ("build", "push", "cmd")
PROPERTIES = frozenset({
    "id", *KINDS, "when", "detach", "env", "entryPoint", "workingDirectory",
    "disableWorkingDirectoryOverride", "user", "network", "ports", "expose", "privileged",
    "pull", "keep", "timeout", "startDelay", "retries", "retryDelay", "repeat", "ignoreErrors",
    "volumeMounts", "isolation", "cache"})
# acr-builder knows these; basewatch does not carry them out, so a file using them is refused
# rather than run differently.
UNSUPPORTED = {
    "exitedWith": "exit codes other than 0 as success",
    "exitedWithout": "exit codes other than 0 as success",
    "retryOnErrors": "retrying on matching error text",
    "downloadRetries": "retrying image downloads",
    "cpus": "a step's CPU limit",
}
# Docker's rule for container names: a cmd step's id is its container's name on the network.
STEP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
ENGINE_ALIAS = "docker"
AZURE_TOOLS = {
    "az": "`az` is the Azure CLI: it needs an Azure subscription and a managed identity, "
          "which basewatch does not have. To log in to a registry, list it under "
          "`registries:` in the config (build and push steps use it); for a secret, pass "
          "--set-secret NAME=VALUE; or map `az` to an image of your own under `aliases:`",
    "acr": "`acr` is the ACR CLI (acr purge...): it works against Azure Container Registry "
           "only. Map `acr` under `aliases:` in the config to an image that works with your "
           "registry, or leave the step out",
    "purge": "`purge` is the ACR CLI's purge: it works against Azure Container Registry "
             "only. Map `purge` under `aliases:` in the config to an image of your own",
}


def dollar_hint(text: str) -> str:
    """What to say of a reference still holding a `$` alias: it was not expanded."""
    return (" ($ aliases are expanded in files of `version: v1.1.0` only)" if "$" in text
            else "")


class StepError(Exception):
    def __init__(self, message: str, key: object = None):
        super().__init__(message)
        self.message, self.key = message, key


@dataclass(frozen=True)
class StepContext:
    """What a step is read against: the file's defaults and what the run provides."""

    index: int
    step_timeout: float
    working_directory: str
    env: tuple[str, ...]
    networks: frozenset[str]
    volumes: frozenset[str]
    registry: str | None
    platform: str
    image_aliases: Mapping[str, str]  # cmd's first word -> image (file and config aliases)


def default_id(index: int) -> str:
    return f"acb_step_{index}"


def read_step(step: object, context: StepContext) -> TaskStep:
    """The TaskStep `step` describes; StepError(message, key) when it is wrong."""
    if not isinstance(step, Located):
        raise StepError("a step must be a mapping of properties (build, push or cmd, id...)")
    for key in step:
        if key in UNSUPPORTED:
            raise StepError(f"`{key}` ({UNSUPPORTED[key]}) is an ACR property basewatch does "
                            "not support", key)
        if key not in PROPERTIES:
            close = difflib.get_close_matches(str(key), sorted(PROPERTIES), n=1, cutoff=0.7)
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            raise StepError(f"unknown property `{key}`{hint}", key)
    kinds = [kind for kind in KINDS if step.get(kind) not in (None, "", [])]
    if len(kinds) != 1:
        given = " and ".join(f"`{k}`" for k in kinds) or "none"
        raise StepError(f"a step is exactly one of `build`, `push` or `cmd`; this one has "
                        f"{given}", kinds[1] if len(kinds) > 1 else None)
    _check_isolation_and_cache(step)
    control = _control(step, context)
    kind = kinds[0]
    if kind != "cmd" and step.get("volumeMounts"):
        raise StepError("`volumeMounts` is for cmd steps only", "volumeMounts")
    if kind == "build":
        action: BuildStep | tuple[PushStep, ...] | CmdStep = _build(step, context)
    elif kind == "push":
        action = _push(step, context)
    else:
        action = CmdStep(_container(step, context, control.id))
    return TaskStep(control=control, action=action)


def _control(step: Located, context: StepContext) -> StepControl:
    step_id = _text(step, "id")
    if step_id is None:
        step_id = default_id(context.index)
    elif not STEP_ID.fullmatch(step_id):
        raise StepError(f"id {step_id!r} must be letters, digits, '_', '.' or '-' (it names "
                        "the step's container), starting with a letter or digit", "id")
    when = _texts(step, "when")
    timeout = _number(step, "timeout")
    retry_delay = _number(step, "retryDelay")
    return StepControl(
        id=step_id,
        when=tuple(dict.fromkeys(when)) if when else None,
        timeout=float(timeout) if timeout and timeout > 0 else context.step_timeout,
        start_delay=float(_number(step, "startDelay", minimum=0) or 0),
        retries=_number(step, "retries", minimum=0) or 0,
        retry_delay=float(retry_delay) if retry_delay and retry_delay > 0 else 5.0,
        repeat=_number(step, "repeat", minimum=0) or 0,
        ignore_errors=_flag(step, "ignoreErrors"))


def _check_isolation_and_cache(step: Located) -> None:
    isolation = _text(step, "isolation")
    if isolation is not None and isolation.lower() != "default":
        raise StepError(f"isolation {isolation!r} is not supported: containers here run with "
                        "the engine's default isolation (leave it out, or write default)",
                        "isolation")
    cache = _text(step, "cache")
    if cache is not None and cache.lower() not in ("enabled", "disabled"):
        raise StepError(f"cache {cache!r} must be enabled or disabled", "cache")


def _build(step: Located, context: StepContext) -> BuildStep:
    try:
        args = parse_build(_text(step, "build") or "", _step_directory(step, context),
                           context.working_directory)
    except BuildArgsError as exc:
        raise StepError(f"build: {exc}", "build") from None
    platform = args.platform or context.platform
    try:
        Platform.parse(platform)
    except Exception as exc:  # noqa: BLE001 - its message names what is wrong
        raise StepError(f"build: --platform {platform!r}: {exc}", "build") from None
    no_cache = args.no_cache or (_text(step, "cache") or "").lower() == "disabled"
    return BuildStep(platform=platform, tags=args.tags, bases=[], dockerfile=args.dockerfile,
                     build_args=args.build_args, target=args.target, context=args.context,
                     no_cache=no_cache)


def _push(step: Located, context: StepContext) -> tuple[PushStep, ...]:
    pushes: dict[str, PushStep] = {}
    for image in _texts(step, "push") or []:
        tag = normalised_push(image, context.registry)
        pushes.setdefault(tag, PushStep(tag=tag))
    return tuple(pushes.values())


def normalised_push(image: str, registry: str | None) -> str:
    """An image to push with the run's registry in front when it names no registry, as
    acr-builder prefixes it; fully qualified, with `latest` when it has no tag."""
    first, slash, _ = image.partition("/")
    has_host = bool(slash) and ("." in first or ":" in first or first == "localhost")
    if not has_host:
        if not registry:
            raise StepError(f"push: {image!r} names no registry and the run has none: write "
                            "the registry in front ($Registry/...) or set `registry:` in the "
                            "config", "push")
        image = f"{registry}/{image}"
    try:
        return str(ImageReference.parse(image))
    except ImageReferenceError as exc:
        raise StepError(f"push: {exc}{dollar_hint(image)}", "push") from None


def _container(step: Located, context: StepContext, step_id: str) -> Container:
    try:
        words = shlex.split(_text(step, "cmd") or "")
    except ValueError as exc:
        raise StepError(f"cmd: cannot split it into words: {exc}", "cmd") from None
    if not words:
        raise StepError("cmd: names no image", "cmd")
    name, args = words[0], tuple(words[1:])
    image = context.image_aliases.get(name)
    if image is None:
        if name in AZURE_TOOLS:
            raise StepError(f"cmd: {AZURE_TOOLS[name]}", "cmd")
        try:
            ImageReference.parse(name)
        except ImageReferenceError as exc:
            raise StepError(f"cmd: `{name}` is neither an image alias (the config's "
                            f"`aliases:`, the file's `alias:`) nor an image reference: {exc}"
                            f"{dollar_hint(name)}", "cmd") from None
        image = name
    if "login" in args and "--identity" in args:
        raise StepError("cmd: logs in with a managed identity (--identity), which exists only "
                        "on Azure and which basewatch does not have: list the registry under "
                        "`registries:` in the config for build and push steps, and pass "
                        "secrets with --set-secret NAME=VALUE", "cmd")
    network = _text(step, "network")
    if network is not None and network not in context.networks \
            and network not in ("host", "none", "bridge"):
        known = ", ".join(sorted(context.networks)) or "none declared"
        raise StepError(f"network {network!r} is none of the task's networks ({known}) nor "
                        "host, none or bridge", "network")
    return Container(
        image=image, args=args, entrypoint=_text(step, "entryPoint"),
        env=_env(step, context.env),
        working_directory=_working_directory(step, context),
        disable_working_directory_override=_flag(step, "disableWorkingDirectoryOverride"),
        user=_text(step, "user"), network=network,
        ports=tuple(_texts(step, "ports") or ()), expose=tuple(_texts(step, "expose") or ()),
        privileged=_flag(step, "privileged"), pull=_flag(step, "pull"),
        detach=_flag(step, "detach"), keep=_flag(step, "keep"),
        mounts=_mounts(step, context), engine_access=name == ENGINE_ALIAS)


def _step_directory(step: Located, context: StepContext) -> str:
    """The folder a build's paths are relative to: the step's working directory, under the
    task's."""
    written = _text(step, "workingDirectory")
    return posixpath.join(context.working_directory, written) if written \
        else context.working_directory


def _working_directory(step: Located, context: StepContext) -> str | None:
    written = _text(step, "workingDirectory")
    if _flag(step, "disableWorkingDirectoryOverride") or written is None:
        return written  # None: the workspace's (or, overrides disabled, the image's own)
    return posixpath.normpath(posixpath.join(context.working_directory, written))


def _env(step: Located, task_env: tuple[str, ...]) -> tuple[str, ...]:
    own = tuple(checked_env(_texts(step, "env") or [], "env"))
    names = {entry.partition("=")[0] for entry in own}
    return tuple(e for e in task_env if e.partition("=")[0] not in names) + own


def checked_env(entries: list[str], key: str) -> list[str]:
    for entry in entries:
        if "=" not in entry or not entry.partition("=")[0]:
            raise StepError(f"{key}: {entry.partition('=')[0]!r} must be written NAME=VALUE",
                            key)
    return entries


def _mounts(step: Located, context: StepContext) -> tuple[VolumeMount, ...]:
    mounts = step.get("volumeMounts")
    if mounts is None:
        return ()
    if not isinstance(mounts, LocatedList):
        raise StepError("`volumeMounts` must be a list of {name, mountPath}", "volumeMounts")
    result, paths = [], set()
    for mount in mounts:
        if not isinstance(mount, Mapping) or set(mount) != {"name", "mountPath"} \
                or not all(isinstance(v, str) and v for v in mount.values()):
            raise StepError("each of `volumeMounts` is {name: VOLUME, mountPath: /PATH}",
                            "volumeMounts")
        if mount["name"] not in context.volumes:
            known = ", ".join(sorted(context.volumes)) or "none declared"
            raise StepError(f"volumeMounts: {mount['name']!r} is none of the task's volumes "
                            f"({known})", "volumeMounts")
        if mount["mountPath"] in paths:
            raise StepError(f"volumeMounts: {mount['mountPath']!r} is mounted twice",
                            "volumeMounts")
        paths.add(mount["mountPath"])
        result.append(VolumeMount(volume=mount["name"], path=mount["mountPath"]))
    return tuple(result)


def _text(step: Mapping, key: str) -> str | None:
    value = step.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise StepError(f"`{key}` must be text, not {_kind(value)}", key)
    return str(value)


def _texts(step: Mapping, key: str) -> list[str] | None:
    value = step.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or any(isinstance(v, (bool, dict, list)) or v is None
                                          for v in value):
        raise StepError(f"`{key}` must be a list of text, such as [\"a\", \"b\"], not "
                        f"{_kind(value)}", key)
    return [str(v) for v in value]


def _number(step: Mapping, key: str, minimum: int | None = None) -> int | None:
    value = step.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        unit = "times" if key in ("retries", "repeat") else "seconds"
        raise StepError(f"`{key}` must be a whole number of {unit}, not {_kind(value)}", key)
    if minimum is not None and value < minimum:
        raise StepError(f"`{key}` must be {minimum} or more, not {value}", key)
    return value


def _flag(step: Mapping, key: str) -> bool:
    value = step.get(key, False)
    if not isinstance(value, bool):
        raise StepError(f"`{key}` must be true or false, not {_kind(value)}", key)
    return value


def _kind(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"{str(value).lower()}"
    if value is None:
        return "nothing"
    return repr(value)
