"""Retention: old finished runs and their logs go; archived and unfinished runs stay."""
from __future__ import annotations

import asyncio
import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text

from basewatch import retention
from basewatch.builder.run_log import log_path
from basewatch.models import RunRequest, RunStatus, RunType, Trigger
from basewatch.retention import PurgeResult, RetentionSchedule, purge
from basewatch.store import Store
from basewatch.store.database import to_text
from tests.support.waiting import wait_for
from tests.support.stores import open_store

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=timezone.utc)
RETENTION = timedelta(days=30)


SET_QUEUED_AT = text("UPDATE runs SET queued_at = :moment WHERE id = :id")
SET_FINISHED_AT = text("UPDATE runs SET finished_at = :moment WHERE id = :id")


@pytest.fixture
async def store(tmp_path: Path):
    store = await open_store(tmp_path / "db")
    yield store
    await store.close()


@pytest.fixture
def logs_dir(tmp_path: Path) -> Path:
    path = tmp_path / "logs"
    path.mkdir()
    return path


async def make_run(store: Store, logs_dir: Path, *, status: RunStatus | None = RunStatus.SUCCEEDED,
                   age: timedelta | None = None, archived: bool = False,
                   never_finished_at: bool = False) -> str:
    """A run with a log file; `age`: how long before NOW it finished (queued, if unfinished)."""
    run = await store.runs.create(RunRequest("app", Trigger.MANUAL, RunType.QUICK_BUILD,
                                             "linux/amd64", "test"))
    if status is RunStatus.RUNNING:
        await store.runs.mark_started(run.id)
    elif status is not None and status is not RunStatus.QUEUED:
        await store.runs.finish(run.id, status)
    if archived:
        await store.runs.set_archived(run.id, True, f"127.0.0.1:5000/logs:{run.id}@sha256:0")
    if age is not None:
        moment = to_text(NOW - age)
        async with store.database.transaction() as db:
            await db.execute(SET_QUEUED_AT, {"moment": moment, "id": run.id})
            if status is not None and status.finished:
                finished = None if never_finished_at else moment
                await db.execute(SET_FINISHED_AT, {"moment": finished, "id": run.id})
    log_path(logs_dir, run.id).write_text(f"log of {run.id}\n")
    return run.id


async def ids(store: Store) -> set[str]:
    return {run.id for run in await store.runs.list(top=1000)}


async def test_old_finished_runs_go_with_their_logs(store, logs_dir):
    old = [await make_run(store, logs_dir, status=status, age=timedelta(days=31))
           for status in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELED,
                          RunStatus.ERROR, RunStatus.TIMEOUT)]
    recent = await make_run(store, logs_dir, age=timedelta(days=29))

    result = await purge(store.runs, logs_dir, RETENTION, now=NOW)

    assert result == PurgeResult(runs=5, logs=5)
    assert await ids(store) == {recent}
    assert sorted(p.name for p in logs_dir.iterdir()) == [f"{recent}.log"]
    assert not any(log_path(logs_dir, run_id).exists() for run_id in old)
    assert await purge(store.runs, logs_dir, RETENTION, now=NOW) == PurgeResult(0, 0)


async def test_archived_runs_are_kept_however_old(store, logs_dir):
    archived = await make_run(store, logs_dir, age=timedelta(days=400), archived=True)
    assert await purge(store.runs, logs_dir, RETENTION, now=NOW) == PurgeResult(0, 0)
    assert await ids(store) == {archived}
    assert log_path(logs_dir, archived).read_text() == f"log of {archived}\n"


