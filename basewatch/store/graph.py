"""The dependency graph's edges and what the watcher last saw of each base."""
from __future__ import annotations

from typing import Iterable, Sequence

from basewatch.models import Dependency, DependencyKind, WatchedDigest
from basewatch.store.database import Database, from_text, now, to_text
from basewatch.store.protocols import TaskEdges


def _watched(row) -> WatchedDigest:
    return WatchedDigest(
        base=row["base"], platform=row["platform"], digest=row["digest"],
        index_digest=row["index_digest"], checked_at=from_text(row["checked_at"]),
        changed_at=from_text(row["changed_at"]), last_error=row["last_error"],
    )


def _dependency(row) -> Dependency:
    return Dependency(task=row["task"], base=row["base"], platform=row["platform"],
                      kind=DependencyKind(row["kind"]), digest_at_build=row["digest_at_build"])


class SQLiteGraphStore:
    def __init__(self, database: Database):
        self.database = database

    async def replace_dependencies(self, task: str,
                                   edges: Iterable[tuple[str, str, DependencyKind]],
                                   digests: dict[tuple[str, str], str | None],
                                   published: Iterable[str] = ()) -> None:
        """Set a task's (base, platform, kind) edges, on every platform it is built for; a
        base seen for the first time starts from `digests[(base, platform)]`; and the images
        it publishes that its definition does not name (a task file's pushes)."""
        await self.replace_many([(task, list(edges), published)], digests)

    async def replace_many(self, tasks: Sequence[TaskEdges],
                           digests: dict[tuple[str, str], str | None]) -> None:
        """Each statement once for the whole batch (executemany), the prune once: one
        transaction for thousands of tasks as the daemon starts, not one each."""
        stamp = to_text(now())
        names = [(task,) for task, _, _ in tasks]
        publishes = [(task, image) for task, _, published in tasks
                     for image in sorted(set(published))]
        rows = [(task, base, platform, kind.value, digests.get((base, platform)))
                for task, edges, _ in tasks for base, platform, kind in edges]
        bases = {(base, platform): digest for _, base, platform, _, digest in rows}
        async with self.database.transaction() as db:
            await db.executemany("DELETE FROM task_publishes WHERE task = ?", names)
            await db.executemany("INSERT INTO task_publishes (task, image) VALUES (?, ?)",
                                 publishes)
            await db.executemany("DELETE FROM dependencies WHERE task = ?", names)
            await db.executemany(
                "INSERT INTO dependencies (task, base, platform, kind, digest_at_build)"
                " VALUES (?, ?, ?, ?, ?)", rows)
            await db.executemany(
                "INSERT INTO watched_digests (base, platform, digest, checked_at)"
                " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [(base, platform, digest, stamp if digest else None)
                 for (base, platform), digest in bases.items()])
            await self._prune(db)

    async def published(self) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for row in await self.database.fetchall("SELECT task, image FROM task_publishes"):
            found.setdefault(row["task"], set()).add(row["image"])
        return found

    async def _prune(self, db) -> None:
        await db.execute(
            "DELETE FROM watched_digests WHERE NOT EXISTS (SELECT 1 FROM dependencies d"
            " WHERE d.base = watched_digests.base AND d.platform = watched_digests.platform)")

    async def prune(self) -> None:
        async with self.database.transaction() as db:
            await self._prune(db)

    async def watched(self) -> list[WatchedDigest]:
        rows = await self.database.fetchall("SELECT * FROM watched_digests ORDER BY base, platform")
        return [_watched(row) for row in rows]

    async def get_watched(self, base: str, platform: str) -> WatchedDigest | None:
        row = await self.database.fetchone(
            "SELECT * FROM watched_digests WHERE base = ? AND platform = ?", (base, platform))
        return _watched(row) if row else None

    async def record_same(self, checks: Iterable[tuple[str, str, str | None]]) -> None:
        """Record unchanged (base, platform, index digest) checks, many in one transaction."""
        stamp = to_text(now())
        async with self.database.transaction() as db:
            await db.executemany(
                "UPDATE watched_digests SET checked_at = ?, last_error = NULL, index_digest = ?"
                " WHERE base = ? AND platform = ?",
                [(stamp, index_digest, base, platform) for base, platform, index_digest in checks])

    async def record_first(self, base: str, platform: str, digest: str,
                           index_digest: str | None) -> None:
        async with self.database.transaction() as db:
            await db.execute(
                "UPDATE watched_digests SET digest = ?, index_digest = ?, checked_at = ?,"
                " last_error = NULL WHERE base = ? AND platform = ?",
                (digest, index_digest, to_text(now()), base, platform))

    async def record_error(self, base: str, platform: str, error: str) -> None:
        async with self.database.transaction() as db:
            await db.execute(
                "UPDATE watched_digests SET checked_at = ?, last_error = ?"
                " WHERE base = ? AND platform = ?", (to_text(now()), error, base, platform))

    async def dependencies(self, task: str | None = None) -> list[Dependency]:
        sql, params = "SELECT * FROM dependencies", ()
        if task is not None:
            sql, params = sql + " WHERE task = ?", (task,)
        rows = await self.database.fetchall(sql + " ORDER BY task, base, platform", params)
        return [_dependency(row) for row in rows]

    async def dependents(self, base: str, platform: str) -> list[Dependency]:
        rows = await self.database.fetchall(
            "SELECT * FROM dependencies WHERE base = ? AND platform = ? ORDER BY task",
            (base, platform))
        return [_dependency(row) for row in rows]

    async def record_build(self, task: str, platform: str, base_digests: dict[str, str]
                           ) -> None:
        """The digests of its bases that a task was just built on, for one platform."""
        async with self.database.transaction() as db:
            for base, digest in base_digests.items():
                await db.execute(
                    "UPDATE dependencies SET digest_at_build = ? WHERE task = ? AND base = ?"
                    " AND platform = ?", (digest, task, base, platform))
