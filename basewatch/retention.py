"""Run history retention: finished runs and their logs older than the retention are purged.

Archived runs are kept, and so are runs still queued or in progress, whatever their age. Log
files whose run is no longer in the database (a crash between the commit and the unlink, or a
database restored from a backup) are removed once their mtime is older than the retention.

With several daemons on one database, the leader purges the runs; every daemon removes the
logs in its own state_dir whose runs are gone (`purge_stray_logs`), so none grows unbounded.
"""
from __future__ import annotations

import asyncio
import logging
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from apscheduler.events import EVENT_SCHEDULER_SHUTDOWN
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from basewatch.builder.run_log import log_path
from basewatch.models import RUN_ID_PREFIX
from basewatch.store.protocols import RunStore

log = logging.getLogger(__name__)

# Only files named like a run's log are ever removed; anything else in the folder is not ours.
_RUN_LOG_NAME = re.compile(rf"{RUN_ID_PREFIX}\d+\.log")
# The first purge waits this long after start (or one interval, if that is shorter), so it does
# not compete with the daemon's own start-up work.
FIRST_PURGE_DELAY = timedelta(seconds=30)


@dataclass(frozen=True)
class PurgeResult:
    runs: int  # rows deleted
    logs: int  # log files removed, of those runs and stray ones


async def purge(runs: RunStore, logs_dir: Path, older_than: timedelta,
                now: datetime | None = None) -> PurgeResult:
    """Delete finished, unarchived runs older than `older_than`, then their logs and stray logs.

    A run's age is taken from when it finished (when it was queued, if it has no finish time).
    The rows go in one transaction; the files are removed after it commits, so a crash in
    between leaves stray logs, which the next purge removes.
    """
    cutoff = (now or datetime.now(timezone.utc)) - older_than
    old_logs = await asyncio.to_thread(_logs_older_than, logs_dir, cutoff)
    deleted_ids, known = await runs.purge_finished(cutoff, [path.stem for path in old_logs])
    doomed = [log_path(logs_dir, run_id) for run_id in sorted(deleted_ids)]
    skip = known | deleted_ids  # logs of runs still there, and those already listed
    doomed += [path for path in old_logs if path.stem not in skip]
    removed = await asyncio.to_thread(_remove_files, doomed)
    return PurgeResult(runs=len(deleted_ids), logs=removed)


async def purge_stray_logs(runs: RunStore, logs_dir: Path, older_than: timedelta,
                           now: datetime | None = None) -> PurgeResult:
    """Remove the logs older than `older_than` whose run is no longer in the database; no
    run is deleted (another daemon, the leader, purges them)."""
    cutoff = (now or datetime.now(timezone.utc)) - older_than
    old_logs = await asyncio.to_thread(_logs_older_than, logs_dir, cutoff)
    known = await runs.existing([path.stem for path in old_logs])
    removed = await asyncio.to_thread(
        _remove_files, [path for path in old_logs if path.stem not in known])
    return PurgeResult(runs=0, logs=removed)


def _logs_older_than(logs_dir: Path, cutoff: datetime) -> list[Path]:
    limit = cutoff.timestamp()
    found = []
    try:
        entries = list(logs_dir.glob("*.log"))
    except OSError:
        return []
    for path in entries:
        if not _RUN_LOG_NAME.fullmatch(path.name):
            continue
        try:
            if path.is_file() and path.stat().st_mtime < limit:
                found.append(path)
        except OSError:  # removed meanwhile
            continue
    return found


def _remove_files(paths: list[Path]) -> int:
    removed = 0
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("retention: cannot remove %s: %s", path, exc.strerror)
            continue
        removed += 1
    return removed


class RetentionSchedule:
    """Runs purge() once a day (and once shortly after start) on APScheduler's AsyncIOScheduler;
    on a daemon that is not the leader (`is_leader()`), purge_stray_logs() instead."""

    def __init__(self, runs: RunStore, logs_dir: Path, retention: timedelta,
                 interval: timedelta = timedelta(days=1), *,
                 first_purge_delay: timedelta = FIRST_PURGE_DELAY,
                 is_leader: Callable[[], bool] = lambda: True):
        self.runs = runs
        self.is_leader = is_leader
        self.logs_dir = logs_dir
        self.retention = retention
        self.interval = interval
        self.first_purge_delay = min(first_purge_delay, interval)
        self.last_result: PurgeResult | None = None
        self.purges = 0  # purges run so far, failed ones included
        self._scheduler: AsyncIOScheduler | None = None
        self._in_flight: set[asyncio.Task] = set()

    def start(self) -> None:
        """Start on the running loop; the first purge comes after `first_purge_delay`."""
        if self._scheduler is not None:
            raise RuntimeError("the retention schedule is already started")
        scheduler = AsyncIOScheduler(timezone=timezone.utc)
        first = datetime.now(timezone.utc) + self.first_purge_delay
        # coalesce and no misfire limit: a loop that was busy (or a suspended machine) gives one
        # late purge, never a skipped or a doubled one.
        scheduler.add_job(self._purge_now, IntervalTrigger(
            seconds=self.interval.total_seconds(), start_date=first, timezone=timezone.utc),
            id="retention", name="retention purge", coalesce=True, max_instances=1,
            misfire_grace_time=None)
        scheduler.start()
        self._scheduler = scheduler

    async def stop(self) -> None:
        """Stop scheduling; a purge in progress is let finish (it is one short transaction)."""
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is None:
            return
        scheduler.pause()  # no new purge from here on
        # A purge submitted just before the pause registers itself on its first step.
        await asyncio.sleep(0)
        if self._in_flight:
            await asyncio.wait(set(self._in_flight))
        # AsyncIOScheduler.shutdown() is carried out by a loop callback; wait for it, so its
        # timer is cancelled before the loop may close.
        shut_down = asyncio.get_running_loop().create_future()
        scheduler.add_listener(lambda _event: shut_down.done() or shut_down.set_result(None),
                               EVENT_SCHEDULER_SHUTDOWN)
        scheduler.shutdown(wait=False)
        await shut_down

    async def _purge_now(self) -> None:
        task = asyncio.current_task()
        self._in_flight.add(task)
        try:
            if self.is_leader():
                result = await purge(self.runs, self.logs_dir, self.retention)
            else:
                result = await purge_stray_logs(self.runs, self.logs_dir, self.retention)
        except Exception:  # logged; the next day's purge tries again
            log.exception("retention: purge failed")
        else:
            self.last_result = result
            if result.runs or result.logs:
                log.info("retention: purged %d runs and %d log files older than %s",
                         result.runs, result.logs, _describe(self.retention))
        finally:
            self.purges += 1
            self._in_flight.discard(task)


def _describe(period: timedelta) -> str:
    if period.total_seconds() % 86400 == 0:
        return f"{period.days} days"
    return f"{period.total_seconds():g}s"
