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
Execute = Callable[[str], Awaitable[float | None]]


class RunQueue:
    def __init__(self, execute: Execute, concurrency: int):
        self._execute = execute
        self._concurrency = concurrency
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._workers: list[asyncio.Task] = []
        self._submitted: set[str] = set()
        self._waiting: dict[str, asyncio.TimerHandle] = {}
        self.running: set[str] = set()

    @property
    def depth(self) -> int:
        return self._queue.qsize() + len(self._waiting)

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
            except asyncio.CancelledError:
                raise
            except Exception:
                # The executor records its own failures; this is a bug, but must not kill a worker.
                log.exception("run %s: unexpected error", run_id)
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
