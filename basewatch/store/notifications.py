"""Registry notifications already received, by event id: one delivered to several daemons on
one database (or delivered again) is acted on once, by whichever daemon records it first."""
from __future__ import annotations

import time
from collections.abc import Collection
from datetime import timedelta

from sqlalchemy import Text, delete, literal

from basewatch.store.database import Database, now, to_text
from basewatch.store.schema import notification_events

# An event id is remembered this long: registries retry a delivery for minutes, not days, and
# the table stays as small as a day's notifications.
KEEP_EVENTS = timedelta(hours=24)
# Ids are purged along with a write at most this often, not by a schedule of their own.
PURGE_EVERY_SECONDS = 600.0
_ID_BATCH = 500  # ids bound in one statement: well under SQLite's limit on parameters


class SQLiteNotificationStore:
    def __init__(self, database: Database, keep: timedelta = KEEP_EVENTS):
        self.database = database
        self.keep = keep
        self._purged_at = float("-inf")

    async def first_time(self, event_ids: Collection[str]) -> set[str]:
        """Record the ids; those no daemon had recorded (within `keep`)."""
        ids = sorted(set(event_ids))  # one order: two daemons' inserts never deadlock
        if not ids:
            return set()
        stamp = to_text(now())
        new: set[str] = set()
        async with self.database.transaction() as db:
            await self._purge_now_and_then(db)
            for start in range(0, len(ids), _ID_BATCH):
                rows = [{"id": event_id, "received_at": stamp}
                        for event_id in ids[start:start + _ID_BATCH]]
                new.update((await db.execute(
                    self.database.insert(notification_events).values(rows)
                    .on_conflict_do_nothing(index_elements=[notification_events.c.id])
                    .returning(notification_events.c.id))).scalars())
        return new

    async def forget(self, event_ids: Collection[str]) -> None:
        """Let these events through again (handling them failed: the registry retries)."""
        ids = sorted(set(event_ids))
        async with self.database.transaction() as db:
            for start in range(0, len(ids), _ID_BATCH):
                await db.execute(delete(notification_events).where(
                    notification_events.c.id.in_(ids[start:start + _ID_BATCH])))

    async def purge(self) -> int:
        """Forget the ids older than `keep`; how many."""
        async with self.database.transaction() as db:
            return await self._purge(db)

    async def _purge_now_and_then(self, db) -> None:
        if time.monotonic() - self._purged_at >= PURGE_EVERY_SECONDS:
            await self._purge(db)

    async def _purge(self, db) -> int:
        self._purged_at = time.monotonic()
        instant = self.database.instant
        cutoff = to_text(now() - self.keep)
        result = await db.execute(delete(notification_events).where(
            instant(notification_events.c.received_at) < instant(literal(cutoff, Text))))
        return result.rowcount
