"""Registry notification ids kept in the store: one event recorded by any daemon on the
database is no first time for another; ids are forgotten on request and after a day."""
from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from basewatch.store import notifications
from tests.support.stores import open_store


async def test_an_event_is_new_once_whichever_daemon_records_it(tmp_path):
    first = await open_store(tmp_path / "shared.db")
    second = await open_store(tmp_path / "shared.db")
    try:
        assert await first.notifications.first_time(["e1", "e2"]) == {"e1", "e2"}
        assert await second.notifications.first_time(["e2", "e3"]) == {"e3"}
        assert await first.notifications.first_time([]) == set()
        # The same events at the same moment through both: each is new for one of them.
        ids = [f"burst-{n}" for n in range(1200)]  # more than one statement's batch
        a, b = await asyncio.gather(first.notifications.first_time(ids),
                                    second.notifications.first_time(list(reversed(ids))))
        assert a | b == set(ids) and not a & b

        await second.notifications.forget(["e1"])  # its handling failed: let the retry in
        assert await first.notifications.first_time(["e1", "e2"]) == {"e1"}
    finally:
        await first.close()
        await second.close()


async def test_ids_older_than_a_day_are_purged(tmp_path, monkeypatch):
    store = await open_store(tmp_path / "basewatch.db")
    try:
        await store.notifications.first_time(["old", "recent"])
        day_ago = (datetime.now(timezone.utc) - timedelta(hours=25)).isoformat()
        async with store.database.transaction() as db:
            await db.execute(text("UPDATE notification_events SET received_at = :t"
                                  " WHERE id = 'old'"), {"t": day_ago})
        assert await store.notifications.purge() == 1
        assert await store.notifications.first_time(["old", "recent"]) == {"old"}

        # A write purges along the way, now and then: not on every notification.
        async with store.database.transaction() as db:
            await db.execute(text("UPDATE notification_events SET received_at = :t"),
                             {"t": day_ago})
        assert await store.notifications.first_time(["x"]) == {"x"}
        assert await store.notifications.first_time(["old"]) == set()  # not purged yet
        monkeypatch.setattr(notifications, "PURGE_EVERY_SECONDS", 0.0)
        assert await store.notifications.first_time(["y"]) == {"y"}
        assert await store.notifications.first_time(["old", "recent"]) == {"old", "recent"}
    finally:
        await store.close()
