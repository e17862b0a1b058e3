"""Waiting on state instead of sleeping a fixed time."""
from __future__ import annotations

import asyncio


async def wait_for(predicate, timeout: float, what: str, interval: float = 0.25):
    """Await `predicate()` until it returns something true; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if result := await predicate():
            return result
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
