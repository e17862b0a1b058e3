"""Polls each watched base reference once per interval, whatever number of tasks use it.

A change is a new digest for the watched platform, seen after a successful comparison. The first
observation, an error, and a re-push of the same digest trigger nothing.
"""
from __future__ import annotations

import asyncio
import heapq
import logging
import time
from dataclasses import dataclass, replace
from itertools import islice
from typing import Awaitable, Callable, Protocol

from structlog.contextvars import bind_contextvars, bound_contextvars, reset_contextvars

from basewatch.errors import BasewatchError
from basewatch.metrics import Metrics, ReferenceState
from basewatch.models import DigestChange, WatchedDigest
from basewatch.oci.platforms import Platform
from basewatch.oci.reference import ImageReference
from basewatch.store.protocols import GraphStore
from basewatch.watcher.schedule import first_delay, next_delay

log = logging.getLogger(__name__)

# Re-read the watched set this often even without refresh(), as a safety net.
RELOAD_SECONDS = 30.0
# A daemon that is not the leader asks this often whether it has become it (the election
# itself checks every second or two), unless leadership_changed() wakes it sooner.
LEADERSHIP_CHECK_SECONDS = 1.0

Key = tuple[str, str]  # (base reference, platform)
# A registry may notify a tagged push before the tag serves it (distribution 2.x stores the
# manifest, notifies, then moves the tag), so a check made on the notification can still read the
# old digest. Asked again after these pauses until the tag serves the digest the notification
# named; past them, polling is the safety net.
NOTIFIED_RECHECK_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
# Unchanged checks are written this many to a transaction: one per check would cap a cycle at
# a few hundred references a second, and one for a whole cycle of 10,000 would hold the write
# lock long enough to delay a fan-out or a run starting behind it.
SAME_BATCH = 1000
# ...and while polling on schedule, at the latest this long after the first of them was seen.
SAME_FLUSH_SECONDS = 1.0


class PlatformDigestLike(Protocol):
    digest: str
    index_digest: str | None


class DigestSource(Protocol):
    async def platform_digest(self, ref: ImageReference,
                              platform: Platform) -> PlatformDigestLike: ...


class ReferenceChecker(Protocol):
    """What asks the watcher to check references now (cascades, push notifications): the
    DigestWatcher's check_references."""

    def check_references(self, wanted: Callable[[str], bool],
                         notified: Callable[[str], str | None] | None = None
                         ) -> Awaitable[int]: ...


@dataclass
class PollStats:
    checked: int = 0
    changed: int = 0
    errors: int = 0


