"""Where a bench keeps basewatch's state: a fresh SQLite file, or a PostgreSQL server of its own.

A bench asks for `bench_store("sqlite" | "postgres", workdir)` and gets a `BenchStore`: the
state folder to give the daemon (`state_dir:`), what its config and environment take to use
that database (nothing for SQLite: `state_dir/basewatch.db` is the default), the store itself
for benches that drive basewatch in process, and raw reads for benches that watch a daemon
from outside. The PostgreSQL server (scripts/stack.py) runs without fsync, as the tests' does:
SQLite's WAL with synchronous=NORMAL skips the fsync at commit too, so neither pays for one.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "scripts")]

import stack  # noqa: E402

from basewatch.store import SQLiteStore  # noqa: E402
from basewatch.store.database import sqlite_url  # noqa: E402
from tests.support.stores import postgres_rows  # noqa: E402

STORES = ("sqlite", "postgres")
URL_ENV = "BASEWATCH_DATABASE_URL"


def add_store_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", choices=[*STORES, "both"], default="both",
                        help="the database basewatch keeps its state in (default: both, "
                             "one after the other)")


def chosen(store: str) -> list[str]:
    """The stores an argument names, in the order they run."""
    return list(STORES) if store == "both" else [store]


def stop_daemon(daemon: subprocess.Popen) -> None:
    """SIGTERM, as an operator stops it; killed if it has not stopped within a minute."""
    daemon.send_signal(signal.SIGTERM)
    try:
        daemon.wait(timeout=60)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()


def load_average() -> str:
    """The 1-minute load average, to print beside a figure taken on a shared machine."""
    return f"load average {os.getloadavg()[0]:.2f} (1 min, {os.cpu_count()} cores)"


@dataclass
class BenchStore:
    kind: str  # "sqlite" | "postgres"
    state_dir: Path  # the daemon's state_dir; the SQLite file is in it
    url: str  # the store's SQLAlchemy URL

    def config_lines(self) -> list[str]:
        """The daemon config's lines that put its state in this database."""
        return [f"database: {{url_env: {URL_ENV}}}"] if self.kind == "postgres" else []

    def env(self) -> dict[str, str]:
        """The daemon's environment for those lines."""
        return {URL_ENV: self.url} if self.kind == "postgres" else {}

    async def open(self) -> SQLiteStore:
        """The store, opened (and migrated) in this process."""
        return await SQLiteStore.open_url(self.url)

    async def rows(self, sql: str) -> list[tuple]:
        """Rows of the store, read from outside the daemon that keeps it."""
        if self.kind == "sqlite":
            with contextlib.closing(sqlite3.connect(self.state_dir / "basewatch.db")) as db:
                return db.execute(sql).fetchall()
        return await postgres_rows(self.url, sql)


@contextlib.contextmanager
def bench_store(kind: str, workdir: Path) -> Iterator[BenchStore]:
    """A fresh store of that kind for one bench, its state under `workdir`; a PostgreSQL
    server is started for it and stopped (its files removed) when the block ends."""
    state_dir = Path(tempfile.mkdtemp(prefix=f"state-{kind}-", dir=workdir))
    if kind == "sqlite":
        yield BenchStore(kind, state_dir, sqlite_url(state_dir / "basewatch.db"))
        return
    # A folder outside `workdir`: the server runs as the postgres user, who cannot enter a
    # temporary folder of root's (0700).
    root = Path(tempfile.mkdtemp(prefix="basewatch-bench-pg-"))
    server = stack.Postgres(root, stack.free_port(), durable=False).start()
    try:
        yield BenchStore(kind, state_dir, server.url())
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
