"""The trigger seam: every source creates runs through `Triggers.enqueue`, durably, in one
transaction, and what fired a run is stored with it and read back (a real store on disk)."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy.exc

from basewatch.config import TaskSettings
from basewatch.models import (BaseChange, DigestChange, DependencyKind, RunRequest, RunStatus, RunType,
                              Trigger)
from basewatch.services import Services
from basewatch.store import Store
from basewatch.store.legacy_migrations import MIGRATIONS
from basewatch.triggers import NewDigest, Triggers
from basewatch.triggers.base_image import FanOut, base_image_run
from basewatch.triggers.manual import quick_build, task_run
from basewatch.watcher.registration import TaskRegistrar
from tests.support.fake_registry import SeenDigests
from basewatch.store import SQLiteStore
from tests.support.stores import open_store

BASE = "reg.example:5000/base:1"
PLATFORM = "linux/amd64"
OLD, NEW, NEWER = ("sha256:" + c * 64 for c in "abc")


@pytest.fixture
async def store(tmp_path: Path):
    store = await open_store(tmp_path / "basewatch.db")
    yield store
    await store.close()


@pytest.fixture
def submitted() -> list[tuple[str, float]]:
    return []


@pytest.fixture
def triggers(store, submitted) -> Triggers:
    return Triggers(store.runs, lambda run_id, delay: submitted.append((run_id, delay)))


async def test_enqueue_writes_every_run_then_submits_each(store, triggers, submitted):
    run_ids = await triggers.enqueue([task_run("a", PLATFORM, {}), task_run("b", PLATFORM, {})],
                                     delay=2.0)
    assert submitted == [(run_ids[0], 2.0), (run_ids[1], 2.0)]
    assert [run.id for run in await store.runs.queued()] == run_ids


async def test_enqueue_writes_all_or_nothing(store, triggers, submitted):
    broken = RunRequest("b", Trigger.MANUAL, RunType.AUTO_BUILD, None)  # platform is NOT NULL
    with pytest.raises(sqlalchemy.exc.IntegrityError):
        await triggers.enqueue([task_run("a", PLATFORM, {}), broken])
    assert await store.runs.queued() == [] and submitted == []


async def test_a_base_image_run_stores_the_change_that_fired_it(store, triggers):
    (run_id,) = await triggers.enqueue([base_image_run("app", BASE, PLATFORM, NEW)])
    run = await store.runs.get(run_id)
    assert run.trigger is Trigger.IMAGE_UPDATE
    assert run.base_change == BaseChange(BASE, PLATFORM, NEW)
    assert run.reason == f"base {BASE} ({PLATFORM}) changed to {NEW}"


async def test_a_manual_run_has_no_base_change(store, triggers):
    (run_id,) = await triggers.enqueue([task_run("app", PLATFORM, {"x": 1})])
    run = await store.runs.get(run_id)
    assert (run.trigger, run.run_type, run.values, run.base_change) == \
        (Trigger.MANUAL, RunType.AUTO_BUILD, {"x": "1"}, None)
    (quick_id,) = await triggers.enqueue([quick_build(PLATFORM, '{"file": "Dockerfile"}')])
    quick = await store.runs.get(quick_id)
    assert (quick.task, quick.run_type, quick.spec) == \
        ("", RunType.QUICK_BUILD, '{"file": "Dockerfile"}')


async def add_task(store: Store, name: str) -> None:
    await store.tasks.upsert(TaskSettings(name=name, context=Path("/nowhere"),
                                          image=[f"reg/{name}"]).to_task(), "config")
    await store.graph.replace_dependencies(name, [(BASE, PLATFORM, DependencyKind.RUNTIME)],
                                           {(BASE, PLATFORM): OLD})


async def test_a_base_change_records_the_digest_with_its_runs(store, triggers, submitted):
    await add_task(store, "app")
    run_ids = await FanOut(store, triggers, settle=1.5).on_change(
        DigestChange(BASE, PLATFORM, OLD, NEW, None))
    assert submitted == [(run_ids[0], 1.5)]
    (watched,) = await store.graph.watched()
    assert watched.digest == NEW
    run = await store.runs.get(run_ids[0])
    assert run.base_change == BaseChange(BASE, PLATFORM, NEW)


async def test_a_base_change_reads_only_the_dependents_definitions(store, triggers,
                                                                   monkeypatch):
    await add_task(store, "app")
    await store.tasks.upsert(TaskSettings(name="elsewhere", context=Path("/nowhere"),
                                          image=["reg/elsewhere"]).to_task(), "config")
    read = []
    named = store.tasks.named

    async def recorded(names):
        names = list(names)
        read.append(names)
        return await named(names)

    async def every_task(source=None):
        raise AssertionError("a fan-out reads its dependents, not every task")

    monkeypatch.setattr(store.tasks, "named", recorded)
    monkeypatch.setattr(store.tasks, "all", every_task)
    run_ids = await FanOut(store, triggers).on_change(DigestChange(BASE, PLATFORM, OLD, NEW, None))
    assert read == [["app"]]
    assert [(await store.runs.get(run_id)).task for run_id in run_ids] == ["app"]


async def test_a_queued_run_records_the_latest_change_that_fired_it(store, triggers):
    await add_task(store, "app")
    fanout = FanOut(store, triggers)
    (run_id,) = await fanout.on_change(DigestChange(BASE, PLATFORM, OLD, NEW, None))
    assert await fanout.on_change(DigestChange(BASE, PLATFORM, NEW, NEWER, None)) == []
    assert (await store.runs.get(run_id)).base_change.digest == NEWER


async def test_a_digest_change_without_runs_is_still_recorded(store, triggers, submitted):
    await add_task(store, "app")
    assert await triggers.enqueue([], new_digest=NewDigest(BASE, PLATFORM, NEW)) == []
    assert (await store.graph.watched())[0].digest == NEW and submitted == []


async def test_a_rerun_after_a_restart_keeps_what_fired_it(store, triggers):
    (run_id,) = await triggers.enqueue([base_image_run("app", BASE, PLATFORM, NEW)])
    await store.runs.mark_started(run_id)
    ((failed, rerun),) = await store.runs.fail_unfinished("stopped")
    assert (await store.runs.get(rerun)).base_change == BaseChange(BASE, PLATFORM, NEW)


async def test_runs_from_before_the_trigger_data_column_read_back(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        for script in MIGRATIONS[:3]:
            db.executescript(script)
        db.execute("PRAGMA user_version=3")
        db.execute("INSERT INTO runs (id, task, run_type, trigger, status, platform, queued_at)"
                   " VALUES ('ca1', 'app', 'AutoBuild', 'Image Update', 'Queued', ?, ?)",
                   (PLATFORM, "2026-01-01T00:00:00+00:00"))
    store = await SQLiteStore.open(path)  # a SQLite file an older version made
    try:
        run = await store.runs.get("ca1")
        assert run.status is RunStatus.QUEUED and run.base_change is None
    finally:
        await store.close()


class Executor:
    log_updates = None
    logs_dir = None  # no run here reads a log


async def test_manual_runs_and_quick_builds_go_through_the_seam(tmp_path, store, submitted):
    calls = []

    class Recording(Triggers):
        async def enqueue(self, requests, **kwargs):
            calls.append([r.run_type for r in requests])
            return await super().enqueue(requests, **kwargs)

    registrar = TaskRegistrar(store, SeenDigests(), "reg.example:5000")
    (tmp_path / "Dockerfile").write_text(f"FROM {BASE}\n")
    await registrar.register(TaskSettings(name="app", context=tmp_path,
                                          image=["reg.example:5000/app:1"]).to_task(), "api")
    services = Services(store, registrar, Executor(),
                        Recording(store.runs, lambda run_id, delay: submitted.append(run_id)))
    view = await services.run_task("app", {})
    assert view["base_change"] is None and view["status"] == "Queued"
    await services.quick_build({"context_url": "https://example.com/repo.git", "push": False})
    assert calls == [[RunType.AUTO_BUILD], [RunType.QUICK_BUILD]]
    assert len(submitted) == 2