class DigestWatcher:
    """Compares registry digests with the store's, through an in-memory view of the watched set.

    Unchanged checks are written in batches of SAME_BATCH, because one transaction per check
    would cap a poll cycle at a few hundred references a second.

    With several daemons on one database, only the leader (`is_leader()`) polls on schedule;
    every daemon checks what push notifications and cascades ask it to. Another daemon may then
    have recorded a digest this one's view does not hold yet: the store only writes a digest
    over the one it still has (a first one over none, a change over any other, an unchanged
    check over the same), so a stale view never writes an older digest back nor queues a change
    twice; the view is read again every RELOAD_SECONDS and as the daemon becomes the leader.
    """

    def __init__(self, graph: GraphStore, source: DigestSource,
                 on_change: Callable[[DigestChange], Awaitable[None]],
                 interval_for: Callable[[str], float], concurrency: int = 64,
                 jitter: float = 0.1, metrics: Metrics | None = None,
                 on_shown_change: Callable[[], None] | None = None,
                 is_leader: Callable[[], bool] = lambda: True):
        self.graph = graph
        # Whether this daemon polls on schedule (several daemons on one database: one does).
        self.is_leader = is_leader
        # Told when what the graph shows of a reference changed (its first digest, a new one,
        # its check began or stopped failing): the dashboard redraws then, not on every poll.
        self.on_shown_change = on_shown_change
        self.source = source
        self.on_change = on_change
        self.interval_for = interval_for
        self.jitter = jitter
        self.metrics = metrics
        self._limit = asyncio.Semaphore(concurrency)
        self._watched: dict[Key, WatchedDigest] = {}
        self._unchanged: dict[Key, tuple[str, str | None]] = {}  # (digest, index digest)
        self._unchanged_since: float | None = None  # when the oldest of them was gathered
        # Each watched base and platform parsed once, as the watched set is read.
        self._references: dict[str, ImageReference] = {}
        self._platforms: dict[str, Platform] = {}
        self._next_due: dict[Key, float] = {}  # inf while its check runs
        # (when, key) for each finite _next_due, soonest first, so a loop of the schedule
        # touches only the keys due (not all 10,000); an entry whose time is no longer the
        # key's is skipped as it comes up.
        self._due_order: list[tuple[float, Key]] = []
        self._failures: dict[Key, int] = {}
        self._in_flight: set[Key] = set()
        self._again: set[Key] = set()  # asked for while in flight: check once more after
        self._reload = asyncio.Event()
        self._wake = asyncio.Event()
        self._checks: set[asyncio.Task] = set()
        # Wall-clock times, for Prometheus: the last check of each reference (whatever its
        # result), else when it began to be watched.
        self._checked_at: dict[Key, float] = {}

    @property
    def watched_count(self) -> int:
        return len(self._watched)

    def reference_states(self) -> list[ReferenceState]:
        """Each watched reference's last check, interval and whether it is failing: by this
        daemon, or as the store said at the last read (the leader's checks, on a follower)."""
        states = []
        for key, watched in self._watched.items():
            stored = watched.checked_at.timestamp() if watched.checked_at else 0.0
            states.append(ReferenceState(
                key[0], key[1], max(self._checked_at.get(key, 0.0), stored),
                self.interval_for(self._reference(key[0]).registry),
                key in self._failures or watched.last_error is not None))
        return states

    def refresh(self) -> None:
        """The set of watched references changed: re-read it now."""
        self._reload.set()
        self._wake.set()

    def leadership_changed(self) -> None:
        """This daemon became the leader or stopped being it: the schedule asks is_leader()
        now rather than within LEADERSHIP_CHECK_SECONDS."""
        self._wake.set()

    async def _load(self) -> None:
        await self.flush()
        self._watched = {(w.base, w.platform): w for w in await self.graph.watched()}
        now = time.time()
        self._checked_at = {key: self._checked_at.get(key, now) for key in self._watched}
        self._parse_watched()

    def _parse_watched(self) -> None:
        self._references = _parsed({base for base, _ in self._watched}, ImageReference.parse,
                                   self._references)
        self._platforms = _parsed({platform for _, platform in self._watched}, Platform.parse,
                                  self._platforms)

    def _reference(self, base: str) -> ImageReference:
        reference = self._references.get(base)
        return reference if reference is not None else ImageReference.parse(base)

    def _platform(self, platform: str) -> Platform:
        parsed = self._platforms.get(platform)
        return parsed if parsed is not None else Platform.parse(platform)

    async def flush(self) -> None:
        """Write the unchanged checks gathered since the last flush, SAME_BATCH rows to a
        transaction."""
        while self._unchanged:
            keys = list(islice(self._unchanged, SAME_BATCH))
            await self.graph.record_same([(base, platform, *self._unchanged.pop((base, platform)))
                                          for base, platform in keys])
        self._unchanged_since = None

    def _flush_due(self, now: float) -> bool:
        """Whether the scheduler writes the unchanged checks now: a batch is full, or the
        oldest has waited SAME_FLUSH_SECONDS."""
        return len(self._unchanged) >= SAME_BATCH or (
            self._unchanged_since is not None and now - self._unchanged_since
            >= SAME_FLUSH_SECONDS)

    async def check(self, base: str, platform: str) -> DigestChange | None:
        """Compare one reference now. Asked while a check of it runs, it runs once more after,
        so a push notified mid-check is never missed."""
        key = (base, platform)
        if key in self._in_flight:
            self._again.add(key)
            return None
        self._in_flight.add(key)
        try:
            change = None
            while True:
                async with self._limit:
                    change = await self._compare(key) or change
                if key not in self._again:
                    return change
                self._again.discard(key)
        finally:
            self._in_flight.discard(key)

    async def check_references(self, wanted: Callable[[str], bool],
                               notified: Callable[[str], str | None] | None = None) -> int:
        """Check now every watched reference (any platform) for which `wanted(base)` holds;
        return how many were checked. For pushes we hear of: cascades and notifications.
        `notified(base)` is the digest a notification says was pushed there, if it names one:
        until the tag serves it, the reference is checked again a few times."""
        if not self._watched or self._reload.is_set():
            # Not read yet, or changed since (the running schedule re-reads it too).
            await self._load()
        keys = [key for key in self._watched if wanted(key[0])]
        await asyncio.gather(*(self.check(*key) for key in keys))
        for key in keys:
            digest = notified(key[0]) if notified is not None else None
            if digest is not None and not self._serves(key, digest):
                recheck = asyncio.create_task(self._recheck_until_served(key, digest))
                self._checks.add(recheck)  # cancelled with the watcher
                recheck.add_done_callback(self._checks.discard)
        return len(keys)

    def _serves(self, key: Key, digest: str) -> bool:
        watched = self._watched.get(key)
        return watched is None or digest in (watched.digest, watched.index_digest)

    async def _recheck_until_served(self, key: Key, digest: str) -> None:
        for delay in NOTIFIED_RECHECK_DELAYS:
            await asyncio.sleep(delay)
            try:
                await self.check(*key)
            except Exception:
                log.exception("checking %s (%s) failed unexpectedly", *key)
            if self._serves(key, digest):
                return
        log.info("%s (%s) does not serve the notified %s yet: left to polling", *key, digest)

    def _count(self, ref: ImageReference, result: str) -> None:
        if self.metrics is not None:
            self.metrics.digest_checks.labels(ref.registry, result).inc()
            if result == "changed":
                self.metrics.digest_changes.labels(ref.registry).inc()

    async def _compare(self, key: Key) -> DigestChange | None:
        base, platform = key
        # What is logged from here (the registry client's lines too) names the reference.
        # Bound, then reset by token: bound_contextvars reads every context variable, twice, on
        # each of a cycle's 10,000 checks.
        tokens = bind_contextvars(base=base, platform=platform)
        try:
            return await self._compare_bound(key)
        finally:
            reset_contextvars(**tokens)

    async def _compare_bound(self, key: Key) -> DigestChange | None:
        base, platform = key
        ref = self._reference(base)
        try:
            seen = await self.source.platform_digest(ref, self._platform(platform))
        except BasewatchError as exc:
            self._checked_at[key] = time.time()
            self._failures[key] = self._failures.get(key, 0) + 1
            self._count(ref, "error")
            log.warning("cannot check %s (%s): %s", base, platform, exc)
            await self.graph.record_error(base, platform, str(exc))
            if self._failures[key] == 1:
                self._shown_change()
            return None
        recovered = self._failures.pop(key, None) is not None
        self._checked_at[key] = time.time()
        current = self._watched.get(key) or await self.graph.get_watched(base, platform)
        if current is None:
            return None  # no task depends on it any more
        if recovered or current.last_error is not None or current.digest != seen.digest:
            self._shown_change()
        # A new view only when it differs: an unchanged check (nearly all) builds nothing.
        unchanged = (current.digest, current.index_digest, current.last_error) == \
            (seen.digest, seen.index_digest, None)
        self._watched[key] = current if unchanged else replace(
            current, digest=seen.digest, index_digest=seen.index_digest, last_error=None)
        if current.digest is None:
            if await self.graph.record_first(base, platform, seen.digest, seen.index_digest):
                self._count(ref, "first")
                return None
            # Another daemon recorded one first: compared with that, as a change or not.
            current = await self.graph.get_watched(base, platform)
            if current is None or current.digest is None:
                return None
        if current.digest == seen.digest:
            self._count(ref, "same")
            if not self._unchanged:
                self._unchanged_since = time.monotonic()
            self._unchanged[key] = (seen.digest, seen.index_digest)
            return None
        self._count(ref, "changed")
        change = DigestChange(base, platform, current.digest, seen.digest, seen.index_digest)
        with bound_contextvars(digest=change.new):  # the fan-out's lines name it too
            log.info("base %s (%s) changed: %s -> %s", base, platform, change.old, change.new)
            await self.on_change(change)
        return change

    def _shown_change(self) -> None:
        if self.on_shown_change is not None:
            self.on_shown_change()

    async def poll_once(self) -> PollStats:
        """Check every watched reference now, concurrently."""
        await self._load()
        keys = list(self._watched)
        errors_before = {key: self._failures.get(key, 0) for key in keys}

        async def check(key: Key) -> DigestChange | None:
            change = await self.check(*key)
            if len(self._unchanged) >= SAME_BATCH:  # written while the others are checked
                await self.flush()
            return change

        changes = await asyncio.gather(*(check(key) for key in keys))
        await self.flush()
        return PollStats(
            checked=len(keys), changed=sum(1 for change in changes if change),
            errors=sum(1 for key in keys if self._failures.get(key, 0) > errors_before[key]))

    def _interval(self, base: str, platform: str) -> float:
        interval = self.interval_for(self._reference(base).registry)
        # Back off a failing reference, so a dead registry is not hammered.
        return next_delay(interval, self._failures.get((base, platform), 0), self.jitter)

    async def run(self) -> None:
        """Poll forever, each reference on its own jittered schedule."""
        try:
            await self._schedule()
        finally:
            for check in self._checks:
                check.cancel()
            await asyncio.gather(*self._checks, return_exceptions=True)

    async def _schedule(self) -> None:
        loaded_at = float("-inf")
        leading = False
        while True:
            self._wake.clear()
            now = time.monotonic()
            was_leading, leading = leading, self.is_leader()
            if leading and not was_leading:
                self._reload.set()  # take over from the view the last leader left
            if self._reload.is_set() or now - loaded_at > RELOAD_SECONDS:
                self._reload.clear()
                await self._load()
                loaded_at = now
                self._reconcile(now)
            for key in self._pop_due(now):
                if not leading:
                    # The leader polls it; its place in the schedule is kept, so a daemon
                    # that takes over polls each reference within one interval, spread out.
                    self._due_at(key, now + self._interval(*key))
                    continue
                self._due_at(key, float("inf"))  # in flight; rescheduled when done
                check = asyncio.create_task(self._check_and_reschedule(*key))
                self._checks.add(check)
                check.add_done_callback(self._checks.discard)
            if self._flush_due(time.monotonic()):
                await self.flush()
            soonest = self._soonest()
            delay = max(0.0, soonest - time.monotonic()) if soonest is not None \
                else RELOAD_SECONDS
            if not leading:
                delay = min(delay, LEADERSHIP_CHECK_SECONDS)
            if self._unchanged_since is not None:
                delay = max(0.0, min(delay, self._unchanged_since + SAME_FLUSH_SECONDS
                                     - time.monotonic()))
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=min(delay, RELOAD_SECONDS))
            except TimeoutError:
                pass

    def _due_at(self, key: Key, when: float) -> None:
        self._next_due[key] = when
        if when != float("inf"):
            heapq.heappush(self._due_order, (when, key))

    def _pop_due(self, now: float) -> list[Key]:
        """The keys due by `now`, taken off the schedule's order."""
        due: dict[Key, None] = {}
        while self._due_order and self._due_order[0][0] <= now:
            when, key = heapq.heappop(self._due_order)
            if self._next_due.get(key) == when:
                due[key] = None
        return list(due)

    def _soonest(self) -> float | None:
        """When the next key falls due; None when none is scheduled (all in flight)."""
        order = self._due_order
        while order and self._next_due.get(order[0][1]) != order[0][0]:
            heapq.heappop(order)  # rescheduled or unwatched since
        return order[0][0] if order else None

    def _reconcile(self, now: float) -> None:
        for key in list(self._next_due):
            if key not in self._watched:
                del self._next_due[key]
        for key in self._watched.keys() - self._next_due.keys():
            interval = self.interval_for(self._reference(key[0]).registry)
            self._due_at(key, now + first_delay(interval, self.jitter))

    async def _check_and_reschedule(self, base: str, platform: str) -> None:
        try:
            await self.check(base, platform)
        except Exception:
            log.exception("checking %s (%s) failed unexpectedly", base, platform)
        finally:
            if (base, platform) in self._next_due:
                self._due_at((base, platform), time.monotonic() + self._interval(base, platform))
                self._wake.set()


def _parsed(texts, parse, known: dict) -> dict:
    """Each of `texts` parsed, those in `known` as they were. One that does not parse is left
    out: it is parsed again, and fails as it always did, when it is checked."""
    parsed = {}
    for text in texts:
        if text in known:
            parsed[text] = known[text]
            continue
        try:
            parsed[text] = parse(text)
        except (BasewatchError, ValueError):
            pass
    return parsed
