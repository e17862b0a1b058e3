"""Each task's webhook on its repository: registered through the git host's API when the task
has a token (`git_access_token_env`), with a secret the daemon generates and keeps; or, without
one, the URL, secret and events a person pastes into the provider's settings.

Nothing is half-written: a hook is registered before its task is stored, and removed again when
storing the task (or the hook's secret) fails. Tasks on one repository share its one hook (a
provider keeps one hook per URL), and the hook is removed with the last of them.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from contextlib import asynccontextmanager
from typing import AsyncIterator

from basewatch.context_spec import parse_context
from basewatch.errors import BasewatchError, InvalidRequestError
from basewatch.models import TaskWebhook
from basewatch.redaction import KNOWN
from basewatch.scm import webhooks as scm_webhooks
from basewatch.scm.api import ScmApi
from basewatch.scm.github import EVENTS as GITHUB_EVENTS
from basewatch.scm.hosts import GitHostSettings, Repository, ScmError, locate
from basewatch.scm.manual import webhook_instructions
from basewatch.scm.provider import new_webhook_secret
from basewatch.store import Store
from basewatch.tasks import Task

log = logging.getLogger(__name__)

# What to tick in each provider's settings, as its webhook form names the events.
EVENTS = {"github": ["Pushes", "Pull requests"],
          "gitlab": ["Push events", "Merge request events"],
          "gitea": ["Push", "Pull request"]}
assert GITHUB_EVENTS == ["push", "pull_request"]  # what the API registers, named as above


def _no_public_url(what: str) -> InvalidRequestError:
    return InvalidRequestError(f"{what} needs the config's public_url (where git servers and "
                               "people reach this daemon, e.g. https://basewatch.example.com): "
                               "set it and restart the daemon")


class TaskWebhooks:
    def __init__(self, store: Store, api: ScmApi, git_hosts: Sequence[GitHostSettings] = (),
                 public_url: str | None = None, environ: Mapping[str, str] = os.environ):
        self.store = store
        self.api = api
        self.git_hosts = tuple(git_hosts)
        self.public_url = public_url
        self.environ = environ
        self.problems: dict[str, str] = {}  # config task → why its hook is not registered

    # ------------------------------------------------------------------ which tasks

    def repository(self, task: Task) -> Repository | None:
        """The repository of a git context on a host whose API basewatch knows; else None."""
        if parse_context(task.context).kind != "git":
            return None
        try:
            return locate(task.context, self.git_hosts)
        except ScmError:
            return None

    def registers(self, task: Task) -> bool:
        """Whether basewatch registers the task's webhook itself: a token and a known host."""
        return bool(task.git_access_token_env) and self.repository(task) is not None

    def check(self, task: Task) -> None:
        """Refuse, before anything is done, a task that needs public_url while it is unset."""
        if self.public_url is None and self.registers(task):
            raise _no_public_url(f"task {task.name}: registering its webhook")
        if self.public_url is None and task.report_status \
                and parse_context(task.context).kind == "git":
            raise _no_public_url(f"task {task.name}: report_status (its link to the run's log)")

    def token(self, task: Task) -> str:
        value = self.environ.get(task.git_access_token_env or "")
        if not value:
            raise InvalidRequestError(f"task {task.name}: git_access_token_env names "
                                      f"{task.git_access_token_env}, which is not set in the "
                                      "daemon's environment")
        KNOWN.add(value)
        return value

    # ------------------------------------------------------------------ register, remove

    @asynccontextmanager
    async def kept_for(self, task: Task, previous: Task | None = None) -> AsyncIterator[None]:
        """Around storing `task` (replacing `previous`): its hook registered before, removed
        again if storing fails; a hook the task no longer needs removed after."""
        self.check(task)
        old = await self.store.webhooks.get(task.name)
        new = None
        if self.registers(task) and not self._same_hook(old, task):
            new = await self._register(task)
        try:
            yield
        except BaseException:
            if new is not None:
                await self._restore(task, new, old)
            raise
        if old is not None and old.hook_id is not None and (new is not None
                                                            or not self.registers(task)):
            if new is None:
                await self.store.webhooks.delete(task.name)
            await self._remove_quietly(previous or task, old)

    async def removed(self, task: Task) -> None:
        """After `task` is deleted: its hook removed (unless another task shares it), and its
        secret forgotten. A provider that refuses is logged: the task is gone either way."""
        old = await self.store.webhooks.get(task.name)
        await self.store.webhooks.delete(task.name)
        self.problems.pop(task.name, None)
        if old is not None and old.hook_id is not None:
            await self._remove_quietly(task, old)

    async def sync(self, tasks: Sequence[Task], removed: Sequence[Task] = ()) -> None:
        """The config's tasks: each hook registered once (a failure logged and kept for
        /healthz, never fatal); the hooks of the config tasks `removed` from it removed."""
        for task in removed:
            await self.removed(task)
        for task in tasks:
            try:
                async with self.kept_for(task, task):
                    pass
            except BasewatchError as exc:
                self.problems[task.name] = str(exc)
                log.error("task %s: webhook not registered: %s", task.name, exc)
            else:
                self.problems.pop(task.name, None)
        names = {task.name for task in tasks}
        for name in [name for name in self.problems if name not in names]:
            del self.problems[name]

    def _same_hook(self, kept: TaskWebhook | None, task: Task) -> bool:
        """The task's hook is registered already, on the repository its context names now."""
        return kept is not None and kept.hook_id is not None and kept.context is not None \
            and _repository_key(kept.context, self.git_hosts) == \
            _repository_key(task.context, self.git_hosts)

    async def _register(self, task: Task) -> TaskWebhook:
        key = _repository_key(task.context, self.git_hosts)
        for other in await self.store.webhooks.all():
            if other.task != task.name and other.hook_id is not None and other.context \
                    and _repository_key(other.context, self.git_hosts) == key:
                # The repository's one hook for our URL, with the secret it is signed with.
                shared = TaskWebhook(task.name, other.secret, other.provider, task.context,
                                     other.hook_id)
                await self.store.webhooks.put(shared)
                return shared
        hook = await scm_webhooks.register(self.api, task.context, self.git_hosts,
                                           self.token(task), task.git_access_token_env or "",
                                           self.public_url or "")
        kept = TaskWebhook(task.name, hook.secret, hook.provider, task.context, hook.hook_id)
        try:
            await self.store.webhooks.put(kept)
        except BaseException:
            await self._remove_quietly(task, kept)
            raise
        log.info("task %s: webhook %s on %s (%s)", task.name, hook.hook_id, hook.repository,
                 "created" if hook.created else "updated")
        return kept

    async def _restore(self, task: Task, new: TaskWebhook, old: TaskWebhook | None) -> None:
        try:
            if old is None:
                await self.store.webhooks.delete(task.name)
            else:
                await self.store.webhooks.put(old)
        finally:
            await self._remove_quietly(task, new)

    async def _remove_quietly(self, task: Task, hook: TaskWebhook) -> None:
        """Delete the hook on the repository unless another task still uses it; a failure is
        logged (the hook then signs deliveries no task verifies: they are refused)."""
        key = _repository_key(hook.context or "", self.git_hosts)
        for other in await self.store.webhooks.all():
            if other.hook_id == hook.hook_id and other.context \
                    and _repository_key(other.context, self.git_hosts) == key:
                return
        try:
            gone = await scm_webhooks.unregister(self.api, hook.context or "", self.git_hosts,
                                                 self.token(task),
                                                 task.git_access_token_env or "",
                                                 hook.hook_id or 0)
        except BasewatchError as exc:
            log.warning("task %s: webhook %s not removed from %s: %s", task.name, hook.hook_id,
                        key, exc)
            return
        log.info("task %s: webhook %s on %s %s", task.name, hook.hook_id, key,
                 "removed" if gone else "was gone already")

    # ------------------------------------------------------------------ by hand

    async def instructions(self, task: Task) -> dict:
        """What to enter in the provider's settings for the task's webhook: the URL, the secret
        (the webhook_secret_env's value, or one generated and kept on the first ask), the events."""
        try:
            repository = locate(task.context, self.git_hosts) \
                if parse_context(task.context).kind == "git" else None
        except ScmError as exc:
            raise InvalidRequestError(f"task {task.name}: {exc}") from None
        if repository is None:
            raise InvalidRequestError(f"task {task.name}: its context is not a git repository, "
                                      "so no webhook can trigger it")
        if self.public_url is None:
            raise _no_public_url(f"task {task.name}: the webhook's URL")
        kept = await self.store.webhooks.get(task.name)
        if task.webhook_secret_env:
            secret = self.environ.get(task.webhook_secret_env)
            KNOWN.add(secret)
            if not secret:
                raise InvalidRequestError(
                    f"task {task.name}: webhook_secret_env names {task.webhook_secret_env}, "
                    "which is not set in the daemon's environment")
            source = f"the value of {task.webhook_secret_env}"
        else:
            if kept is None:
                kept = await self.store.webhooks.put_if_absent(
                    TaskWebhook(task.name, new_webhook_secret()))
            secret = kept.secret
            source = "generated by basewatch and kept in its state dir"
        url = scm_webhooks.webhook_url(self.public_url, repository.provider)
        return {"task": task.name, "provider": repository.provider,
                "repository": str(repository), "url": url, "secret": secret,
                "secret_source": source, "events": EVENTS[repository.provider],
                "registered": kept is not None and kept.hook_id is not None,
                "instructions": webhook_instructions(repository.provider, url, secret)}

    async def secrets(self) -> dict[str, str]:
        """Each task's kept secret, for the receivers."""
        return {kept.task: kept.secret for kept in await self.store.webhooks.all()}


def _repository_key(context: str, git_hosts: Sequence[GitHostSettings]) -> str:
    try:
        repository = locate(context, tuple(git_hosts))
    except ScmError:
        return context
    return f"{repository.api_url}\n{repository.path}".lower()
