"""Waiting on state instead of sleeping a fixed time."""
from __future__ import annotations

import asyncio
import contextlib
import time


async def wait_for(predicate, timeout: float, what: str, interval: float = 0.25):
    """Await `predicate()` until it returns something true; fail after `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if result := await predicate():
            return result
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def wait_until(condition, timeout: float, what: str, interval: float = 0.2):
    """Call `condition()` until it returns something true; fail after `timeout` seconds. For
    tests without an event loop of their own (a daemon in a subprocess)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := condition():
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@contextlib.asynccontextmanager
async def running(*loops):
    """The coroutines `loops` (a watcher's run(), a daemon's loop) as tasks while the block
    waits on what they do; cancelled and awaited when it ends, however it ends."""
    tasks = [asyncio.create_task(loop) for loop in loops]
    try:
        yield tasks
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
