"""A state database made before Alembic (the numbered SQLite migrations, user_version 10) is
taken over in place by the new store: every row reads back, and it goes on working."""
from __future__ import annotations

import shutil
from datetime import datetime, timezone
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.config import Config
from sqlalchemy import text

from basewatch.models import (BaseChange, Dependency, DependencyKind, PushedImage, RunRequest,
                              RunStatus, RunType, SourceCommit, StepRecord, TaskWebhook,
                              Trigger)
from basewatch.store import SQLiteStore
from basewatch.store.schema import metadata

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "store" / "v10.db"
AMD64 = "linux/amd64"
BASE = "reg:5000/base:1"


def head_revision() -> str:
    config = Config()
    config.set_main_option("script_location", "basewatch.store:alembic")
    return ScriptDirectory.from_config(config).get_current_head()


async def schema_differences(store: SQLiteStore) -> list:
    async with store.database.engine.connect() as connection:
        return await connection.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata))


def _fk_key(constraint) -> tuple:
    return (constraint.table.name, tuple(c.name for c in constraint.columns),
            tuple(e.target_fullname for e in constraint.elements))


def beyond_legacy_sqlite(differences: list) -> list:
    """The differences left once two that are SQLite's, not the schema's, are set aside: its
    reflection reads no ON DELETE from a column's inline REFERENCES (the legacy tables have
    CASCADE: the test deletes a task to see it), and a legacy `TEXT PRIMARY KEY` is nullable
    to SQLite alone."""
    flat = [d for item in differences for d in (item if isinstance(item, list) else [item])]
    added = {_fk_key(d[1]) for d in flat if d[0] == "add_fk"}
    removed = {_fk_key(d[1]) for d in flat if d[0] == "remove_fk" and d[1].ondelete is None}
    return [d for d in flat
            if not (d[0] in ("add_fk", "remove_fk") and _fk_key(d[1]) in added & removed)
            and not (d[0] == "modify_nullable" and (d[2], d[3]) in (
                ("runs", "seq"), ("tasks", "name"), ("task_webhooks", "task")))]


async def test_a_database_from_before_alembic_reads_back_whole(tmp_path):
    path = tmp_path / "basewatch.db"
    shutil.copy(FIXTURE, path)
    store = await SQLiteStore.open(path)
    try:
        assert [t.name for t in await store.tasks.all()] == ["api", "app"]
        assert (await store.tasks.get("app")).timers[0].name == "nightly"
        assert await store.graph.dependencies() == [
            Dependency("api", BASE, AMD64, DependencyKind.BUILDTIME, "sha256:" + "a" * 64),
            Dependency("app", BASE, AMD64, DependencyKind.RUNTIME, "sha256:" + "a" * 64)]
        assert [(w.base, w.digest) for w in await store.graph.watched()] == [
            (BASE, "sha256:" + "a" * 64)]
        assert await store.graph.published() == {"app": {"reg:5000/app-extra:1"}}
        (mark,) = await store.timers.marks()
        assert (mark.task, mark.timer, mark.last_scheduled) == (
            "app", "nightly", datetime(2026, 11, 30, 3, tzinfo=timezone.utc))
        assert await store.git_heads.heads() == {"https://git.example/app.git": {"main": "c" * 40}}
        assert await store.webhooks.get("app") == TaskWebhook(
            "app", "s3cret", "gitea", "https://git.example/app.git#main", 4_300_000_001)
        finished = await store.runs.get("ca1")
        assert finished.status is RunStatus.SUCCEEDED
        assert finished.base_change == BaseChange(BASE, AMD64, "sha256:" + "b" * 64)
        assert finished.outputs == [PushedImage("reg:5000/app:1", "sha256:" + "d" * 64)]
        assert await store.runs.steps("ca1") == [
            StepRecord("build", "build", "reg:5000/app:1", "Succeeded", 0.0, 1.5, 1)]
        assert [r.id for r in await store.runs.list(image="reg:5000/app")] == ["ca1"]
        assert [r.id for r in await store.runs.queued()] == ["ca2", "ca3"]
        assert (await store.runs.get("ca3")).values == {"A": "1"}

        # It goes on: ids continue, one run per commit still holds, schema as the code has it.
        commit = RunRequest("app", Trigger.COMMIT, RunType.AUTO_BUILD, AMD64,
                            source_commit=SourceCommit("e" * 40, "main"))
        assert await store.runs.queue([commit]) == []
        manual = await store.runs.create(RunRequest("app", Trigger.MANUAL,
                                                    RunType.AUTO_BUILD, AMD64))
        assert int(manual.id.removeprefix("ca")) > 3  # (the refused commit used a number)
        assert beyond_legacy_sqlite(await schema_differences(store)) == []
        version = await store.database.fetchone(text("SELECT version_num FROM alembic_version"))
        assert version["version_num"] == head_revision()
    finally:
        await store.close()
    store = await SQLiteStore.open(path)  # a second start finds nothing to do
    try:
        assert len(await store.runs.list()) == 4
        assert await store.tasks.delete("app")  # its edges, marks and images go with it
        assert (await store.graph.dependencies("app"), await store.timers.marks(),
                await store.graph.published()) == ([], [], {})
    finally:
        await store.close()


async def test_a_new_database_has_the_schema_the_code_describes(store):
    assert await schema_differences(store) == []


async def test_a_database_main_gave_its_numbered_migration_11_is_stamped_at_the_engine_column(
        tmp_path):
    """user_version 11 (runs.engine, main's last numbered migration before the move to
    Alembic): the column is there already, so the file is stamped, not altered again."""
    import sqlite3
    path = tmp_path / "basewatch.db"
    shutil.copy(FIXTURE, path)
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE runs ADD COLUMN engine TEXT")
        db.execute("UPDATE runs SET engine = 'builder-1' WHERE id = 'ca1'")
        db.execute("PRAGMA user_version=11")
    store = await SQLiteStore.open(path)
    try:
        assert (await store.runs.get("ca1")).engine == "builder-1"
        await store.runs.record_engine("ca2", "builder-2")
        assert (await store.runs.get("ca2")).engine == "builder-2"
        assert beyond_legacy_sqlite(await schema_differences(store)) == []
        version = await store.database.fetchone(text("SELECT version_num FROM alembic_version"))
        assert version["version_num"] == head_revision()
    finally:
        await store.close()


async def test_a_database_from_before_alembic_gains_the_engine_column(tmp_path):
    path = tmp_path / "basewatch.db"
    shutil.copy(FIXTURE, path)
    store = await SQLiteStore.open(path)
    try:
        assert (await store.runs.get("ca1")).engine is None
        await store.runs.record_engine("ca1", "builder-1")
        assert (await store.runs.get("ca1")).engine == "builder-1"
    finally:
        await store.close()
