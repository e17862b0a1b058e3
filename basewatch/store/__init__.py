"""The store: SQLite (one file in state_dir, the default) or PostgreSQL, through one query
layer (SQLAlchemy Core, store/schema.py) and one set of migrations (Alembic, store/alembic),
with a view per concept. It satisfies the Protocols in store/protocols.py, which is what callers
type against; what is particular to either database (PRAGMAs, BEGIN IMMEDIATE, json_each,
julianday, advisory locks) stays in here."""
from __future__ import annotations

from pathlib import Path

from basewatch.store.cluster import ClusterStore, DaemonRow, DaemonSession
from basewatch.store.database import Database
from basewatch.store.engine_slots import LocalEngineSlots, SharedEngineSlots
from basewatch.store.git_heads import SQLiteGitHeadStore
from basewatch.store.graph import SQLiteGraphStore
from basewatch.store.notifications import SQLiteNotificationStore
from basewatch.store.protocols import (EngineSlots, GitHeadStore, GraphStore,
                                       NotificationStore, RunLogStore, RunStore, Store,
                                       TaskStore, TimerStore, WebhookStore)
from basewatch.store.run_logs import SQLiteRunLogStore
from basewatch.store.runs import SQLiteRunStore
from basewatch.store.tasks import SQLiteTaskStore
from basewatch.store.timers import SQLiteTimerStore
from basewatch.store.webhooks import SQLiteWebhookStore


class SQLiteStore:
    """One database, with a view per concept (named for the SQLite it began with; the same
    views serve PostgreSQL)."""

    def __init__(self, database: Database):
        self.database = database
        self.tasks = SQLiteTaskStore(database)
        self.graph = SQLiteGraphStore(database)
        self.runs = SQLiteRunStore(database)
        self.timers = SQLiteTimerStore(database)
        self.git_heads = SQLiteGitHeadStore(database)
        self.webhooks = SQLiteWebhookStore(database)
        self.run_logs = SQLiteRunLogStore(database)
        self.notifications = SQLiteNotificationStore(database)
        self.cluster = ClusterStore(database)  # several daemons on one PostgreSQL
        # Shared where several daemons can share the database; one daemon keeps its own.
        self.engine_slots: EngineSlots = (SharedEngineSlots(database)
                                          if database.dialect == "postgresql"
                                          else LocalEngineSlots())

    @classmethod
    async def open(cls, path: Path) -> "SQLiteStore":
        return cls(await Database.open(path))

    @classmethod
    async def open_url(cls, url: str) -> "SQLiteStore":
        """The store at a database URL: `postgresql+asyncpg://...` or `sqlite+aiosqlite:///...`."""
        return cls(await Database.open_url(url))

    async def close(self) -> None:
        await self.database.close()


__all__ = ["ClusterStore", "DaemonRow", "DaemonSession", "Database", "EngineSlots",
           "GitHeadStore", "GraphStore", "LocalEngineSlots", "NotificationStore",
           "RunLogStore", "RunStore", "SQLiteStore", "SharedEngineSlots", "Store",
           "TaskStore", "TimerStore", "WebhookStore"]
