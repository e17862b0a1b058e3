"""The SQLite connection: WAL, foreign keys, migrations, and one transaction at a time.

SQLite's own failures (the database locked past busy_timeout, a full disk) leave here as
StoreBusyError, so nothing above the store knows it is SQLite.
"""
from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import AsyncIterator

import aiosqlite

from basewatch.errors import StoreBusyError
from basewatch.store.migrations import MIGRATIONS


def now() -> datetime:
    return datetime.now(timezone.utc)


def to_text(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def from_text(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


@contextlib.contextmanager
def _busy_as_domain_error():
    try:
        yield
    except sqlite3.OperationalError as exc:
        raise StoreBusyError(str(exc)) from exc


class Database:
    def __init__(self, connection: aiosqlite.Connection):
        self.connection = connection
        # One shared connection: transactions must not interleave on it.
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> "Database":
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = await aiosqlite.connect(path, isolation_level=None)
        connection.row_factory = aiosqlite.Row
        await connection.execute("PRAGMA journal_mode=WAL")
        # WAL with synchronous=NORMAL: no corruption on a crash, and commits skip the fsync
        # that would otherwise cap the watcher at a few hundred digest checks a second.
        await connection.execute("PRAGMA synchronous=NORMAL")
        await connection.execute("PRAGMA foreign_keys=ON")
        await connection.execute("PRAGMA busy_timeout=5000")
        database = cls(connection)
        await database.migrate()
        return database

    async def migrate(self) -> None:
        (version,) = await (await self.connection.execute("PRAGMA user_version")).fetchone()
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            async with self.transaction() as db:
                for statement in filter(str.strip, script.split(";")):
                    await db.execute(statement)
                await db.execute(f"PRAGMA user_version={number}")

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._lock:
            with _busy_as_domain_error():
                await self.connection.execute("BEGIN IMMEDIATE")
                try:
                    yield self.connection
                    # A COMMIT refused (the database locked or full) must not leave the shared
                    # connection inside a transaction that every later BEGIN would trip over.
                    await self.connection.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.OperationalError):  # none to roll back
                        await self.connection.execute("ROLLBACK")
                    raise

    async def fetchall(self, sql: str, params: tuple = ()) -> list[aiosqlite.Row]:
        async with self._lock:
            with _busy_as_domain_error():
                return list(await self.connection.execute_fetchall(sql, params))

    async def fetchone(self, sql: str, params: tuple = ()) -> aiosqlite.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def close(self) -> None:
        await self.connection.close()