@pytest.mark.parametrize("status", [RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.STARTED])
async def test_queued_and_running_runs_are_never_purged(store, logs_dir, status):
    run_id = await make_run(store, logs_dir, status=status, age=timedelta(days=90))
    if status is RunStatus.STARTED:  # no store method sets it: the engine adapter's state
        async with store.database.transaction() as db:
            await db.execute(text("UPDATE runs SET status = :status WHERE id = :id"),
                             {"status": status.value, "id": run_id})
    old_mtime = (NOW - timedelta(days=90)).timestamp()
    os.utime(log_path(logs_dir, run_id), (old_mtime, old_mtime))

    assert await purge(store.runs, logs_dir, RETENTION, now=NOW) == PurgeResult(0, 0)
    assert (await store.runs.get(run_id)).status is status
    assert log_path(logs_dir, run_id).exists(), "an old log of a run still there stays"


async def test_a_finished_run_without_finish_time_ages_from_when_it_was_queued(store, logs_dir):
    old = await make_run(store, logs_dir, age=timedelta(days=31), never_finished_at=True)
    recent = await make_run(store, logs_dir, age=timedelta(days=1), never_finished_at=True)
    assert await purge(store.runs, logs_dir, RETENTION, now=NOW) == PurgeResult(1, 1)
    assert await ids(store) == {recent}
    assert not log_path(logs_dir, old).exists()


async def test_age_compares_instants_whatever_the_offset_written(store, logs_dir):
    run_id = await make_run(store, logs_dir)
    # 31 days old, written with a +02:00 offset and no fraction, where the store writes UTC.
    written = (NOW - timedelta(days=31)).astimezone(timezone(timedelta(hours=2)))
    async with store.database.transaction() as db:
        await db.execute(SET_FINISHED_AT, {"moment": written.replace(microsecond=0).isoformat(),
                                          "id": run_id})
    assert await purge(store.runs, logs_dir, RETENTION, now=NOW) == PurgeResult(1, 1)


async def test_a_run_without_a_log_file_is_purged_all_the_same(store, logs_dir):
    run_id = await make_run(store, logs_dir, age=timedelta(days=31))
    log_path(logs_dir, run_id).unlink()
    assert await purge(store.runs, logs_dir, RETENTION, now=NOW) == PurgeResult(1, 0)


async def test_stray_logs_go_once_they_are_old(store, logs_dir):
    kept = await make_run(store, logs_dir, age=timedelta(days=1))
    old_stray, new_stray = log_path(logs_dir, "ca9001"), log_path(logs_dir, "ca9002")
    not_a_run_log = logs_dir / "notes.log"
    for path in (old_stray, new_stray, not_a_run_log):
        path.write_text("stray\n")
    old_mtime = (NOW - timedelta(days=31)).timestamp()
    for path in (old_stray, not_a_run_log, log_path(logs_dir, kept)):
        os.utime(path, (old_mtime, old_mtime))

    assert await purge(store.runs, logs_dir, RETENTION, now=NOW) == PurgeResult(0, 1)
    assert sorted(p.name for p in logs_dir.iterdir()) == sorted(
        [f"{kept}.log", new_stray.name, not_a_run_log.name])


async def test_with_daemons_sharing_the_store_each_ones_files_and_the_shared_copy_go(
        store, logs_dir, tmp_path):
    # Daemon A ran the run (its file, and the log's copy in the database); daemon B kept a
    # file of an older run of its own. A's purge takes the rows and their log copy; B's next
    # purge finds its file's run gone and removes it as a stray.
    ran_on_a = await make_run(store, logs_dir, age=timedelta(days=31))
    ran_on_b = await make_run(store, logs_dir, age=timedelta(days=31))
    b_logs = tmp_path / "b-logs"
    b_logs.mkdir()
    log_path(logs_dir, ran_on_b).rename(log_path(b_logs, ran_on_b))
    old_mtime = (NOW - timedelta(days=31)).timestamp()
    os.utime(log_path(b_logs, ran_on_b), (old_mtime, old_mtime))
    await store.run_logs.append([(ran_on_a, 0, b"log of A's run\n"),
                                 (ran_on_b, 0, b"log of B's run\n")])

    assert await purge(store.runs, logs_dir, RETENTION, now=NOW) == PurgeResult(2, 1)
    assert [await store.run_logs.size(run) for run in (ran_on_a, ran_on_b)] == [0, 0]
    assert log_path(b_logs, ran_on_b).exists()
    assert await purge(store.runs, b_logs, RETENTION, now=NOW) == PurgeResult(0, 1)
    assert list(b_logs.iterdir()) == []


