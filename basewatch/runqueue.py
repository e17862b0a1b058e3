"""Runs waiting for a builder, executed at most `concurrency` at a time.

Queued runs are persisted by the store; this queue only orders the ones this process will run.
The executor may answer "not yet, in N seconds" (a settle window, an upstream build in
progress): the run then waits outside the queue, holding no worker.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

log = logging.getLogger(__name__)

# execute(run_id) -> None when the run was handled, or seconds to wait before asking again.
# It raises only when the run could not start (the database locked, the disk full): the run is
# still Queued, and is tried again after RETRY_AFTER_ERROR_SECONDS, twice that the next time...
Execute = Callable[[str], Awaitable[float | None]]
RETRY_AFTER_ERROR_SECONDS = 5.0
MAX_RETRY_AFTER_ERROR_SECONDS = 300.0


class RunQueue:
    def __init__(self, execute: Execute, concurrency: int):
        self._execute = execute
        self._concurrency = concurrency
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._workers: list[asyncio.Task] = []
        self._submitted: set[str] = set()
        self._waiting: dict[str, asyncio.TimerHandle] = {}
        self._failures: dict[str, int] = {}  # run id -> starts failed in a row
        self.running: set[str] = set()

    @property
    def depth(self) -> int:
        return self._queue.qsize() + len(self._waiting)

    def holds(self, run_id: str) -> bool:
        return run_id in self._submitted

    def submit(self, run_id: str, delay: float = 0.0) -> None:
        if run_id in self._submitted:
            return
        self._submitted.add(run_id)
        self._put(run_id, delay)

    def _put(self, run_id: str, delay: float) -> None:
        if delay <= 0:
            self._queue.put_nowait(run_id)
            return

        def due() -> None:
            del self._waiting[run_id]
            self._queue.put_nowait(run_id)

        self._waiting[run_id] = asyncio.get_running_loop().call_later(delay, due)

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work(), name=f"run-worker-{n}")
                         for n in range(self._concurrency)]

    async def _work(self) -> None:
        while True:
            run_id = await self._queue.get()
            self.running.add(run_id)
            retry_in = None
            try:
                retry_in = await self._execute(run_id)
                self._failures.pop(run_id, None)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # Never dropped while it is Queued in the database: tried again, backing off.
                failures = self._failures[run_id] = self._failures.get(run_id, 0) + 1
                retry_in = min(RETRY_AFTER_ERROR_SECONDS * 2 ** (failures - 1),
                               MAX_RETRY_AFTER_ERROR_SECONDS)
                log.warning("run %s could not be started (%s: %s); asking again in %.0fs",
                            run_id, type(exc).__name__, exc, retry_in, exc_info=failures == 1)
            finally:
                self.running.discard(run_id)
                if retry_in is None:
                    self._submitted.discard(run_id)
            if retry_in is not None:
                self._put(run_id, retry_in)

    async def stop(self) -> None:
        """Cancel the workers; runs in progress see CancelledError and record it."""
        for handle in self._waiting.values():
            handle.cancel()
        self._waiting.clear()
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
