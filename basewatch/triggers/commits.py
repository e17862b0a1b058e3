"""Commit and pull-request triggers: what a git source saw (a webhook's delivery, a poll's new
head), matched to the tasks that want it, one run each through the trigger seam.

A task wants an event when its context is a git repository the event names (any of its URLs,
normalised: repo_urls.py), on one of its branches (commit_trigger.branches; none given: the
context's #ref when it names a branch, else the repository's default branch), and:
- a push: its commit trigger is on;
- a pull request: its pull-request trigger is on, the request targets one of its branches,
  and comes from the same repository or the task allows forks.
The run builds exactly the commit of the event; the store keeps one run per (task, commit),
so a redelivery, or the same commit seen by a webhook and by a poll, queues nothing more.
"""
from __future__ import annotations

import logging
from collections.abc import Collection

from basewatch.context_spec import COMMIT, ContextError, checked_source, display_url, parse_context
from basewatch.models import RunRequest, SourceCommit, Trigger
from basewatch.store.protocols import TaskStore
from basewatch.tasks import Task
from basewatch.triggers import Triggers
from basewatch.triggers.repo_urls import repository_key, repository_keys
from basewatch.triggers.source_events import SourceEvent, SourceOutcome

log = logging.getLogger(__name__)


class CommitTriggers:
    """The SourceEventSink the webhook receivers and the git poller hand events to."""

    def __init__(self, tasks: TaskStore, triggers: Triggers):
        self.tasks = tasks
        self.triggers = triggers

    async def on_event(self, event: SourceEvent, tasks: Collection[str] | None = None
                       ) -> SourceOutcome:
        if event.kind == "ping":
            return SourceOutcome(reason="a ping queues nothing")
        if event.ignored:
            return SourceOutcome(reason=event.ignored)
        try:
            source = _source_of(event)
        except ContextError as refused:
            return SourceOutcome(reason=f"the event is refused: {refused}")
        keys = repository_keys(event.repository_urls)
        if not keys:
            return SourceOutcome(reason="the event names no repository URL")
        shown = display_url(event.repository_urls[0])
        branch = source.branch if event.kind == "push" else source.target_branch
        candidates = [t for t in await self.tasks.all() if tasks is None or t.name in tasks]
        builders = [t for t in candidates if _repository(t) in keys]
        if not builders:
            among = "" if tasks is None else " that the delivery's secret authenticates"
            return SourceOutcome(reason=f"no task{among} builds {shown}")
        on_branch = [t for t in builders if branch in _branches(t, event)]
        if not on_branch:
            return SourceOutcome(reason=f"no task builds {shown} on branch {branch}")
        wanted, refusal = _wanted(event, on_branch, f"({shown} on branch {branch})")
        if not wanted:
            return SourceOutcome(reason=refusal)
        run_ids = await self.triggers.enqueue([_run(task, event, source) for task in wanted])
        if not run_ids:
            names = ", ".join(t.name for t in wanted)
            what = (f"pull request #{event.pull_request} at {source.commit}"
                    if event.kind == "pull_request" else f"commit {source.commit}")
            return SourceOutcome(reason=f"{what} has a run of {names} already")
        log.info("%s %s of %s: queued %s", event.provider, event.kind, shown,
                 ", ".join(run_ids))
        return SourceOutcome(tuple(run_ids))


def _source_of(event: SourceEvent) -> SourceCommit:
    """What a run of `event` will build, checked as git will be handed it."""
    commit = (event.commit or "").strip().lower()
    branch, target = (_short(b) for b in (event.branch, event.target_branch))
    if event.kind == "push":
        if not branch:
            raise ContextError("a push names no branch")
        source = SourceCommit(commit, branch)
    elif event.kind == "pull_request":
        if event.pull_request is None or not target:
            raise ContextError("a pull request needs its number and its target branch")
        source = SourceCommit(commit, branch, event.pull_request, target, event.fetch_ref)
    else:
        raise ContextError(f"{event.kind!r} is not a push or a pull request")
    if not commit:
        raise ContextError("it names no commit")
    return checked_source(source)


def _short(branch: str | None) -> str | None:
    return branch.removeprefix("refs/heads/") if isinstance(branch, str) else branch


def _repository(task: Task) -> str | None:
    """The repository a task builds from (repo_urls' key); None for a folder or a tarball."""
    try:
        spec = parse_context(task.context)
    except ContextError:
        return None
    return repository_key(spec.location) if spec.kind == "git" else None


def _branches(task: Task, event: SourceEvent) -> set[str]:
    if task.commit_trigger.branches:
        return set(task.commit_trigger.branches)
    ref = parse_context(task.context).ref
    if ref and not COMMIT.match(ref):
        return {ref.removeprefix("refs/heads/")}
    return {event.default_branch} if event.default_branch else set()


def _wanted(event: SourceEvent, tasks: list[Task], where: str) -> tuple[list[Task], str]:
    """The tasks whose triggers take `event`; when none does, why (one line)."""
    if event.kind == "push":
        wanted = [t for t in tasks if t.commit_trigger.enabled]
        return wanted, f"the commit trigger is off for {_names(tasks)} {where}"
    enabled = [t for t in tasks if t.pull_request_trigger.enabled]
    if not enabled:
        return [], f"the pull-request trigger is off for {_names(tasks)} {where}"
    if not event.from_fork:
        return enabled, ""
    wanted = [t for t in enabled if t.pull_request_trigger.allow_forks]
    return wanted, (f"pull request #{event.pull_request} comes from a fork, and forks are "
                    f"not allowed for {_names(enabled)} (pull_request_trigger.allow_forks)")


def _names(tasks: list[Task]) -> str:
    return ", ".join(f"task {t.name}" for t in tasks)


def _run(task: Task, event: SourceEvent, source: SourceCommit) -> RunRequest:
    short = source.commit[:12]
    if event.kind == "pull_request":
        head = f"{source.branch} into " if source.branch else "into "
        return RunRequest(task.name, Trigger.PULL_REQUEST, task.run_type,
                          task.platform_list,
                          f"pull request #{source.pull_request} ({head}{source.target_branch}) "
                          f"at {short}, from {event.provider}", source_commit=source)
    return RunRequest(task.name, Trigger.COMMIT, task.run_type, task.platform_list,
                      f"commit {short} pushed to {source.branch}, from {event.provider}",
                      source_commit=source)
