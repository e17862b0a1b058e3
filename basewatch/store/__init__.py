"""SQLite persistence, split by concept: tasks, the dependency graph with watched digests, runs."""
from __future__ import annotations

from pathlib import Path

from basewatch.store.database import Database
from basewatch.store.graph import GraphStore
from basewatch.store.runs import RunStore
from basewatch.store.tasks import TaskStore


class Store:
    """One database, with a view per concept."""

    def __init__(self, database: Database):
        self.database = database
        self.tasks = TaskStore(database)
        self.graph = GraphStore(database)
        self.runs = RunStore(database)

    @classmethod
    async def open(cls, path: Path) -> "Store":
        return cls(await Database.open(path))

    async def close(self) -> None:
        await self.database.close()


__all__ = ["Store", "Database"]
