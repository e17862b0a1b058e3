"""Runs' logs copied into the database as they are written (PostgreSQL: several daemons share
it), so `task logs`, the API and the dashboard of any daemon show a run's log, also while it
goes on.

A build's output is kept in memory and written at most every FLUSH_SECONDS, every running run's
new bytes in one transaction, by one task on the loop: the engine's threads only append to a
buffer, and nothing waits for the database but the run's end, which sends what is left before
the run is recorded as finished (so a reader that sees it finished has read it all). A database
that refuses is tried again, backing off; what waits meanwhile is bounded by the run's log cap
(RunLog stops taking output past `max_log_bytes`). The copy never fails a run: at worst, its
end is missing from the database and the daemon's log says so. The log file stays the
original: this daemon reads its own runs' logs from it.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Callable

from basewatch.errors import StoreBusyError
from basewatch.store import RunLogStore

log = logging.getLogger(__name__)

# At most one write of the logs a period: a few rows a second whatever the builds print.
FLUSH_SECONDS = 0.5
# While the database refuses, the writes are tried again this far apart at most.
MAX_RETRY_SECONDS = 10.0
# How long a run's end waits for the rest of its log to be in the database.
FINAL_FLUSH_SECONDS = 30.0
# Where a run's copy stops: positions are the schema's 32-bit integers.
MAX_POSITION = 2 ** 31 - 1


class _Copy:
    """One run's bytes not yet in the database, and where they go."""

    def __init__(self, run_id: str):
        self.run_id = run_id
        self.position = 0  # how much of the log the database has
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.ending = False
        self.ended = asyncio.Event()
        self.lost = False  # the database refused it for good: nothing more is copied


class RunLogCopies:
    """Copies each running run's log into `run_logs`: `open(run_id)` gives the sink its RunLog
    feeds (from any thread), `close(run_id)` sends the rest."""

    def __init__(self, run_logs: RunLogStore, flush_seconds: float = FLUSH_SECONDS,
                 final_flush_seconds: float = FINAL_FLUSH_SECONDS):
        self.run_logs = run_logs
        self.flush_seconds = flush_seconds
        self.final_flush_seconds = final_flush_seconds
        self._copies: dict[str, _Copy] = {}
        self._lock = threading.Lock()  # the engine's threads append, the loop takes
        self._wake = asyncio.Event()  # bytes are waiting (or a run ended)
        self._hurry = asyncio.Event()  # a run ended: no waiting out the period
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._failures = 0

    def open(self, run_id: str) -> Callable[[bytes], None]:
        """Start copying a run's log; the sink to give each written piece (any thread)."""
        self._loop = asyncio.get_running_loop()
        copy = _Copy(run_id)
        with self._lock:
            self._copies[run_id] = copy
        # The writer runs while some run is copied, and ends with the last.
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write_while_open(), name="run log copies")
        return lambda data: self._add(copy, data)

    def _add(self, copy: _Copy, data: bytes) -> None:
        with self._lock:
            if copy.ending or copy.lost:
                return
            room = MAX_POSITION - copy.position - copy.pending_bytes
            if len(data) > room:
                data = data[:max(room, 0)]
                copy.lost = True
                log.warning("run %s: its log is past %d bytes: the rest is not copied to the "
                            "database", copy.run_id, MAX_POSITION)
            first = not copy.pending
            copy.pending.append(data)
            copy.pending_bytes += len(data)
        if first:  # one wake-up a flush, not one a line
            self._loop.call_soon_threadsafe(self._wake.set)

    async def close(self, run_id: str) -> None:
        """Send what is left of the run's log (waiting at most `final_flush_seconds`)."""
        copy = self._copies.get(run_id)
        if copy is None:
            return
        with self._lock:
            copy.ending = True
        self._wake.set()
        self._hurry.set()
        try:
            async with asyncio.timeout(self.final_flush_seconds):
                await copy.ended.wait()
        except TimeoutError:
            with self._lock:
                self._copies.pop(run_id, None)
                missing = copy.pending_bytes
            log.warning("run %s: the last %d bytes of its log could not be copied to the "
                        "database: other daemons show it cut there", run_id, missing)

    async def _write_while_open(self) -> None:
        while self._copies:
            await self._wake.wait()
            self._wake.clear()
            await self._write()
            delay = min(self.flush_seconds * 2 ** self._failures, MAX_RETRY_SECONDS) \
                if self._failures else self.flush_seconds
            if self._copies:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._hurry.wait(), delay)
                self._hurry.clear()

    async def _write(self) -> None:
        """Every run's waiting bytes in one transaction; put back if the database refuses."""
        with self._lock:
            taken = [(copy, b"".join(copy.pending)) for copy in self._copies.values()
                     if copy.pending]
            for copy, _ in taken:
                copy.pending, copy.pending_bytes = [], 0
        if taken:
            try:
                await self.run_logs.append([(copy.run_id, copy.position, data)
                                            for copy, data in taken])
            except StoreBusyError as exc:
                self._put_back(taken)
                if not self._failures:
                    log.warning("cannot copy runs' logs to the database (%s); trying again",
                                exc)
                self._failures += 1
            except Exception:  # a bug, or a row the database will never take: drop it
                log.exception("cannot copy the logs of runs %s to the database: other daemons "
                              "show them cut here", ", ".join(c.run_id for c, _ in taken))
                with self._lock:
                    for copy, _ in taken:
                        copy.lost, copy.pending, copy.pending_bytes = True, [], 0
            else:
                with self._lock:
                    for copy, data in taken:
                        copy.position += len(data)
                if self._failures:
                    log.info("runs' logs are copied to the database again")
                self._failures = 0
        with self._lock:
            for run_id, copy in list(self._copies.items()):
                if copy.ending and not copy.pending:
                    del self._copies[run_id]
                    copy.ended.set()

    def _put_back(self, taken: list[tuple[_Copy, bytes]]) -> None:
        with self._lock:
            for copy, data in taken:
                copy.pending.insert(0, data)
                copy.pending_bytes += len(data)
        self._wake.set()

    async def stop(self) -> None:
        """The daemon stops (its runs have ended): a write still being retried gives up."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