async def test_missing_logs_dir_is_no_error(store, tmp_path):
    await make_run(store, tmp_path, age=timedelta(days=31))
    assert await purge(store.runs, tmp_path / "absent", RETENTION, now=NOW) == PurgeResult(1, 0)


async def test_schedule_purges_shortly_after_start_and_then_each_interval(store, logs_dir):
    first = await make_run(store, logs_dir)
    async with store.database.transaction() as db:
        await db.execute(SET_FINISHED_AT, {"moment": to_text(datetime.now(timezone.utc)
                                                             - timedelta(seconds=5)),
                                          "id": first})
    schedule = RetentionSchedule(store.runs, logs_dir, timedelta(seconds=2),
                                 interval=timedelta(milliseconds=50))
    schedule.start()
    try:
        async def first_gone():
            return await store.runs.get(first) is None
        await wait_for(first_gone, 10, "the first purge", interval=0.02)
        assert not log_path(logs_dir, first).exists()

        # A later run ages past the retention while the daemon runs: a later purge takes it.
        second = await make_run(store, logs_dir)
        async with store.database.transaction() as db:
            await db.execute(SET_FINISHED_AT, {"moment": to_text(datetime.now(timezone.utc)
                                                                 - timedelta(seconds=5)),
                                              "id": second})

        async def second_gone():
            return await store.runs.get(second) is None
        await wait_for(second_gone, 10, "a later purge", interval=0.02)
        assert schedule.last_result == PurgeResult(runs=1, logs=1)
    finally:
        await schedule.stop()
    purges = schedule.purges
    await schedule.stop()  # a second stop is harmless
    assert schedule.purges == purges, "no purge after stop"


async def test_schedule_first_purge_waits_for_the_delay(store, logs_dir):
    schedule = RetentionSchedule(store.runs, logs_dir, timedelta(days=30))
    schedule.start()
    try:
        assert schedule.first_purge_delay == timedelta(seconds=30)
        assert schedule.purges == 0
    finally:
        await schedule.stop()


async def test_a_failing_purge_is_logged_and_the_schedule_goes_on(store, logs_dir, caplog):
    await store.close()  # every purge now fails on the closed database
    schedule = RetentionSchedule(store.runs, logs_dir, timedelta(days=30),
                                 interval=timedelta(milliseconds=20))
    schedule.start()
    try:
        async def two_attempts():
            return schedule.purges >= 2
        await wait_for(two_attempts, 10, "two purge attempts", interval=0.02)
    finally:
        await schedule.stop()
    assert "retention: purge failed" in caplog.text
    assert schedule.last_result is None


async def test_stop_lets_a_purge_in_progress_finish(store, logs_dir, monkeypatch):
    started, release, finished = asyncio.Event(), asyncio.Event(), asyncio.Event()

    async def slow_purge(*args, **kwargs):
        started.set()
        await release.wait()
        finished.set()
        return PurgeResult(0, 0)

    monkeypatch.setattr(retention, "purge", slow_purge)
    schedule = RetentionSchedule(store.runs, logs_dir, timedelta(days=30),
                                 interval=timedelta(milliseconds=20))
    schedule.start()
    await asyncio.wait_for(started.wait(), 10)
    stopping = asyncio.create_task(schedule.stop())
    await asyncio.sleep(0.1)  # ample for stop() to run, were it not waiting for the purge
    assert not stopping.done(), "stop() waits for the purge in progress"
    release.set()
    await asyncio.wait_for(stopping, 10)
    assert finished.is_set() and schedule.purges == 1
