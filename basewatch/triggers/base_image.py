"""Base-image trigger: a watched base moved, and each task built on it is rebuilt. One change
(of one platform) becomes one queued run per dependent task; the new digest and the runs are
written in one transaction."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

from structlog.contextvars import bound_contextvars

from basewatch.models import (BaseChange, Dependency, DependencyKind, DigestChange, RunRequest,
                              RunType, Trigger)
from basewatch.store import Store
from basewatch.tasks import Task
from basewatch.triggers import NewDigest, Triggers

log = logging.getLogger(__name__)


def base_image_run(task: str, base: str, platform: str, digest: str,
                   not_before: datetime | None = None, platforms: str | None = None,
                   run_type: RunType = RunType.AUTO_BUILD) -> RunRequest:
    """A run of `task` because `base` moved to `digest` for `platform`. The run builds every
    platform the task is built for (`platforms`, a comma list; default: that one), so a change
    to any one platform's digest rebuilds the task's index."""
    return RunRequest(task, Trigger.IMAGE_UPDATE, run_type, platforms or platform,
                      f"base {base} ({platform}) changed to {digest}", not_before=not_before,
                      base_change=BaseChange(base, platform, digest))


def wants_rebuild(dependency: Dependency, task: Task, new_digest: str) -> bool:
    """Whether a change of `dependency.base` to `new_digest` should rebuild `task`."""
    trigger = task.base_image_trigger
    if not trigger.enabled:
        return False
    if dependency.kind is DependencyKind.BUILDTIME and trigger.type != "all":
        return False
    # Already built on this digest (a manual run got there first): nothing to do.
    return dependency.digest_at_build != new_digest


class FanOut:
    """`settle` seconds after the last change, the runs start: a burst of pushes of one base
    gives one run per dependent (each further push extends the window)."""

    def __init__(self, store: Store, triggers: Triggers, settle: float = 0.0):
        self.store = store
        self.triggers = triggers
        self.settle = settle

    async def on_change(self, change: DigestChange) -> list[str]:
        with bound_contextvars(base=change.base, platform=change.platform, digest=change.new):
            return await self._fan_out(change)

    async def _fan_out(self, change: DigestChange) -> list[str]:
        dependents = await self.store.graph.dependents(change.base, change.platform)
        # Only the dependents' definitions: a daemon of 10,000 tasks reads a handful, not all.
        tasks = {task.name: task
                 for task in await self.store.tasks.named(dep.task for dep in dependents)}
        not_before = (datetime.now(timezone.utc) + timedelta(seconds=self.settle)
                      if self.settle else None)
        # One run per task, of every platform it is built for: a change to any one platform's
        # digest rebuilds the task's index (a second platform's change finds it queued).
        requests = [
            base_image_run(dep.task, change.base, change.platform, change.new, not_before,
                           platforms=tasks[dep.task].platform_list,
                           run_type=tasks[dep.task].run_type)
            for dep in dependents
            if dep.task in tasks and wants_rebuild(dep, tasks[dep.task], change.new)
        ]
        run_ids = await self.triggers.enqueue(
            requests, delay=self.settle,
            new_digest=NewDigest(change.base, change.platform, change.new, change.index_digest))
        if run_ids:
            listed = ", ".join(run_ids) if len(run_ids) <= 10 else \
                f"{len(run_ids)} runs ({run_ids[0]} to {run_ids[-1]})"
            log.info("base %s changed: queued %s", change.base, listed)
        return run_ids
