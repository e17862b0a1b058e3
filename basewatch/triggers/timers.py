"""Timer trigger: every enabled timer of every task fires on its own, on its five-field cron
schedule in UTC with Sunday as 0 (basewatch/cron.py), and queues a run through the seam.

Where each timer stands is kept in the store (the last scheduled fire handled), so a fire is
recorded with its run in one transaction (a crash loses neither and repeats neither); fires
missed while the daemon was down give one catch-up run as it starts, not one per miss; and a
timer that is new, enabled again or given a new schedule starts from now, not from the past.
A fire while the task has a run queued adds none: the store decides, in that transaction.
With several daemons on one database, the leader (`is_leader()`) fires timers and the others
wait; the store records each fire once, so two daemons firing the same one queue one run.

The clock and the sleep are injected, so tests move time instead of waiting for it.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta, timezone
from typing import Awaitable, Callable

from basewatch.cron import CronSchedule
from dataclasses import replace

from basewatch.errors import BasewatchError, ConflictError, NotFoundError
from basewatch.models import RunRequest, TimerMark, Trigger
from basewatch.store import TaskStore, TimerStore
from basewatch.tasks import Task, Timer
from basewatch.triggers import TimerFire, Triggers

log = logging.getLogger(__name__)

# The tasks and the clock are read again at least this often, whatever is due: a host that was
# suspended, or a clock that was set, is noticed within a minute.
MAX_SLEEP_SECONDS = 60.0
RETRY_SECONDS = 5.0  # after a store that refused (locked, full)
MAX_COUNTED_MISSES = 1000  # a catch-up run's reason counts the fires it stands for up to here
# A daemon that is not the leader asks this often whether it has become it, unless
# leadership_changed() wakes it sooner.
LEADERSHIP_CHECK_SECONDS = 1.0


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def timer_run(task: Task, timer: Timer, scheduled: datetime, missed: int = 1) -> RunRequest:
    """A run of `task` because `timer` fired for `scheduled`; `missed` > 1 for the one run
    that catches up on the fires missed while the daemon was down."""
    reason = f"timer {timer.name} ({timer.schedule}) for {scheduled:%Y-%m-%d %H:%M} UTC"
    if missed > 1:
        count = f"{MAX_COUNTED_MISSES}+" if missed > MAX_COUNTED_MISSES else str(missed)
        reason += f", catching up on {count} missed fires"
    return RunRequest(task.name, Trigger.TIMER, task.run_type, task.platform_list, reason)


def next_fire(timer: Timer, now: datetime) -> datetime | None:
    """When `timer` fires next (UTC); None when it is disabled or never does."""
    if not timer.enabled:
        return None
    try:
        return CronSchedule(timer.schedule).next_after(now)
    except ValueError:  # a schedule naming no date that exists (refused at the edges)
        return None


def with_timer(task: Task, timer: Timer) -> Task:
    """`task` with `timer` added; ConflictError when it has one by that name."""
    if any(t.name == timer.name for t in task.timers):
        raise ConflictError(f"task {task.name} has a timer named {timer.name} already: update "
                            "it, or give the new one another name")
    return replace(task, timers=(*task.timers, timer))


def with_timer_changed(task: Task, timer: Timer) -> Task:
    """`task` with its timer of that name replaced by `timer`; NotFoundError without one."""
    find_timer(task, timer.name)
    return replace(task, timers=tuple(timer if t.name == timer.name else t
                                      for t in task.timers))


def without_timer(task: Task, name: str) -> Task:
    """`task` without its timer `name`; NotFoundError without one."""
    find_timer(task, name)
    return replace(task, timers=tuple(t for t in task.timers if t.name != name))


def find_timer(task: Task, name: str) -> Timer:
    for timer in task.timers:
        if timer.name == name:
            return timer
    known = ", ".join(t.name for t in task.timers) or "none"
    raise NotFoundError(f"task {task.name} has no timer named {name} (its timers: {known})")


def _fires_between(schedule: CronSchedule, after: datetime, until: datetime) -> int:
    """How many fires fall in (after, until], counted up to just past MAX_COUNTED_MISSES."""
    count, moment = 0, after
    while count <= MAX_COUNTED_MISSES:
        moment = schedule.next_after(moment)
        if moment > until:
            break
        count += 1
    return count


class TimerScheduler:
    def __init__(self, tasks: TaskStore, marks: TimerStore, triggers: Triggers, *,
                 clock: Callable[[], datetime] = utc_now,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
                 is_leader: Callable[[], bool] = lambda: True,
                 reread_tasks: timedelta | None = None):
        self.tasks = tasks
        self.is_leader = is_leader
        # With several daemons, a task changed through another daemon's API is never refresh()ed
        # here: read the tasks again at least this often (checked at each tick, so within a
        # minute more at most). None: on refresh() only, as one daemon needs.
        self.reread_tasks = reread_tasks
        self.marks = marks
        self.triggers = triggers
        self.clock = clock
        self.sleep = sleep
        self._changed = asyncio.Event()
        # The tasks as last read: read again after refresh() only, since every change to them
        # comes through the registrar, which says so (a refused stored task is not logged
        # about every minute).
        self._tasks: list[Task] = []
        self._changes = 1  # refresh() counts up; the tasks were read at _read_at
        self._read_at = 0
        self._read_when: datetime | None = None  # by the clock
        self._refused: set[tuple[str, str, str]] = set()  # said once, not every minute

    def refresh(self) -> None:
        """The tasks changed (created, updated, deleted, the config reloaded): read them now."""
        self._changes += 1
        self._changed.set()

    def leadership_changed(self) -> None:
        """This daemon became the leader or stopped being it: asked now rather than within
        LEADERSHIP_CHECK_SECONDS."""
        self._changed.set()

    async def run(self) -> None:
        """Fire timers as they fall due, while this daemon leads, until cancelled."""
        leading = False
        while True:
            self._changed.clear()
            was_leading, leading = leading, self.is_leader()
            if not leading:
                await self._wait(LEADERSHIP_CHECK_SECONDS)
                continue
            if not was_leading:
                # Tasks changed through another daemon never said so here: read them afresh.
                self._changes += 1
            try:
                wake = await self.tick()
            except BasewatchError as exc:  # the store refused for now
                log.warning("timers: %s; trying again in %.0fs", exc, RETRY_SECONDS)
                delay = RETRY_SECONDS
            except Exception:
                log.exception("timers: unexpected error; trying again in %.0fs", RETRY_SECONDS)
                delay = RETRY_SECONDS
            else:
                delay = MAX_SLEEP_SECONDS if wake is None else \
                    min(max((wake - self.clock()).total_seconds(), 0.0), MAX_SLEEP_SECONDS)
            await self._wait(delay)

    async def _wait(self, seconds: float) -> None:
        """Sleep `seconds`, or less if the tasks change meanwhile."""
        sleeping = asyncio.ensure_future(self.sleep(seconds))
        changed = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait({sleeping, changed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (sleeping, changed):
                waiter.cancel()
            await asyncio.gather(sleeping, changed, return_exceptions=True)

    async def tick(self) -> datetime | None:
        """One pass: fire each enabled timer that is due (once, however many fires it
        missed), count new timers from now, forget timers removed or disabled. When the next
        timer falls due; None when no timer is enabled."""
        now = self.clock()
        if (self.reread_tasks is not None and self._read_when is not None
                and now - self._read_when >= self.reread_tasks):
            self._changes += 1
        if self._read_at != self._changes:
            changes = self._changes  # a change during the read is read at the next tick
            self._read_when = now
            self._tasks = await self.tasks.all()
            self._read_at = changes
        timers = {(task.name, timer.name): (task, timer) for task in self._tasks
                  for timer in task.timers if timer.enabled}
        marks = {(mark.task, mark.timer): mark for mark in await self.marks.marks()}
        if gone := [key for key in marks if key not in timers]:
            await self.marks.forget(gone)
        wake: datetime | None = None
        for key, (task, timer) in timers.items():
            schedule = CronSchedule(timer.schedule)
            try:
                due = await self._fire_if_due(task, timer, schedule, marks.get(key), now)
            except ValueError as exc:  # no date that exists (refused at the edges)
                if (task.name, timer.name, timer.schedule) not in self._refused:
                    self._refused.add((task.name, timer.name, timer.schedule))
                    log.warning("task %s: timer %s (%s) never fires: %s", task.name,
                                timer.name, timer.schedule, exc)
                continue
            wake = due if wake is None else min(wake, due)
        return wake

    async def _fire_if_due(self, task: Task, timer: Timer, schedule: CronSchedule,
                           mark: TimerMark | None, now: datetime) -> datetime:
        """Fire `timer` if a scheduled time has passed since its mark; its next fire."""
        latest = schedule.last_at_or_before(now)
        if mark is None or mark.schedule != schedule.expression:
            # New, enabled again, or on a new schedule: counted from now, nothing for the past.
            await self.marks.start(task.name, timer.name, schedule.expression, latest)
            return schedule.next_after(latest)
        if latest <= mark.last_scheduled:
            return schedule.next_after(max(now, mark.last_scheduled))
        missed = _fires_between(schedule, mark.last_scheduled, latest)
        run_ids = await self.triggers.enqueue(
            [timer_run(task, timer, latest, missed)],
            timer_fire=TimerFire(task.name, timer.name, latest))
        if run_ids:
            log.info("task %s: timer %s fired for %s%s: run %s queued", task.name, timer.name,
                     latest.isoformat(), f" ({missed} missed fires, one run)" if missed > 1
                     else "", run_ids[0])
        else:
            log.info("task %s: timer %s fired for %s: a run is queued already, which serves it",
                     task.name, timer.name, latest.isoformat())
        return schedule.next_after(latest)
