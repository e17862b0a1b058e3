"""Polls git remotes for the heads of the branches tasks build, for commit triggers that no
webhook reaches.

One `git ls-remote` per remote, however many tasks build from it, each remote on its own
jittered schedule and backing off while it fails. A branch head that moved since the last poll
is one SourceEvent for the sink (triggers/commits.py matches it to tasks and queues their
runs). Heads are stored, so a head that moved while the daemon was down is a run at the first
poll after the start; the first sight of a branch only records it.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Protocol

from basewatch.builder.contexts.fetch import RemoteHeads
from basewatch.context_spec import COMMIT, display_url, parse_context, without_credentials
from basewatch.errors import BasewatchError
from basewatch.metrics import Metrics
from basewatch.store.protocols import GitHeadStore
from basewatch.tasks import Task
from basewatch.triggers.source_events import SourceEvent, SourceEventSink
from basewatch.watcher.schedule import backed_off, first_delay, next_delay

log = logging.getLogger(__name__)

# Re-read the tasks this often even without refresh(), as a safety net.
RELOAD_SECONDS = 30.0
# A daemon that is not the leader asks this often whether it has become it, unless
# leadership_changed() wakes it sooner.
LEADERSHIP_CHECK_SECONDS = 1.0


class HeadLister(Protocol):
    """`git ls-remote` under the daemon's rules for fetches (Checkouts.list_heads)."""

    async def list_heads(self, remote: str, branches: Collection[str], tags: Collection[str],
                         contexts: Collection[str]) -> RemoteHeads: ...


@dataclass(frozen=True)
class Follower:
    """A task with a commit trigger, as the poller sees it: which branches of its remote it
    follows."""

    task: str
    context: str
    branches: tuple[str, ...] = ()  # named by its commit trigger: each must exist
    ref: str | None = None  # else its context's #ref, if that may name a branch


@dataclass(frozen=True)
class RemotePlan:
    """What one remote is asked for: the branches its followers name, and the tags their
    context refs may be instead (a tag context follows the default branch)."""

    remote: str
    followers: tuple[Follower, ...]

    @property
    def branches(self) -> list[str]:
        named = {b for f in self.followers for b in f.branches}
        named |= {f.ref for f in self.followers if f.ref is not None}
        return sorted(named)

    @property
    def tags(self) -> list[str]:
        return sorted({f.ref for f in self.followers if f.ref is not None})

    @property
    def contexts(self) -> list[str]:
        return sorted({f.context for f in self.followers})


def remote_plans(tasks: Collection[Task]) -> dict[str, RemotePlan]:
    """The remotes to poll, by URL: those of the tasks with a git context and an enabled
    commit trigger."""
    followers: dict[str, list[Follower]] = {}
    for task in tasks:
        if not task.commit_trigger.enabled:
            continue
        try:
            spec = parse_context(task.context)
        except BasewatchError:
            continue  # stored by an older version; its runs say what is wrong
        if spec.kind != "git":
            continue
        ref = _branch_name(spec.ref) if spec.ref and not COMMIT.match(spec.ref) else None
        branches = tuple(_branch_name(branch) for branch in task.commit_trigger.branches)
        followers.setdefault(spec.location, []).append(
            Follower(task.name, task.context, branches, None if branches else ref))
    return {remote: RemotePlan(remote, tuple(found)) for remote, found in followers.items()}


def _branch_name(ref: str) -> str:
    return ref.removeprefix("refs/heads/")  # a branch named in full, as git also takes it


def followed_branches(plan: RemotePlan, listed: RemoteHeads) -> tuple[set[str], list[str]]:
    """The branches of `listed` the plan's followers follow, and what they name that the
    remote does not have."""
    followed: set[str] = set()
    problems: list[str] = []
    for follower in plan.followers:
        if follower.branches:
            for branch in follower.branches:
                if branch in listed.heads:
                    followed.add(branch)
                else:
                    problems.append(f"no branch {branch!r} (task {follower.task}'s "
                                    "commit_trigger.branches)")
            continue
        if follower.ref is not None:
            if follower.ref in listed.heads:
                followed.add(follower.ref)
                continue
            if follower.ref not in listed.tags:
                problems.append(f"no branch or tag {follower.ref!r} (task {follower.task}'s "
                                "context)")
                continue
        if listed.default_branch is None:
            problems.append(f"no default branch (HEAD), which task {follower.task} follows")
        else:
            followed.add(listed.default_branch)
    return followed, problems


