"""The store behind interfaces: the SQLite views satisfy the Protocols callers type against,
and SQLite stays inside basewatch/store/ (no caller sees a row, a cursor or an sqlite3 error)."""
from __future__ import annotations

import inspect
import re
import sqlite3
from pathlib import Path

import pytest

from basewatch.errors import StoreBusyError
from basewatch.models import RunRequest, RunType, Trigger
from basewatch.store import Database, SQLiteStore, protocols
from basewatch.store.git_heads import SQLiteGitHeadStore
from basewatch.store.graph import SQLiteGraphStore
from basewatch.store.notifications import SQLiteNotificationStore
from basewatch.store.run_logs import SQLiteRunLogStore
from basewatch.store.runs import SQLiteRunStore
from basewatch.store.tasks import SQLiteTaskStore
from basewatch.store.timers import SQLiteTimerStore
from tests.unit.test_layers import MODULES, basewatch_imports

PACKAGE = Path(__file__).resolve().parents[3] / "basewatch"
SQLITE_ONLY = re.compile(r"\b(aiosqlite|sqlite3|PRAGMA|BEGIN IMMEDIATE|json_each|julianday)\b")


def methods(cls) -> dict[str, inspect.Signature]:
    return {name: inspect.signature(member) for name, member in vars(cls).items()
            if callable(member) and not name.startswith("_")}


@pytest.mark.parametrize("protocol, implementation", [
    (protocols.TaskStore, SQLiteTaskStore), (protocols.GraphStore, SQLiteGraphStore),
    (protocols.RunStore, SQLiteRunStore), (protocols.TimerStore, SQLiteTimerStore),
    (protocols.GitHeadStore, SQLiteGitHeadStore), (protocols.RunLogStore, SQLiteRunLogStore),
    (protocols.NotificationStore, SQLiteNotificationStore)])
def test_each_sqlite_view_has_every_method_of_its_protocol(protocol, implementation):
    wanted, found = methods(protocol), methods(implementation)
    for name, signature in wanted.items():
        assert name in found, f"{implementation.__name__} has no {name}"
        assert list(found[name].parameters) == list(signature.parameters), name
        assert inspect.iscoroutinefunction(getattr(implementation, name)), name


def test_sqlite_stays_inside_the_sqlite_implementation():
    outside = [path for path in PACKAGE.rglob("*.py")
               if "store" not in path.relative_to(PACKAGE).parts[:1] or path.name == "protocols.py"]
    leaks = [f"{path.relative_to(PACKAGE)}: {match.group()}" for path in outside
             for match in [SQLITE_ONLY.search(path.read_text())] if match]
    assert not leaks, leaks


def test_callers_reach_the_store_through_the_package_and_its_protocols():
    allowed = {"basewatch.store", "basewatch.store.protocols"}
    reached = [f"{module} imports {imported}" for module, path in MODULES.items()
               if not module.startswith("basewatch.store")
               for _, imported in basewatch_imports(module, path)
               if imported.startswith("basewatch.store") and imported not in allowed]
    assert not reached, reached


async def test_a_locked_database_is_a_store_busy_error(tmp_path):
    store = SQLiteStore(await Database.open(tmp_path / "basewatch.db", busy_timeout_ms=0))
    try:
        lock = sqlite3.connect(tmp_path / "basewatch.db", isolation_level=None)
        lock.execute("BEGIN IMMEDIATE")  # another process holding the write lock
        try:
            with pytest.raises(StoreBusyError, match="database is locked"):
                await store.runs.create(RunRequest("app", Trigger.MANUAL, RunType.AUTO_BUILD,
                                                   "linux/amd64"))
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        assert await store.runs.list() == []  # nothing written, and the connection usable
    finally:
        await store.close()
