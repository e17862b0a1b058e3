"""Polls each watched base reference once per interval, whatever number of tasks use it.

A change is a new digest for the watched platform, seen after a successful comparison. The first
observation, an error, and a re-push of the same digest trigger nothing.
"""
from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Awaitable, Callable, Protocol

from basewatch.errors import BasewatchError
from basewatch.platforms import Platform
from basewatch.store.graph import GraphStore
from basewatch.watcher.reference import ImageReference

log = logging.getLogger(__name__)

MAX_BACKOFF_FACTOR = 8


class PlatformDigestLike(Protocol):
    digest: str
    index_digest: str | None


class DigestSource(Protocol):
    async def platform_digest(self, ref: ImageReference,
                              platform: Platform) -> PlatformDigestLike: ...


@dataclass(frozen=True)
class DigestChange:
    base: str
    platform: str
    old: str
    new: str
    index_digest: str | None


@dataclass
class PollStats:
    checked: int = 0
    changed: int = 0
    errors: int = 0


class DigestWatcher:
    def __init__(self, graph: GraphStore, source: DigestSource,
                 on_change: Callable[[DigestChange], Awaitable[None]],
                 interval_for: Callable[[str], float], concurrency: int = 64,
                 jitter: float = 0.1):
        self.graph = graph
        self.source = source
        self.on_change = on_change
        self.interval_for = interval_for
        self.jitter = jitter
        self._limit = asyncio.Semaphore(concurrency)
        self._next_due: dict[tuple[str, str], float] = {}
        self._failures: dict[tuple[str, str], int] = {}
        self._in_flight: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()
        self._checks: set[asyncio.Task] = set()

    def refresh(self) -> None:
        """The set of watched references changed: re-read it now."""
        self._wake.set()

    async def check(self, base: str, platform: str) -> DigestChange | None:
        key = (base, platform)
        if key in self._in_flight:
            return None
        self._in_flight.add(key)
        try:
            async with self._limit:
                return await self._compare(base, platform)
        finally:
            self._in_flight.discard(key)

    async def _compare(self, base: str, platform: str) -> DigestChange | None:
        key = (base, platform)
        try:
            seen = await self.source.platform_digest(ImageReference.parse(base),
                                                     Platform.parse(platform))
        except BasewatchError as exc:
            self._failures[key] = self._failures.get(key, 0) + 1
            log.warning("cannot check %s (%s): %s", base, platform, exc)
            await self.graph.record_error(base, platform, str(exc))
            return None
        self._failures.pop(key, None)
        current = await self.graph.get_watched(base, platform)
        if current is None:
            return None  # no task depends on it any more
        if current.digest is None:
            await self.graph.record_first(base, platform, seen.digest, seen.index_digest)
            return None
        if current.digest == seen.digest:
            await self.graph.record_same(base, platform, seen.index_digest)
            return None
        change = DigestChange(base, platform, current.digest, seen.digest, seen.index_digest)
        log.info("base %s (%s) changed: %s -> %s", base, platform, change.old, change.new)
        await self.on_change(change)
        return change

    async def poll_once(self) -> PollStats:
        """Check every watched reference now, concurrently."""
        watched = await self.graph.watched()
        results = await asyncio.gather(*(self._counted_check(w.base, w.platform)
                                         for w in watched))
        stats = PollStats(checked=len(watched))
        for outcome in results:
            if outcome == "changed":
                stats.changed += 1
            elif outcome == "error":
                stats.errors += 1
        return stats

    async def _counted_check(self, base: str, platform: str) -> str:
        failures = self._failures.get((base, platform), 0)
        change = await self.check(base, platform)
        if self._failures.get((base, platform), 0) > failures:
            return "error"
        return "changed" if change else "same"

    def _interval(self, base: str, platform: str) -> float:
        interval = self.interval_for(ImageReference.parse(base).registry)
        # Back off a failing reference, so a dead registry is not hammered.
        factor = min(2 ** self._failures.get((base, platform), 0), MAX_BACKOFF_FACTOR)
        return interval * factor * random.uniform(1 - self.jitter, 1 + self.jitter)

    async def run(self) -> None:
        """Poll forever, each reference on its own jittered schedule."""
        try:
            await self._schedule()
        finally:
            for check in self._checks:
                check.cancel()
            await asyncio.gather(*self._checks, return_exceptions=True)

    async def _schedule(self) -> None:
        while True:
            self._wake.clear()
            watched = {(w.base, w.platform) for w in await self.graph.watched()}
            now = time.monotonic()
            for key in list(self._next_due):
                if key not in watched:
                    del self._next_due[key]
            for key in watched - self._next_due.keys():
                # Spread the first checks over a jitter window instead of a burst at start-up.
                self._next_due[key] = now + random.uniform(0, self._interval(*key) * self.jitter)
            due = [key for key, when in self._next_due.items() if when <= now]
            for key in due:
                self._next_due[key] = float("inf")
            for key in due:
                check = asyncio.create_task(self._check_and_reschedule(*key))
                self._checks.add(check)
                check.add_done_callback(self._checks.discard)
            pending = [when for when in self._next_due.values() if when != float("inf")]
            delay = max(0.0, min(pending) - time.monotonic()) if pending else 60.0
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=min(delay, 60.0))
            except TimeoutError:
                pass

    async def _check_and_reschedule(self, base: str, platform: str) -> None:
        try:
            await self.check(base, platform)
        except Exception:
            log.exception("checking %s (%s) failed unexpectedly", base, platform)
        finally:
            if (base, platform) in self._next_due:
                self._next_due[(base, platform)] = time.monotonic() + self._interval(base, platform)
                self._wake.set()
