"""Which database the tests' stores are on: SQLite files (the default) or, with
`pytest --store=postgres` (or BASEWATCH_TEST_STORE=postgres), databases on one PostgreSQL
server the session starts (tests/conftest.py). A test names its store by a path, as it always
did; on PostgreSQL the path picks a database of its own, the same one when the path is opened
again (a restart), a new one for each test."""
from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import sqlite3
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from basewatch.store import SQLiteStore

_server_url: str | None = None  # the session's PostgreSQL server, while --store=postgres


def use_postgres(url: str | None) -> None:
    global _server_url
    _server_url = url


def on_postgres() -> bool:
    return _server_url is not None


async def connect_postgres(url: str, database: str | None = None) -> asyncpg.Connection:
    """A plain asyncpg connection to the database a SQLAlchemy URL names (or to `database`
    on the same server): reading the store from outside, as a person would with psql."""
    parts = make_url(url)
    return await asyncpg.connect(host=parts.host, port=parts.port, user=parts.username,
                                 password=parts.password, database=database or parts.database)


async def postgres_rows(url: str, sql: str) -> list[tuple]:
    connection = await connect_postgres(url)
    try:
        return [tuple(row) for row in await connection.fetch(sql)]
    finally:
        await connection.close()


async def database_for(path: Path) -> str:
    """A PostgreSQL database of this path's own (created on first use); its URL."""
    name = "t_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:24]
    admin = await connect_postgres(_server_url, "postgres")
    try:
        if not await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return make_url(_server_url).set(database=name).render_as_string(hide_password=False)


async def open_store(path: Path) -> SQLiteStore:
    """The store a test keeps at `path`: that SQLite file, or its PostgreSQL database."""
    if _server_url is None:
        return await SQLiteStore.open(path)
    return await SQLiteStore.open_url(await database_for(path))


def _blocking(coroutine):
    """Run a coroutine to its end from sync code, inside a running loop or not."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def daemon_database(state_dir: Path) -> tuple[dict, dict[str, str]]:
    """For a daemon started as a process on `state_dir`: what its config and environment take
    to keep its state on the session's PostgreSQL (nothing on SQLite)."""
    if _server_url is None:
        return {}, {}
    url = _blocking(database_for(state_dir / "basewatch.db"))
    return {"database": {"url_env": "BASEWATCH_DATABASE_URL"}}, {"BASEWATCH_DATABASE_URL": url}


def query(state_dir: Path, sql: str) -> list[tuple]:
    """Rows of a daemon's store, read from outside it as a person would (sqlite3 or psql)."""
    if _server_url is None:
        with sqlite3.connect(state_dir / "basewatch.db") as db:
            return db.execute(sql).fetchall()

    async def rows() -> list[tuple]:
        return await postgres_rows(await database_for(state_dir / "basewatch.db"), sql)
    return _blocking(rows())


def execute(state_dir: Path, sql: str) -> None:
    """A change to a daemon's store made from outside it (the daemon stopped)."""
    if _server_url is None:
        with sqlite3.connect(state_dir / "basewatch.db") as db:
            db.execute(sql)
        return
    query(state_dir, sql)
