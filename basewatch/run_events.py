"""What changed in the daemon, as it happens, for whoever watches (the dashboard's event stream).

A bounded fan-out: each subscriber has a small queue of its own; one that falls behind is
dropped (its stream ends, and a browser's EventSource reconnects and reads the whole state
again) rather than letting its queue grow. The number of subscribers is bounded too.
"""
from __future__ import annotations

import asyncio
import contextlib
from typing import AsyncIterator, Iterator

# Events a subscriber may have unread before it is dropped: a page applies each in
# milliseconds, so only a stalled connection gets near this.
SUBSCRIBER_QUEUE = 64
# Streams open at once, over every dashboard: a person has a tab or two.
MAX_SUBSCRIBERS = 32


class TooManySubscribers(Exception):
    """Every subscriber slot is taken."""


class Subscription:
    def __init__(self, size: int):
        self._queue: asyncio.Queue[dict | None] = asyncio.Queue(size)
        self.dropped = False

    def _offer(self, event: dict | None) -> bool:
        """Queue `event`; False, and the subscription ended, when it has no room left."""
        try:
            self._queue.put_nowait(event)
            return True
        except asyncio.QueueFull:
            self._end(dropped=True)
            return False

    def _end(self, dropped: bool = False) -> None:
        # What it had not read is stale now; the end marker must fit.
        while not self._queue.empty():
            self._queue.get_nowait()
        self.dropped = dropped
        self._queue.put_nowait(None)

    async def next(self, timeout: float) -> dict | None:
        """The next event; None after `timeout` seconds without one. Raises StopAsyncIteration
        once the subscription has ended (dropped, or the hub closed)."""
        try:
            event = await asyncio.wait_for(self._queue.get(), timeout)
        except TimeoutError:
            return None
        if event is None:
            self._queue.put_nowait(None)  # every later call ends too
            raise StopAsyncIteration
        return event


class RunEvents:
    """Runs queued, started and ended; tasks and the graph changed. Publishing never blocks
    and never waits on a subscriber."""

    def __init__(self, queue_size: int = SUBSCRIBER_QUEUE,
                 max_subscribers: int = MAX_SUBSCRIBERS):
        self._subscribers: set[Subscription] = set()
        self._queue_size = queue_size
        self._max = max_subscribers
        self.dropped = 0  # subscribers dropped for falling behind, since the start

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[Subscription]:
        if len(self._subscribers) >= self._max:
            raise TooManySubscribers(f"{self._max} event streams are open already")
        subscription = Subscription(self._queue_size)
        self._subscribers.add(subscription)
        try:
            yield subscription
        finally:
            self._subscribers.discard(subscription)

    def publish(self, kind: str, **fields) -> None:
        event = {"kind": kind, **fields}
        for subscription in list(self._subscribers):
            if not subscription._offer(event):
                self._subscribers.discard(subscription)
                self.dropped += 1

    def close(self) -> None:
        """End every subscription (the daemon is stopping)."""
        for subscription in self._subscribers:
            subscription._end()
        self._subscribers.clear()

    # The daemon's hooks, each publishing one kind of change.

    def run_queued(self, run_id: str) -> None:
        self.publish("run", id=run_id, status="Queued")

    async def run_started(self, run) -> None:
        self.publish("run", id=run.id, task=run.task or None, status="Running")

    async def run_finished(self, run) -> None:
        self.publish("run", id=run.id, task=run.task or None, status=run.status.value)

    def tasks_changed(self) -> None:
        self.publish("tasks")

    def graph_changed(self) -> None:
        """A watched reference's digest or check state changed."""
        self.publish("graph")


async def events_of(subscription: Subscription, heartbeat: float) -> AsyncIterator[dict | None]:
    """Each event, and None after every `heartbeat` seconds of quiet, until it ends."""
    while True:
        try:
            yield await subscription.next(heartbeat)
        except StopAsyncIteration:
            return
