"""What a git server says happened, as every source of commit and pull-request runs reports it:
a webhook of any provider, or a poll of a remote. Plain data; matching an event to tasks and
queueing its runs is `triggers/commits.py`'s job."""
from __future__ import annotations

from dataclasses import dataclass
from collections.abc import Collection
from typing import Literal, Protocol

EventKind = Literal["push", "pull_request", "ping"]


@dataclass(frozen=True)
class SourceEvent:
    provider: str  # github, gitlab, azure-devops, gitea, forgejo, poll
    kind: EventKind
    # Every URL the event names the repository by (clone, SSH, web), as sent; matched to a
    # task's context after normalisation (triggers/repo_urls.py).
    repository_urls: tuple[str, ...] = ()
    branch: str | None = None  # a push: the branch pushed; a pull request: its head branch
    commit: str | None = None  # the full SHA to build: the pushed head, or the PR's head
    target_branch: str | None = None  # a pull request: the branch it would merge into
    pull_request: int | None = None  # its number (GitLab's iid)
    # A pull request's head as the target repository serves it (refs/pull/2/head,
    # refs/merge-requests/1/head): fetched by that ref, since a fork's branch is not in it.
    fetch_ref: str | None = None
    from_fork: bool = False
    # The repository's default branch, when the event says (a task with no branch named
    # follows it); a poll asks the remote (`git ls-remote --symref`).
    default_branch: str | None = None
    delivery: str | None = None  # the provider's delivery id, when it sends one
    # Set when the event asks for no run whatever the tasks say (a tag push, a deleted branch,
    # a pull request closed): the reason, for the response and the metrics.
    ignored: str | None = None


@dataclass(frozen=True)
class SourceOutcome:
    """What an event led to: the runs queued, or why none was."""

    run_ids: tuple[str, ...] = ()
    reason: str = ""


class SourceEventSink(Protocol):
    """Where webhook receivers and the git poller hand what they saw (triggers/commits.py)."""

    async def on_event(self, event: SourceEvent, tasks: Collection[str] | None = None
                       ) -> SourceOutcome:
        """Queue a run for each task that wants `event` (only among `tasks`, when given: the
        tasks whose webhook secret authenticated the delivery); the same commit is never
        queued twice for one task."""
