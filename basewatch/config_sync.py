"""Config sync: the config file's tasks registered as the daemon starts and on SIGHUP, and config
tasks no longer in the file forgotten. Other settings take a restart."""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Callable

from basewatch.config import Config, TaskSettings, load_config
from basewatch.errors import BasewatchError
from basewatch.registration_progress import RegistrationProgress
from basewatch.store import Store
from basewatch.task_webhooks import TaskWebhooks
from basewatch.tasks import Task
from basewatch.watcher.registration import TaskRegistrar

log = logging.getLogger(__name__)


def context_in_config(config: Config, context: str) -> bool:
    """A context the config file names: its author chose it, so it is fetched unchecked."""
    return any(task.context == context for task in config.tasks)


def reread(current: Config, path: Path) -> Config | None:
    """The config with the file's tasks read again, the rest as running; None when the file
    does not load (logged: the running tasks stay as they were)."""
    try:
        config = load_config(path)
    except BasewatchError as exc:
        log.error("config not reloaded, the running tasks stay as they were: %s", exc)
        return None
    if current.model_copy(update={"tasks": config.tasks}) != config:
        log.warning("config reloaded: tasks applied; other changed settings take effect "
                    "after a restart")
    return current.model_copy(update={"tasks": config.tasks})


class ConfigSync:
    def __init__(self, store: Store, registrar: TaskRegistrar, refresh: Callable[[], None],
                 webhooks: TaskWebhooks | None = None):
        self.store = store
        self.registrar = registrar
        self.refresh = refresh  # the watcher re-reads what it watches
        self.webhooks = webhooks
        self._webhook_sync: asyncio.Task | None = None
        # Config tasks the last sync could not register: name -> (the task, why). Read live
        # by /healthz (degraded, naming them) and the task list (shown with the error).
        self.unregistered: dict[str, tuple[Task, str]] = {}
        self.progress = RegistrationProgress()
        # One sync at a time: a SIGHUP while the start's registration runs waits for it.
        self._syncing = asyncio.Lock()

    def problems(self) -> dict[str, str]:
        """Why each config task the last sync could not register was not, by name."""
        return {name: error for name, (_, error) in self.unregistered.items()}

    async def sync(self, tasks: list[TaskSettings]) -> None:
        """Register the config's tasks and forget config tasks that were removed from it."""
        async with self._syncing:
            await self._sync(tasks)

    async def _sync(self, tasks: list[TaskSettings]) -> None:
        progress = self.progress
        progress.begin(task.name for task in tasks)
        names = {task.name for task in tasks}
        failed: dict[str, tuple[Task, str]] = {}
        # Half a second over 10,000 tasks: in a thread, so /healthz answers meanwhile.
        converted = await asyncio.to_thread(lambda: [settings.to_task() for settings in tasks])
        by_name = {task.name: task for task in converted}

        def reached(registered: list[str], refused: dict[str, str]) -> None:
            for name, error in refused.items():
                log.error("task %s not registered: %s", name, error)
                failed[name] = (by_name[name], error)
            progress.reached(registered, refused)

        # Read (remote contexts fetched side by side) and stored a batch at a time, in order.
        await self.registrar.register_many(converted, "config", reached)
        self.unregistered.clear()
        self.unregistered.update(failed)
        stored = await self.store.tasks.names(source="config")
        removed = [task for name in sorted(stored - names)
                   if (task := await self.store.tasks.get(name)) is not None]
        await self.registrar.unregister_many(sorted(stored - names))
        for task in removed:
            log.info("task %s removed: no longer in the config", task.name)
        await self.store.graph.prune()
        self.refresh()
        seconds = progress.finish()
        log.info("config tasks registered: %d of %d in %.1f s%s", progress.registered,
                 progress.total, seconds,
                 f"; {progress.failed} not registered (in /healthz)" if progress.failed else "")
        if self.webhooks is not None:
            # A local context has no hook to register: only one kept from before (its context
            # was a repository) is looked at, not thousands of local tasks one by one.
            hooks = {hook.task for hook in await self.store.webhooks.all()}
            self._sync_webhooks([task for task in converted if task.name in stored
                                 and (not task.local_context or task.name in hooks)], removed)

    def _sync_webhooks(self, tasks: list, removed: list) -> None:
        """In the background: a git host's API (retried up to a minute) holds up neither the
        start nor a reload; one sync at a time, in order."""
        previous = self._webhook_sync

        async def sync() -> None:
            if previous is not None:
                await asyncio.gather(previous, return_exceptions=True)
            try:
                await self.webhooks.sync(tasks, removed)
            except Exception:
                log.exception("the config tasks' webhooks were not synced")

        self._webhook_sync = asyncio.create_task(sync(), name="webhook sync")

    async def settled(self) -> None:
        """Wait for the webhook sync in progress, if any."""
        if self._webhook_sync is not None:
            await asyncio.gather(self._webhook_sync, return_exceptions=True)

    async def close(self) -> None:
        if self._webhook_sync is not None:
            self._webhook_sync.cancel()
            await asyncio.gather(self._webhook_sync, return_exceptions=True)

    async def reload(self, current: Config, path: Path) -> Config:
        """SIGHUP: re-read the file's tasks and sync them; the config now running."""
        config = reread(current, path)
        if config is None:
            return current
        await self.sync(config.tasks)
        log.info("config reloaded: %d tasks from the file", len(config.tasks))
        return config
