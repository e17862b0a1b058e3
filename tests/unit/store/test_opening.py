"""Opening the store: migrated on a thread and an event loop of their own (nothing the daemon's
loop serves waits on Alembic), and Alembic not even imported when the database is at the
newest revision already, as on every restart."""
from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

from basewatch.store import migrate
from basewatch.store.database import sqlite_url
from tests.support.stores import database_for, on_postgres, open_store
from tests.unit.store.test_upgrade import head_revision

REPO = Path(__file__).resolve().parents[3]


def test_the_newest_revision_is_alembics_own_head():
    assert migrate.HEAD == head_revision()


async def test_a_database_at_the_newest_revision_opens_without_importing_alembic(tmp_path):
    path = tmp_path / "basewatch.db"
    await (await open_store(path)).close()  # created and migrated
    url = await database_for(path) if on_postgres() else sqlite_url(path)
    code = ("import asyncio, sys\n"
            "from basewatch.store import SQLiteStore\n"
            "async def main():\n"
            f"    await (await SQLiteStore.open_url({url!r})).close()\n"
            "asyncio.run(main())\n"
            "print('alembic' in sys.modules)\n")
    result = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", code], cwd=REPO,
                                     capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


async def test_the_migration_holds_up_nothing_on_the_loop(tmp_path, monkeypatch):
    """The migration here blocks its thread until a task on the test's loop lets it go: were
    it run on that loop, the two would wait on each other."""
    migrating, release = threading.Event(), threading.Event()
    real = migrate.migrate

    async def blocking(database) -> None:
        migrating.set()
        assert release.wait(30), "the loop did not run while the database was migrated"
        await real(database)

    monkeypatch.setattr(migrate, "migrate", blocking)

    async def let_go() -> None:
        await asyncio.to_thread(migrating.wait, 30)
        release.set()

    letting_go = asyncio.create_task(let_go())
    store = await open_store(tmp_path / "basewatch.db")
    try:
        await letting_go
        assert await store.tasks.names() == set()
    finally:
        await store.close()
