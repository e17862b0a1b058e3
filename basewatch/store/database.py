"""The connection to the store's database, SQLite or PostgreSQL, through SQLAlchemy Core.

SQLite (the default, a file in state_dir) keeps what it always had: WAL, synchronous=NORMAL,
foreign keys, a busy timeout, one connection, and writes in BEGIN IMMEDIATE transactions taken
one at a time. PostgreSQL gets a pool; this process's writes still go one at a time, so both
stores behave alike inside one daemon.

A database that refuses for now (SQLite locked past its busy timeout, a full disk, PostgreSQL
out of reach) raises StoreBusyError, so nothing above the store knows which one it is.
"""
from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timezone
from pathlib import Path
from typing import AsyncIterator, Callable

from sqlalchemy import Table, event, exc, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import RowMapping, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.sql import ColumnElement, Executable, cast, func, select
from sqlalchemy.types import TIMESTAMP

from basewatch.errors import StoreBusyError

SQLITE_BUSY_TIMEOUT_MS = 5000
# The transaction-scoped PostgreSQL advisory lock that serialises queueing across daemons (a
# base change's runs, a timer's fire), so "a task with a queued run gets no second one" holds
# for several daemons on one database as it does for one. A constant of our own ("bsw:queu").
QUEUEING_LOCK = 0x6273773A71756575
_WRITE = "basewatch_write"  # the execution option that makes a connection's BEGIN IMMEDIATE


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
    except exc.OperationalError as error:
        raise StoreBusyError(str(error.orig or error)) from error
    except exc.DBAPIError as error:
        if error.connection_invalidated:  # PostgreSQL went away mid-statement
            raise StoreBusyError(str(error.orig or error)) from error
        raise
    except (OSError, exc.TimeoutError) as error:  # PostgreSQL not reachable, pool exhausted
        raise StoreBusyError(str(error)) from error


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


def _sqlite_engine(url: str, busy_timeout_ms: int) -> AsyncEngine:
    # One connection, as before: SQLite takes one writer at a time anyway, and WAL readers
    # see every commit of it.
    engine = create_async_engine(url, pool_size=1, max_overflow=0)

    @event.listens_for(engine.sync_engine, "connect")
    def _configure(dbapi_connection, _record) -> None:
        # The driver's own BEGIN (deferred, and emitted lazily) is off; _begin says when.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # WAL with synchronous=NORMAL: no corruption on a crash, and commits skip the fsync
        # that would otherwise cap the watcher at a few hundred digest checks a second.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection) -> None:
        # A write takes the write lock up front, so it waits (busy_timeout) at BEGIN rather
        # than failing half-way; a read runs statement by statement, in autocommit.
        if connection.get_execution_options().get(_WRITE):
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _postgres_engine(url: str) -> AsyncEngine:
    return create_async_engine(url, pool_size=5, max_overflow=5, pool_pre_ping=True)


async def lock_queueing(connection: AsyncConnection) -> None:
    """Inside a write transaction: wait until no other daemon is queueing runs, and keep them
    waiting until this transaction ends. SQLite needs nothing: its BEGIN IMMEDIATE already
    lets one writer in at a time, whichever process it is."""
    if connection.dialect.name == "postgresql":
        await connection.execute(select(func.pg_advisory_xact_lock(QUEUEING_LOCK)))


class Database:
    def __init__(self, engine: AsyncEngine):
        self.engine = engine
        self.dialect = engine.dialect.name  # "sqlite" or "postgresql"
        self._writer = engine.execution_options(**{_WRITE: True})
        # This process's writes go one at a time, on either database: what the store's
        # read-then-write transactions were written for.
        self._write_lock = asyncio.Lock()
        # SQLite's one connection is shared: reads wait for it too.
        self._read_lock = self._write_lock if self.dialect == "sqlite" else None
        self._closed = False

    @classmethod
    async def open(cls, path: Path, busy_timeout_ms: int = SQLITE_BUSY_TIMEOUT_MS) -> "Database":
        """The SQLite database at `path`, created and migrated as needed."""
        path.parent.mkdir(parents=True, exist_ok=True)
        return await cls._opened(lambda: _sqlite_engine(sqlite_url(path), busy_timeout_ms))

    @classmethod
    async def open_url(cls, url: str) -> "Database":
        """The database at a SQLAlchemy URL (sqlite+aiosqlite or postgresql+asyncpg)."""
        if make_url(url).get_backend_name() == "sqlite":
            database = make_url(url).database
            return await cls.open(Path(database))
        return await cls._opened(lambda: _postgres_engine(url))

    @classmethod
    async def _opened(cls, new_engine: Callable[[], AsyncEngine]) -> "Database":
        # Migrated through an engine and an event loop of their own, on a thread: Alembic's
        # import and its run (a tenth of a second on a new database, more on a big one) hold
        # up nothing this loop serves, such as /healthz while the daemon starts.
        await asyncio.to_thread(lambda: asyncio.run(cls._migrate(new_engine)))
        return cls(new_engine())

    @classmethod
    async def _migrate(cls, new_engine: Callable[[], AsyncEngine]) -> None:
        from basewatch.store.migrate import migrate  # migrate imports this module

        engine = new_engine()
        try:
            with _busy_as_domain_error():
                await migrate(cls(engine))
        finally:
            await engine.dispose()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction: committed when the block ends, rolled back on an error."""
        async with self._write_lock:
            self._check_open()
            with _busy_as_domain_error():
                async with self._writer.begin() as connection:
                    yield connection

    @contextlib.asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        async with self._read_lock or contextlib.nullcontext():
            self._check_open()
            with _busy_as_domain_error():
                async with self.engine.connect() as connection:
                    yield connection

    async def fetchall(self, statement: Executable, params=None) -> list[RowMapping]:
        async with self._reading() as connection:
            return list((await connection.execute(statement, params)).mappings())

    async def fetchone(self, statement: Executable, params=None) -> RowMapping | None:
        rows = await self.fetchall(statement, params)
        return rows[0] if rows else None

    async def exclusive(self, connection: AsyncConnection, key: int) -> None:
        """Inside a transaction: wait for any other daemon's transaction holding `key` to end
        (PostgreSQL's transaction advisory lock; released at commit). One daemon on SQLite
        writes one transaction at a time anyway."""
        if self.dialect == "postgresql":
            await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})

    def insert(self, table: Table):
        """An INSERT that knows ON CONFLICT, in this database's dialect."""
        return (sqlite if self.dialect == "sqlite" else postgresql).insert(table)

    def instant(self, column) -> ColumnElement:
        """A moment stored as ISO text, as something that compares as an instant (whatever
        offset or precision the text was written with)."""
        if self.dialect == "sqlite":
            return func.julianday(column)
        return cast(column, TIMESTAMP(timezone=True))

    def _check_open(self) -> None:
        # A disposed engine would quietly connect again; a closed store stays closed.
        if self._closed:
            raise RuntimeError("the store is closed")

    async def close(self) -> None:
        self._closed = True
        await self.engine.dispose()
