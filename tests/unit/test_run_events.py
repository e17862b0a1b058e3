"""The dashboard's event fan-out: every subscriber gets each event, a slow one is dropped
instead of growing, and the number of subscribers is bounded."""
from __future__ import annotations

import pytest

from basewatch.run_events import RunEvents, TooManySubscribers, events_of


async def test_each_subscriber_gets_each_event_in_order():
    events = RunEvents()
    with events.subscribe() as one, events.subscribe() as two:
        events.run_queued("r1")
        events.graph_changed()
        for subscription in (one, two):
            assert await subscription.next(1) == {"kind": "run", "id": "r1", "status": "Queued"}
            assert await subscription.next(1) == {"kind": "graph"}
            assert await subscription.next(0.01) is None, "quiet: a heartbeat's None"
    assert events.subscribers == 0


async def test_a_subscriber_that_falls_behind_is_dropped_not_grown():
    events = RunEvents(queue_size=3)
    with events.subscribe() as slow, events.subscribe() as keeping_up:
        for number in range(3):
            events.publish("run", id=str(number))
            assert (await keeping_up.next(1))["id"] == str(number)
        events.publish("run", id="3")  # slow has three unread: no room for a fourth
        assert slow.dropped and events.dropped == 1 and events.subscribers == 1
        assert [e async for e in events_of(slow, 1)] == [], "its stale events are gone too"
        assert (await keeping_up.next(1))["id"] == "3"


async def test_subscribers_are_bounded_and_closing_ends_them():
    events = RunEvents(max_subscribers=2)
    with events.subscribe() as one, events.subscribe():
        with pytest.raises(TooManySubscribers), events.subscribe():
            pass
        events.close()
        assert [e async for e in events_of(one, 1)] == [] and not one.dropped
