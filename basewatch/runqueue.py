"""Runs waiting for a builder, executed at most `concurrency` at a time.

Queued runs are persisted by the store; this queue only orders the ones this process will run.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable

log = logging.getLogger(__name__)


class RunQueue:
    def __init__(self, execute: Callable[[str], Awaitable[None]], concurrency: int):
        self._execute = execute
        self._concurrency = concurrency
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._workers: list[asyncio.Task] = []
        self._submitted: set[str] = set()
        self.running: set[str] = set()

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    def submit(self, run_id: str) -> None:
        if run_id not in self._submitted:
            self._submitted.add(run_id)
            self._queue.put_nowait(run_id)

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work(), name=f"run-worker-{n}")
                         for n in range(self._concurrency)]

    async def _work(self) -> None:
        while True:
            run_id = await self._queue.get()
            self.running.add(run_id)
            try:
                await self._execute(run_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The executor records its own failures; this is a bug, but must not kill a worker.
                log.exception("run %s: unexpected error", run_id)
            finally:
                self.running.discard(run_id)
                self._submitted.discard(run_id)

    async def stop(self) -> None:
        """Cancel the workers; runs in progress see CancelledError and record it."""
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
