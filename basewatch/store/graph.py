"""The dependency graph's edges and what the watcher last saw of each base."""
from __future__ import annotations

from typing import Iterable, Sequence

from sqlalchemy import bindparam, delete, exists, insert, select, update

from basewatch.models import Dependency, DependencyKind, WatchedDigest
from basewatch.store.database import Database, from_text, now, to_text
from basewatch.store.protocols import TaskEdges
from basewatch.store.schema import dependencies, task_publishes, watched_digests

GRAPH_LOCK = 0x62776772  # "bwgr": registrations writing the graph, one at a time


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
        names = [{"b_task": task} for task, _, _ in tasks]
        publishes = [{"task": task, "image": image} for task, _, published in tasks
                     for image in sorted(set(published))]
        rows = [{"task": task, "base": base, "platform": platform, "kind": kind.value,
                 "digest_at_build": digests.get((base, platform))}
                for task, edges, _ in tasks for base, platform, kind in edges]
        bases = {(row["base"], row["platform"]): row["digest_at_build"] for row in rows}
        async with self.database.transaction() as db:
            # Daemons starting together on one PostgreSQL register the same config: one
            # batch at a time, or two would delete and insert the same rows at once.
            await self.database.exclusive(db, GRAPH_LOCK)
            # Each statement executed for the whole batch at once (executemany); an empty
            # list would run a statement once with no values at all, so those are skipped.
            if names:
                await db.execute(delete(task_publishes).where(
                    task_publishes.c.task == bindparam("b_task")), names)
                await db.execute(delete(dependencies).where(
                    dependencies.c.task == bindparam("b_task")), names)
            if publishes:
                await db.execute(insert(task_publishes), publishes)
            if rows:
                await db.execute(insert(dependencies), rows)
                await db.execute(
                    self.database.insert(watched_digests).on_conflict_do_nothing(),
                    [{"base": base, "platform": platform, "digest": digest,
                      "checked_at": stamp if digest else None}
                     for (base, platform), digest in bases.items()])
            await self._prune(db)

    async def published(self) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for row in await self.database.fetchall(select(task_publishes)):
            found.setdefault(row["task"], set()).add(row["image"])
        return found

    async def _prune(self, db) -> None:
        await db.execute(delete(watched_digests).where(~exists().where(
            dependencies.c.base == watched_digests.c.base,
            dependencies.c.platform == watched_digests.c.platform)))

    async def prune(self) -> None:
        async with self.database.transaction() as db:
            await self._prune(db)

    async def watched(self) -> list[WatchedDigest]:
        rows = await self.database.fetchall(
            select(watched_digests).order_by(watched_digests.c.base, watched_digests.c.platform))
        return [_watched(row) for row in rows]

    async def get_watched(self, base: str, platform: str) -> WatchedDigest | None:
        row = await self.database.fetchone(select(watched_digests).where(
            watched_digests.c.base == base, watched_digests.c.platform == platform))
        return _watched(row) if row else None

    async def record_same(self, checks: Iterable[tuple[str, str, str, str | None]]) -> None:
        """Record unchanged (base, platform, digest, index digest) checks, many in one
        transaction. A row whose digest is another by now (another daemon recorded a change
        since this one read it) is left alone: an older check never writes over a newer one."""
        stamp = to_text(now())
        # In one order, so two daemons' batches over the same rows cannot deadlock.
        checks = [{"b_base": base, "b_platform": platform, "b_digest": digest,
                   "index_digest": index_digest}
                  for base, platform, digest, index_digest in sorted(checks)]
        if not checks:
            return
        async with self.database.transaction() as db:
            await db.execute(
                update(watched_digests)
                .where(watched_digests.c.base == bindparam("b_base"),
                       watched_digests.c.platform == bindparam("b_platform"),
                       watched_digests.c.digest == bindparam("b_digest"))
                .values(checked_at=stamp, last_error=None,
                        index_digest=bindparam("index_digest")), checks)

    async def record_first(self, base: str, platform: str, digest: str,
                           index_digest: str | None) -> bool:
        """The first digest seen of a reference; False, and nothing written, when it has one
        already (another daemon recorded it, or a change, first: a change is only ever recorded
        with its runs)."""
        async with self.database.transaction() as db:
            result = await db.execute(
                update(watched_digests)
                .where(watched_digests.c.base == base, watched_digests.c.platform == platform,
                       watched_digests.c.digest.is_(None))
                .values(digest=digest, index_digest=index_digest, checked_at=to_text(now()),
                        last_error=None))
            return result.rowcount > 0

    async def record_error(self, base: str, platform: str, error: str) -> None:
        async with self.database.transaction() as db:
            await db.execute(
                update(watched_digests)
                .where(watched_digests.c.base == base, watched_digests.c.platform == platform)
                .values(checked_at=to_text(now()), last_error=error))

    async def dependencies(self, task: str | None = None) -> list[Dependency]:
        query = select(dependencies).order_by(dependencies.c.task, dependencies.c.base,
                                              dependencies.c.platform)
        if task is not None:
            query = query.where(dependencies.c.task == task)
        return [_dependency(row) for row in await self.database.fetchall(query)]

    async def dependents(self, base: str, platform: str) -> list[Dependency]:
        rows = await self.database.fetchall(
            select(dependencies)
            .where(dependencies.c.base == base, dependencies.c.platform == platform)
            .order_by(dependencies.c.task))
        return [_dependency(row) for row in rows]

    async def record_build(self, task: str, platform: str, base_digests: dict[str, str]
                           ) -> None:
        """The digests of its bases that a task was just built on, for one platform."""
        if not base_digests:
            return
        async with self.database.transaction() as db:
            await db.execute(
                update(dependencies)
                .where(dependencies.c.task == task, dependencies.c.platform == platform,
                       dependencies.c.base == bindparam("b_base"))
                .values(digest_at_build=bindparam("digest")),
                [{"b_base": base, "digest": digest} for base, digest in base_digests.items()])
