"""Triggers: the one way runs are created.

Every source of runs builds `RunRequest`s, which carry what triggered them as data (the kind,
and for a base-image run the reference, platform and digest that fired it), and hands them to
`Triggers.enqueue`: the runs are written in one transaction (with the new digest, for a base
change), then handed to the run queue. A source is a module here building its requests:
`base_image` (a watched base moved: one run per dependent task), `manual`
(a task run by hand, a quick build). A new source (a commit webhook, a git poll, a timer) is one
more module beside them.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Protocol, Sequence

from basewatch.models import RunRequest


@dataclass(frozen=True)
class NewDigest:
    """A digest the watcher saw, recorded in the same transaction as the runs it fires."""

    base: str
    platform: str
    digest: str
    index_digest: str | None = None


@dataclass(frozen=True)
class TimerFire:
    """A timer's scheduled fire, recorded in the same transaction as the run it queues."""

    task: str
    timer: str
    scheduled: datetime


class RunQueueing(Protocol):
    """What the seam needs of the run store: queue runs in one transaction, or record a new
    digest and queue its runs in one."""

    async def queue(self, requests: list[RunRequest]) -> list[str]: ...

    async def record_change_and_queue(self, base: str, platform: str, digest: str,
                                      index_digest: str | None,
                                      requests: list[RunRequest]) -> list[str]: ...

    async def record_fire_and_queue(self, task: str, timer: str, scheduled: datetime,
                                    requests: list[RunRequest]) -> list[str]: ...


class Triggers:
    def __init__(self, runs: RunQueueing, submit: Callable[[str, float], None]):
        self.runs = runs
        self.submit = submit  # the run queue takes a run (after `delay` seconds)

    async def enqueue(self, requests: Sequence[RunRequest], *, delay: float = 0.0,
                      new_digest: NewDigest | None = None,
                      timer_fire: TimerFire | None = None) -> list[str]:
        """Queue `requests` durably, in one transaction (with `new_digest` recorded, when a
        base moved; with `timer_fire`, when a timer fired), then submit each run; the new runs'
        ids, in order. A base change does not queue a second run for a task that has one queued
        for the same trigger, nor a timer's fire for a task with a run queued that serves it; a
        commit or pull request (a request's `source_commit`) a task has a run of already is
        left out, whatever that run's state: one run per (task, commit)."""
        if timer_fire is not None:
            run_ids = await self.runs.record_fire_and_queue(
                timer_fire.task, timer_fire.timer, timer_fire.scheduled, list(requests))
        elif new_digest is None:
            run_ids = await self.runs.queue(list(requests))
        else:
            run_ids = await self.runs.record_change_and_queue(
                new_digest.base, new_digest.platform, new_digest.digest,
                new_digest.index_digest, list(requests))
        for run_id in run_ids:
            self.submit(run_id, delay)
        return run_ids


__all__ = ["NewDigest", "RunRequest", "TimerFire", "Triggers"]
