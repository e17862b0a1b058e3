"""Commit and pull-request runs in the store: what fired them is kept with them, and a
(task, commit) gets one run however often and however concurrently it is queued; an
interrupted one is still re-run (a real SQLite store on disk)."""
from __future__ import annotations

import asyncio
import sqlite3

from basewatch.models import RunRequest, RunStatus, RunType, SourceCommit, Trigger
from basewatch.services import run_view
from basewatch.store.legacy_migrations import MIGRATIONS
from basewatch.store import SQLiteStore

PLATFORM = "linux/amd64"
A, B = "a" * 40, "b" * 40


def commit_run(task: str, sha: str = A, branch: str = "main") -> RunRequest:
    return RunRequest(task, Trigger.COMMIT, RunType.AUTO_BUILD, PLATFORM,
                      f"commit {sha[:12]} pushed to {branch}",
                      source_commit=SourceCommit(sha, branch))


def pull_request_run(task: str, number: int, sha: str = A) -> RunRequest:
    return RunRequest(task, Trigger.PULL_REQUEST, RunType.AUTO_BUILD, PLATFORM, "",
                      source_commit=SourceCommit(sha, "feature", number, "main",
                                                 f"refs/pull/{number}/head"))


async def test_a_commit_run_keeps_what_fired_it(store):
    (run_id,) = await store.runs.queue([pull_request_run("app", 7)])
    run = await store.runs.get(run_id)
    assert (run.trigger, run.run_type) == (Trigger.PULL_REQUEST, RunType.AUTO_BUILD)
    assert run.source_commit == SourceCommit(A, "feature", 7, "main", "refs/pull/7/head")
    assert run.base_change is None
    assert run_view(run)["source_commit"] == {
        "commit": A, "branch": "feature", "pull_request": 7, "target_branch": "main",
        "fetch_ref": "refs/pull/7/head"}
    assert run_view(await store.runs.get((await store.runs.queue([commit_run("x")]))[0])
                    )["trigger"] == "Commit"


async def test_the_same_commit_queued_again_gives_no_second_run(store):
    (first,) = await store.runs.queue([commit_run("app")])
    await store.runs.mark_started(first)
    await store.runs.finish(first, RunStatus.SUCCEEDED)
    # A redelivery, or a poll seeing the commit on another branch, once it has run.
    assert await store.runs.queue([commit_run("app")]) == []
    assert await store.runs.queue([commit_run("app", branch="release")]) == []
    assert [r.id for r in await store.runs.list(task="app")] == [first]


async def test_one_run_per_task_and_commit_even_concurrently(store):
    batches = await asyncio.gather(*(store.runs.queue([commit_run("app"), commit_run("web")])
                                     for _ in range(10)))
    assert sorted(len(ids) for ids in batches) == [0] * 9 + [2]
    assert sorted(r.task for r in await store.runs.queued()) == ["app", "web"]


async def test_a_new_commit_or_a_pull_request_is_a_run_of_its_own(store):
    assert len(await store.runs.queue([commit_run("app", A)])) == 1
    assert len(await store.runs.queue([commit_run("app", B)])) == 1
    # A pull request at a commit already pushed still runs: another trigger, another check.
    assert len(await store.runs.queue([pull_request_run("app", 1, A)])) == 1
    assert await store.runs.queue([pull_request_run("app", 1, A)]) == []
    assert len(await store.runs.queue([pull_request_run("app", 1, B)])) == 1  # updated
    assert len(await store.runs.queue([pull_request_run("app", 2, B)])) == 1


async def test_a_batch_keeps_the_new_runs_and_leaves_out_the_known(store):
    await store.runs.queue([commit_run("app")])
    ids = await store.runs.queue([commit_run("app"), commit_run("web"), commit_run("app", B)])
    assert [(await store.runs.get(i)).task for i in ids] == ["web", "app"]


async def test_runs_without_a_commit_are_never_left_out(store):
    manual = RunRequest("app", Trigger.MANUAL, RunType.AUTO_BUILD, PLATFORM, "manual run")
    assert len(await store.runs.queue([manual, manual])) == 2


async def test_an_interrupted_commit_run_is_still_run_again(store):
    (run_id,) = await store.runs.queue([commit_run("app")])
    await store.runs.mark_started(run_id)
    ((failed, rerun),) = await store.runs.fail_unfinished("the daemon stopped")
    assert failed == run_id and rerun is not None
    assert (await store.runs.get(rerun)).source_commit == SourceCommit(A, "main")
    # ... and the commit seen again queues nothing more.
    assert await store.runs.queue([commit_run("app")]) == []
    await store.runs.mark_started(rerun)
    stopped = await store.runs.get(rerun)
    assert await store.runs.cancel_and_requeue(stopped, "stopping") is None  # a re-run's end

    (second,) = await store.runs.queue([commit_run("app", B)])
    await store.runs.mark_started(second)
    again = await store.runs.cancel_and_requeue(await store.runs.get(second), "stopping")
    assert (await store.runs.get(again)).source_commit.commit == B


async def test_a_database_from_before_the_source_key_takes_commit_runs(tmp_path):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        for script in MIGRATIONS[:5]:
            db.executescript(script)
        db.execute("PRAGMA user_version=5")
        db.execute("INSERT INTO runs (id, task, run_type, trigger, status, platform, queued_at)"
                   " VALUES ('ca1', 'app', 'AutoBuild', 'Manual', 'Queued', ?, ?)",
                   (PLATFORM, "2026-01-01T00:00:00+00:00"))
    store = await SQLiteStore.open(path)  # a SQLite file an older version made
    try:
        assert (await store.runs.get("ca1")).source_commit is None
        assert len(await store.runs.queue([commit_run("app")])) == 1
        assert await store.runs.queue([commit_run("app")]) == []
    finally:
        await store.close()
