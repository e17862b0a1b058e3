"""Cascades: a task that pushed an image another task is built on has that image checked at
once, so the downstream rebuild starts without waiting for the next poll; and the tasks a task
is built on (its upstream), which a run waits for.

The downstream run itself is queued the way every base-image change is (the watcher's change,
then `triggers`): a cascade only makes the watcher look now.
"""
from __future__ import annotations

import logging
from typing import Awaitable, Callable, Protocol

from basewatch.graph import TaskGraph
from basewatch.models import Run, RunStatus
from basewatch.watcher.digest_watch import ReferenceChecker

log = logging.getLogger(__name__)


class PublishedImages(Protocol):
    def published(self) -> Awaitable[dict[str, set[str]]]: ...

    def graph(self) -> Awaitable[TaskGraph]: ...


class Cascades:
    def __init__(self, registrar: PublishedImages, watcher: Callable[[], ReferenceChecker]):
        self.registrar = registrar
        self._watcher = watcher  # built after the executor that calls on_finished

    async def on_finished(self, run: Run) -> None:
        """After a run: check the watched bases it pushed, if it pushed any."""
        if run.status is not RunStatus.SUCCEEDED or not run.outputs:
            return
        published = (await self.registrar.published()).get(run.task, set())
        checked = await self._watcher().check_references(published.__contains__)
        if checked:
            log.info("run %s pushed %d watched base(s): checked at once", run.id, checked)

    async def upstream_of(self, task: str) -> set[str]:
        """The tasks `task` is built on, directly or not."""
        return (await self.registrar.graph()).ancestors(task)
