"""The graph store: edges per (task, base, platform), and the migration that made them so."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from basewatch.models import DependencyKind
from basewatch.store.legacy_migrations import MIGRATIONS
from basewatch.tasks import Task
from basewatch.store import SQLiteStore
from tests.support.stores import open_store

BASE = "reg:5000/base:1"
RUNTIME = DependencyKind.RUNTIME


@pytest.fixture
async def store(tmp_path: Path):
    store = await open_store(tmp_path / "basewatch.db")
    yield store
    await store.close()


async def test_a_task_has_an_edge_per_platform_and_each_records_its_own_build(store):
    await store.tasks.upsert(Task(name="app", context="/srv/app", images=["r:5000/a:1"]), "api")
    await store.graph.replace_dependencies(
        "app", [(BASE, "linux/amd64", RUNTIME), (BASE, "linux/arm64", RUNTIME)],
        {(BASE, "linux/amd64"): "sha256:a", (BASE, "linux/arm64"): "sha256:b"})
    await store.graph.record_build("app", "linux/arm64", {BASE: "sha256:c"})
    edges = {(d.platform, d.digest_at_build) for d in await store.graph.dependencies("app")}
    assert edges == {("linux/amd64", "sha256:a"), ("linux/arm64", "sha256:c")}
    watched = {(w.platform, w.digest) for w in await store.graph.watched()}
    assert watched == {("linux/amd64", "sha256:a"), ("linux/arm64", "sha256:b")}
    assert [d.task for d in await store.graph.dependents(BASE, "linux/arm64")] == ["app"]


async def test_the_migration_keeps_the_edges_an_older_version_stored(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # a database as version 3 of the schema left it
        for script in MIGRATIONS[:3]:
            db.executescript(script)
        db.execute("PRAGMA user_version=3")
        db.execute("INSERT INTO tasks VALUES ('app', 'config', '{}', '', '')")
        db.execute("INSERT INTO dependencies VALUES ('app', ?, 'linux/amd64', 'runtime', 'sha256:a')",
                   (BASE,))
    store = await SQLiteStore.open(path)  # a SQLite file an older version made
    try:
        [edge] = await store.graph.dependencies()
        assert (edge.task, edge.base, edge.platform, edge.digest_at_build) == (
            "app", BASE, "linux/amd64", "sha256:a")
        await store.graph.replace_dependencies(  # now one base on two platforms
            "app", [(BASE, "linux/amd64", RUNTIME), (BASE, "linux/arm64", RUNTIME)], {})
        assert len(await store.graph.dependencies()) == 2
        await store.tasks.delete("app")  # the foreign key still cascades
        assert await store.graph.dependencies() == []
    finally:
        await store.close()
