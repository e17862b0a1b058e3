"""Manual triggers: a task run by hand (`basewatch task run`), and a quick build."""
from __future__ import annotations

from basewatch.models import RunRequest, RunType, Trigger


def task_run(task: str, platform: str, values: dict[str, str]) -> RunRequest:
    """A run of a registered task, with its `--set` values."""
    return RunRequest(task, Trigger.MANUAL, RunType.AUTO_BUILD, platform, "manual run",
                      values={str(k): str(v) for k, v in values.items()})


def quick_build(platform: str, spec: str) -> RunRequest:
    """A quick build: a run of no task, carrying its own build spec (JSON)."""
    return RunRequest("", Trigger.MANUAL, RunType.QUICK_BUILD, platform, "quick build",
                      spec=spec)