@dataclass
class PollStats:
    polled: int = 0
    changed: int = 0
    errors: int = 0


class GitPoller:
    """Polls each remote of `plans(tasks)` every `interval` seconds (jittered, backing off
    while it fails), at most `concurrency` at once; with several daemons on one database, on
    the leader only (`is_leader()`), which reads the heads the last leader stored as it takes
    over."""

    def __init__(self, tasks: Callable[[], Awaitable[list[Task]]], heads: GitHeadStore,
                 lister: HeadLister, sink: SourceEventSink, interval: float, *,
                 concurrency: int = 16, jitter: float = 0.1, metrics: Metrics | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 is_leader: Callable[[], bool] = lambda: True):
        self.tasks = tasks
        self.is_leader = is_leader
        self.heads = heads
        self.lister = lister
        self.sink = sink
        self.interval = interval
        self.jitter = jitter
        self.metrics = metrics
        self.clock = clock
        self._limit = asyncio.Semaphore(concurrency)
        self._plans: dict[str, RemotePlan] = {}
        self._known: dict[str, dict[str, str]] | None = None  # read from the store once
        self._heads_stale = False  # another daemon polled meanwhile: read them again
        self._next_due: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._problems: dict[str, str] = {}
        self._reload = asyncio.Event()
        self._wake = asyncio.Event()
        self._polls: set[asyncio.Task] = set()
        self._loaded_at = float("-inf")

    def refresh(self) -> None:
        """The tasks changed: re-read which remotes and branches to poll now."""
        self._reload.set()
        self._wake.set()

    def leadership_changed(self) -> None:
        """This daemon became the leader or stopped being it: the schedule asks is_leader()
        now rather than within LEADERSHIP_CHECK_SECONDS."""
        self._wake.set()

    @property
    def remotes(self) -> list[str]:
        return sorted(self._plans)

    def problems(self) -> dict[str, str]:
        """Each remote whose last poll failed or found a branch missing, shown without
        credentials, and why (for /healthz)."""
        return {display_url(remote): problem for remote, problem in sorted(self._problems.items())}

    def due_at(self, remote: str) -> float | None:
        return self._next_due.get(remote)

    async def _load(self) -> None:
        before = set(self._plans)
        self._plans = remote_plans(await self.tasks())
        self._loaded_at = self.clock()
        if self._known is None or self._heads_stale:
            # The first load, or taking over as the leader: what the store kept across the
            # restart, or what the last leader saw.
            self._known = await self.heads.heads()
            self._heads_stale = False
        elif set(self._plans) == before:
            return
        for remote in set(self._known) - set(self._plans):
            del self._known[remote]
        for remote in set(self._problems) - set(self._plans):
            del self._problems[remote]
        # A remote no task polls any more starts afresh if one does again: no stale head.
        await self.heads.keep_remotes(self._plans)

    # --- one poll ---------------------------------------------------------------------

    async def poll(self, remote: str) -> str:
        """Poll one remote now: `ok`, `changed` (an event was handed on) or `error`."""
        plan = self._plans.get(remote)
        if plan is None:
            return "ok"
        async with self._limit:
            try:
                listed = await self.lister.list_heads(remote, plan.branches, plan.tags,
                                                      plan.contexts)
            except BasewatchError as exc:
                return self._failed(remote, str(exc))
        self._failures.pop(remote, None)
        followed, missing = followed_branches(plan, listed)
        self._report(remote, missing)
        result = "changed" if await self._compare(remote, listed, followed) else "ok"
        self._count(result)
        return result

    def _failed(self, remote: str, error: str) -> str:
        self._failures[remote] = self._failures.get(remote, 0) + 1
        self._problems[remote] = error
        log.warning("git poll: %s (failure %d, polled again in about %.0fs)", error,
                    self._failures[remote], backed_off(self.interval, self._failures[remote]))
        self._count("error")
        return "error"

    def _report(self, remote: str, missing: list[str]) -> None:
        if not missing:
            self._problems.pop(remote, None)
            return
        problem = f"{display_url(remote)} has {'; '.join(missing)}"
        if self._problems.get(remote) != problem:  # said once, not at every poll
            log.warning("git poll: %s", problem)
        self._problems[remote] = problem

    async def _compare(self, remote: str, listed: RemoteHeads, followed: set[str]) -> int:
        """Hand on the heads that moved; store what was seen. How many events were sent."""
        assert self._known is not None
        known = self._known.get(remote, {})
        seen = dict(known)
        sent = 0
        for branch in sorted(followed):
            sha = listed.heads[branch]
            before = known.get(branch)
            if before is not None and before != sha:
                event = SourceEvent(provider="poll", kind="push",
                                    repository_urls=(without_credentials(remote),),
                                    branch=branch, commit=sha,
                                    default_branch=listed.default_branch)
                log.info("git poll: %s %s moved: %s -> %s", display_url(remote), branch,
                         before, sha)
                try:
                    outcome = await self.sink.on_event(event)
                except Exception:
                    # Not recorded: the next poll hands it on again (the sink de-duplicates).
                    log.exception("git poll: the commit %s of %s %s was not taken", sha,
                                  display_url(remote), branch)
                    continue
                if outcome.reason:
                    log.info("git poll: %s %s: %s", display_url(remote), branch, outcome.reason)
                sent += 1
            seen[branch] = sha
        seen = {branch: sha for branch, sha in seen.items() if branch in followed}
        if seen != known and remote in self._plans:  # not a remote dropped meanwhile
            await self.heads.set_heads(remote, seen)
            self._known[remote] = seen
        return sent

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.git_polls.labels(result).inc()

    async def poll_once(self) -> PollStats:
        """Re-read the tasks and poll every remote now, concurrently."""
        await self._load()
        results = await asyncio.gather(*(self.poll(remote) for remote in self._plans))
        return PollStats(polled=len(results), changed=results.count("changed"),
                         errors=results.count("error"))

    # --- the schedule -----------------------------------------------------------------

    async def poll_due(self) -> list[str]:
        """Poll the remotes whose time has come and wait for them; which were polled."""
        started = await self._start_due()
        await asyncio.gather(*(task for _, task in started))
        return [remote for remote, _ in started]

    async def _start_due(self) -> list[tuple[str, asyncio.Task]]:
        now = self.clock()
        if self._reload.is_set() or now - self._loaded_at > RELOAD_SECONDS:
            self._reload.clear()
            await self._load()
            self._reconcile(now)
        started = []
        for remote, when in sorted(self._next_due.items()):
            if when <= now:
                self._next_due[remote] = float("inf")  # in flight; rescheduled when done
                task = asyncio.create_task(self._poll_and_reschedule(remote))
                self._polls.add(task)
                task.add_done_callback(self._polls.discard)
                started.append((remote, task))
        return started

    def _reconcile(self, now: float) -> None:
        for remote in set(self._next_due) - set(self._plans):
            del self._next_due[remote]
            self._failures.pop(remote, None)
        for remote in set(self._plans) - set(self._next_due):
            self._next_due[remote] = now + first_delay(self.interval, self.jitter)

    async def _poll_and_reschedule(self, remote: str) -> None:
        try:
            await self.poll(remote)
        except Exception:
            self._failed(remote, f"{display_url(remote)}: the poll failed unexpectedly")
            log.exception("git poll of %s failed unexpectedly", display_url(remote))
        finally:
            if remote in self._next_due:
                self._next_due[remote] = self.clock() + next_delay(
                    self.interval, self._failures.get(remote, 0), self.jitter)
                self._wake.set()

    def _keep_places(self) -> None:
        """Not the leader: a remote whose time came keeps its place in the schedule, unpolled,
        so a daemon that takes over polls each within one interval, spread out."""
        now = self.clock()
        for remote, when in self._next_due.items():
            if when <= now:
                self._next_due[remote] = now + next_delay(
                    self.interval, self._failures.get(remote, 0), self.jitter)

    async def run(self) -> None:
        """Poll forever, each remote on its own jittered schedule, while this daemon leads."""
        leading = False
        try:
            while True:
                self._wake.clear()
                was_leading, leading = leading, self.is_leader()
                if leading and not was_leading and self._known is not None:
                    self._heads_stale = True
                    self._reload.set()
                if leading:
                    await self._start_due()
                else:
                    self._keep_places()
                pending = [when for when in self._next_due.values() if when != float("inf")]
                delay = max(0.0, min(pending) - self.clock()) if pending else RELOAD_SECONDS
                if not leading:
                    delay = min(delay, LEADERSHIP_CHECK_SECONDS)
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=min(delay, RELOAD_SECONDS))
                except TimeoutError:
                    pass
        finally:
            for poll in self._polls:
                poll.cancel()
            await asyncio.gather(*self._polls, return_exceptions=True)
