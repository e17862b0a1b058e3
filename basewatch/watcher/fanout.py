"""Turns one base digest change (of one platform) into one queued run per dependent task."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from typing import Callable

from basewatch.models import Dependency, DependencyKind, RunRequest, RunType, Trigger
from basewatch.store import Store
from basewatch.tasks import Task
from basewatch.watcher.digest_watch import DigestChange

log = logging.getLogger(__name__)


def triggers(dependency: Dependency, task: Task, new_digest: str) -> bool:
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

    def __init__(self, store: Store, submit: Callable[[str, float], None], settle: float = 0.0):
        self.store = store
        self.submit = submit
        self.settle = settle

    async def on_change(self, change: DigestChange) -> list[str]:
        dependents = await self.store.graph.dependents(change.base, change.platform)
        tasks = {task.name: task for task in await self.store.tasks.all()}
        reason = f"base {change.base} ({change.platform}) changed to {change.new}"
        not_before = (datetime.now(timezone.utc) + timedelta(seconds=self.settle)
                      if self.settle else None)
        # One run per task, of every platform it is built for: a change to any one platform's
        # digest rebuilds the task's index (a second platform's change finds it queued).
        requests = [
            RunRequest(dep.task, Trigger.IMAGE_UPDATE, RunType.AUTO_BUILD,
                       tasks[dep.task].platform_list, reason, not_before=not_before)
            for dep in dependents
            if dep.task in tasks and triggers(dep, tasks[dep.task], change.new)
        ]
        run_ids = await self.store.runs.record_change_and_queue(
            change.base, change.platform, change.new, change.index_digest, requests)
        if run_ids:
            listed = ", ".join(run_ids) if len(run_ids) <= 10 else \
                f"{len(run_ids)} runs ({run_ids[0]} to {run_ids[-1]})"
            log.info("base %s changed: queued %s", change.base, listed)
        for run_id in run_ids:
            self.submit(run_id, self.settle)
        return run_ids
