"""Manual triggers: a task run by hand (`basewatch task run`), and a quick build or run."""
from __future__ import annotations

from collections.abc import Mapping

from basewatch.models import RunRequest, RunType, Trigger


def task_run(task: str, platform: str, values: Mapping[str, object],
             run_type: RunType = RunType.AUTO_BUILD,
             secret_names: tuple[str, ...] = (), registry: str | None = None) -> RunRequest:
    """A run of a registered task, with its values (a values file's, `--set` over them), the
    names of its `--set-secret`s, and the registry it was given for itself (`--registry`)."""
    return RunRequest(task, Trigger.MANUAL, run_type, platform, "manual run",
                      values={str(k): _value(v) for k, v in values.items()},
                      secret_names=secret_names, registry=registry)


def quick_build(platform: str, spec: str, task_file: bool = False,
                values: Mapping[str, object] | None = None,
                secret_names: tuple[str, ...] = (), registry: str | None = None) -> RunRequest:
    """A quick build (`basewatch build`) or quick run of a task file (`basewatch run`): a
    run of no task, carrying its own spec (JSON) and, for a quick run, its own registry."""
    if task_file:
        return RunRequest("", Trigger.MANUAL, RunType.QUICK_RUN, platform, "quick run",
                          spec=spec, secret_names=secret_names, registry=registry,
                          values={str(k): _value(v) for k, v in (values or {}).items()})
    return RunRequest("", Trigger.MANUAL, RunType.QUICK_BUILD, platform, "quick build",
                      spec=spec)


def _value(value: object) -> object:
    # A values file may nest mappings and lists (`{{.Values.image.tag}}`); a scalar is text,
    # as a Go template prints it.
    if isinstance(value, (dict, list)):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)
