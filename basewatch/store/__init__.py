"""The SQLite store: one database file, WAL, foreign keys, numbered migrations, a view per
concept. It satisfies the Protocols in store/protocols.py, which is what callers type against;
SQLite itself (PRAGMA user_version, BEGIN IMMEDIATE, json_each, julianday) stays in here."""
from __future__ import annotations

from pathlib import Path

from basewatch.store.database import Database
from basewatch.store.git_heads import SQLiteGitHeadStore
from basewatch.store.graph import SQLiteGraphStore
from basewatch.store.protocols import (GitHeadStore, GraphStore, RunStore, Store, TaskStore,
                                       TimerStore, WebhookStore)
from basewatch.store.runs import SQLiteRunStore
from basewatch.store.tasks import SQLiteTaskStore
from basewatch.store.timers import SQLiteTimerStore
from basewatch.store.webhooks import SQLiteWebhookStore


class SQLiteStore:
    """One database, with a view per concept."""

    def __init__(self, database: Database):
        self.database = database
        self.tasks = SQLiteTaskStore(database)
        self.graph = SQLiteGraphStore(database)
        self.runs = SQLiteRunStore(database)
        self.timers = SQLiteTimerStore(database)
        self.git_heads = SQLiteGitHeadStore(database)
        self.webhooks = SQLiteWebhookStore(database)

    @classmethod
    async def open(cls, path: Path) -> "SQLiteStore":
        return cls(await Database.open(path))

    async def close(self) -> None:
        await self.database.close()


__all__ = ["Database", "GitHeadStore", "GraphStore", "RunStore", "SQLiteStore", "Store",
           "TaskStore", "TimerStore", "WebhookStore"]
