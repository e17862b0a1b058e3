"""A cap on requests per second to one registry, so a thousand references falling due together
(a restart, the top of the hour) reach the registry as an even stream, not a burst."""
from __future__ import annotations

import asyncio
import time


class RequestPacer:
    """Spaces request starts at least 1/rate seconds apart."""

    def __init__(self, rate: float, clock=time.monotonic, sleep=asyncio.sleep):
        self.interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = self._clock()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            await self._sleep(slot - now)
