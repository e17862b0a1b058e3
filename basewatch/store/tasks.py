"""Task definitions, from the config file or the API, stored as validated JSON."""
from __future__ import annotations

import logging

from pydantic import ValidationError

from basewatch.config import TaskSettings, format_validation_error
from basewatch.context_spec import without_credentials
from basewatch.store.database import Database, now, to_text

log = logging.getLogger(__name__)


def _task(row) -> TaskSettings | None:
    """The task a row holds; None, said once per read, for a definition an older version
    stored that this one refuses (a Dockerfile outside its context...): such a task is not
    built, and `basewatch task delete` removes it."""
    try:
        return TaskSettings.model_validate_json(row["definition"])
    except ValidationError as exc:
        problems = format_validation_error("task", exc).replace("\n", "; ")
        log.warning("task %s is ignored: its stored definition is refused (%s); delete it and "
                    "create it again", row["name"], problems)
        return None


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
        row = await self.database.fetchone(
            "SELECT name, definition FROM tasks WHERE name = ?", (name,))
        return _task(row) if row else None

    async def get_with_source(self, name: str) -> tuple[TaskSettings, str] | None:
        row = await self.database.fetchone(
            "SELECT name, definition, source FROM tasks WHERE name = ?", (name,))
        task = _task(row) if row else None
        return (task, row["source"]) if task is not None else None

    async def with_sources(self) -> list[tuple[TaskSettings, str]]:
        rows = await self.database.fetchall(
            "SELECT name, definition, source FROM tasks ORDER BY name")
        return [(task, row["source"]) for row in rows if (task := _task(row)) is not None]

    async def all(self, source: str | None = None) -> list[TaskSettings]:
        sql, params = "SELECT name, definition FROM tasks", ()
        if source is not None:
            sql, params = sql + " WHERE source = ?", (source,)
        rows = await self.database.fetchall(sql + " ORDER BY name", params)
        return [task for row in rows if (task := _task(row)) is not None]

    async def delete(self, name: str) -> bool:
        async with self.database.transaction() as db:
            cursor = await db.execute("DELETE FROM tasks WHERE name = ?", (name,))
            return cursor.rowcount > 0
