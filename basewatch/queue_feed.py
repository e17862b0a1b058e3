"""Runs another daemon queued, handed to this daemon's run queue (several daemons on one
PostgreSQL database): every daemon offers to run every queued run, and the claim
(store.runs.mark_started, FOR UPDATE SKIP LOCKED) decides which one does.

A run is queued by whichever daemon heard its trigger; the others hear of it by the database's
NOTIFY as it commits (`wake`), and by reading the runs queued since the last one seen every
FEED_SECONDS. Sequence numbers are handed out before commit, so a run can commit after a later
one was seen: every RESYNC_SECONDS all queued runs are read again.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Callable

from basewatch.errors import StoreBusyError
from basewatch.store.protocols import RunStore

log = logging.getLogger(__name__)

FEED_SECONDS = 1.0
RESYNC_SECONDS = 10.0


class QueueFeed:
    def __init__(self, runs: RunStore, submit: Callable[[str], None],
                 feed_seconds: float = FEED_SECONDS, resync_seconds: float = RESYNC_SECONDS):
        self.runs = runs
        self.submit = submit  # RunQueue.submit through the daemon: it ignores a run it holds
        self.feed_seconds = feed_seconds
        self.resync_seconds = resync_seconds
        self._wake = asyncio.Event()
        self._last_seq = 0

    def wake(self) -> None:
        """Runs were queued (a NOTIFY): read them now."""
        self._wake.set()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        resync_at = 0.0
        while True:
            try:
                since = 0 if loop.time() >= resync_at else self._last_seq
                if since == 0:
                    resync_at = loop.time() + self.resync_seconds
                await self._feed(since)
            except StoreBusyError as exc:
                log.warning("cannot read the queued runs (%s); trying again", exc)
            try:
                await asyncio.wait_for(self._wake.wait(), self.feed_seconds)
            except TimeoutError:
                pass
            self._wake.clear()

    async def _feed(self, since: int) -> None:
        for seq, run_id in await self.runs.queued_since(since):
            self._last_seq = max(self._last_seq, seq)
            self.submit(run_id)
