"""A run fetched a Dockerfile whose bases moved since registration: the task's registration
follows it, so the watcher watches what the task is now built on."""
from __future__ import annotations

import logging
from pathlib import Path

from basewatch.tasks import Task
from basewatch.store import Store
from basewatch.watcher.registration import TaskRegistrar

log = logging.getLogger(__name__)


class Reregistration:
    def __init__(self, store: Store, registrar: TaskRegistrar):
        self.store = store
        self.registrar = registrar

    async def on_context_changed(self, task: Task, context: Path) -> None:
        found = await self.store.tasks.get_with_source(task.name)
        if found is not None:
            bases = await self.registrar.register(task, found[1], context)
            log.info("task %s: its Dockerfile changed; runtime base now %s", task.name,
                     bases.runtime if bases.runtime else "scratch")
