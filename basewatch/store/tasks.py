"""Task definitions, from the config file or the API, stored as validated JSON."""
from __future__ import annotations

from basewatch.builder.contexts.spec import without_credentials
from basewatch.config import TaskSettings
from basewatch.store.database import Database, now, to_text


class TaskStore:
    def __init__(self, database: Database):
        self.database = database

    async def upsert(self, task: TaskSettings, source: str) -> None:
        # Credentials never reach the database (they are refused at the edges; a task stored
        # by an older version loses them when it is written again).
        task = task.model_copy(update={"context": without_credentials(task.context)})
        stamp = to_text(now())
        async with self.database.transaction() as db:
            await db.execute(
                "INSERT INTO tasks (name, source, definition, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                " source = excluded.source, definition = excluded.definition,"
                " updated_at = excluded.updated_at",
                (task.name, source, task.model_dump_json(), stamp, stamp),
            )

    async def get(self, name: str) -> TaskSettings | None:
        row = await self.database.fetchone("SELECT definition FROM tasks WHERE name = ?", (name,))
        return TaskSettings.model_validate_json(row["definition"]) if row else None

    async def get_with_source(self, name: str) -> tuple[TaskSettings, str] | None:
        row = await self.database.fetchone(
            "SELECT definition, source FROM tasks WHERE name = ?", (name,))
        if row is None:
            return None
        return TaskSettings.model_validate_json(row["definition"]), row["source"]

    async def with_sources(self) -> list[tuple[TaskSettings, str]]:
        rows = await self.database.fetchall(
            "SELECT definition, source FROM tasks ORDER BY name")
        return [(TaskSettings.model_validate_json(row["definition"]), row["source"])
                for row in rows]

    async def all(self, source: str | None = None) -> list[TaskSettings]:
        sql, params = "SELECT definition FROM tasks", ()
        if source is not None:
            sql, params = sql + " WHERE source = ?", (source,)
        rows = await self.database.fetchall(sql + " ORDER BY name", params)
        return [TaskSettings.model_validate_json(row["definition"]) for row in rows]

    async def delete(self, name: str) -> bool:
        async with self.database.transaction() as db:
            cursor = await db.execute("DELETE FROM tasks WHERE name = ?", (name,))
            return cursor.rowcount > 0
