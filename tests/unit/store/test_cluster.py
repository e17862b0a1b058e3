"""Several daemons on one PostgreSQL: the leader's lock, claims of runs, heartbeats and the
reaping of a dead daemon's runs (basewatch/membership.py, store/cluster.py, queue_feed.py).

Each "daemon" here is a store and a Membership of its own on one database, as two processes
would have. Only on PostgreSQL (`pytest --store=postgres`); SQLite has one daemon by design."""
from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from basewatch.builder.quick_runs import QuickRuns
from basewatch.config import ClusterSettings
from basewatch.membership import Membership
from basewatch.models import RunRequest, RunStatus, RunType, Trigger
from basewatch.queue_feed import QueueFeed
from basewatch.store.database import now, to_text
from basewatch.store.schema import daemons
from tests.support import stores
from tests.support.waiting import wait_for


async def async_wait_until(condition, timeout: float, what: str):
    async def holds():
        return condition()
    return await wait_for(holds, timeout, what, interval=0.05)


FAST = ClusterSettings(heartbeat_seconds=0.2, lease_seconds=2.0)


@pytest.fixture
async def two_stores(tmp_path):
    if not stores.on_postgres():
        pytest.skip("several daemons share PostgreSQL only (pytest --store=postgres)")
    first = await stores.open_store(tmp_path / "shared.db")
    second = await stores.open_store(tmp_path / "shared.db")  # the same database again
    yield first, second
    await first.close()
    await second.close()


def request(task: str = "app") -> RunRequest:
    return RunRequest(task, Trigger.MANUAL, RunType.AUTO_BUILD, "linux/amd64")


async def test_one_daemon_leads_and_another_takes_over_when_it_stops(two_stores):
    one = Membership(two_stores[0], FAST.model_copy(update={"name": "one"}))
    two = Membership(two_stores[1], FAST.model_copy(update={"name": "two"}))
    await one.start()
    await two.start()
    try:
        assert one.is_leader() and not two.is_leader()
        assert (await two.view())["daemons"] == ["one", "two"]
        await one.stop()
        await async_wait_until(two.is_leader, 3, "the second daemon leads")
        assert (await two.view())["daemons"] == ["two"]
    finally:
        await one.stop()
        await two.stop()


async def test_of_daemons_claiming_one_run_at_once_exactly_one_gets_it(two_stores):
    run = await two_stores[0].runs.create(request())
    claims = await asyncio.gather(*(two_stores[n % 2].runs.mark_started(run.id, f"d{n}")
                                    for n in range(8)))
    assert claims.count(True) == 1
    claimed = await two_stores[1].runs.get(run.id)
    assert claimed.status is RunStatus.RUNNING and claimed.daemon == f"d{claims.index(True)}"


async def test_a_killed_daemons_run_is_failed_and_queued_again_once_by_another(two_stores):
    reruns: list[str] = []
    dead = Membership(two_stores[0], FAST.model_copy(update={"name": "dead"}))
    alive = Membership(two_stores[1], FAST.model_copy(update={"name": "alive"}),
                       on_rerun=reruns.append)
    await dead.start()
    await alive.start()
    try:
        run = await two_stores[0].runs.create(request())
        assert await two_stores[0].runs.mark_started(run.id, dead.daemon_id)
        # As a SIGKILL leaves it: no goodbye, the connection (and its locks) simply gone.
        dead._loop.cancel()
        dead._session._connection.terminate()
        await async_wait_until(lambda: reruns, 3, "the run queued again")
        failed = await two_stores[1].runs.get(run.id)
        assert failed.status is RunStatus.FAILED
        assert failed.error == "the daemon dead stopped while the run was in progress"
        (rerun,) = reruns
        again = await two_stores[1].runs.get(rerun)
        assert again.status is RunStatus.QUEUED and again.retry_of == run.id
        assert alive.is_leader()
        assert (await alive.view())["daemons"] == ["alive"]
    finally:
        dead._loop = None
        dead._session = None
        await alive.stop()


async def test_a_daemon_whose_lease_expired_is_dead_though_its_lock_is_held(two_stores):
    reruns: list[str] = []
    store = two_stores[0]
    stale = to_text(now() - timedelta(seconds=30))
    async with store.database.transaction() as db:
        await db.execute(daemons.insert().values(id="hung/1", name="hung", started_at=stale,
                                                 heartbeat_at=stale))
    run = await store.runs.create(request())
    assert await store.runs.mark_started(run.id, "hung/1")
    alive = Membership(two_stores[1], FAST, on_rerun=reruns.append)
    await alive.start()  # its first beat reaps
    try:
        assert len(reruns) == 1
        assert (await store.runs.get(run.id)).error == (
            "the daemon hung stopped while the run was in progress")
    finally:
        await alive.stop()


async def test_a_rerun_interrupted_again_is_not_queued_a_third_time(two_stores):
    reruns: list[str] = []
    store = two_stores[0]
    first = await store.runs.create(request())
    assert await store.runs.mark_started(first.id, "gone/1")  # no such daemon: reaped
    alive = Membership(two_stores[1], FAST, on_rerun=reruns.append)
    await alive.start()
    try:
        (rerun,) = reruns
        assert await store.runs.mark_started(rerun, "gone/2")
        await async_wait_until(lambda: len(reruns) > 1 or alive.reaped > 1, 3,
                               "the re-run reaped")
        assert reruns == [rerun]
        assert (await store.runs.get(rerun)).status is RunStatus.FAILED
    finally:
        await alive.stop()


async def test_runs_another_daemon_queued_reach_this_ones_queue_as_they_commit(two_stores):
    submitted: list[str] = []
    feed = QueueFeed(two_stores[1].runs, submitted.append, feed_seconds=30,
                     resync_seconds=3600)
    member = Membership(two_stores[1], FAST, on_runs_queued=feed.wake)
    await member.start()
    feeding = asyncio.create_task(feed.run())
    try:
        await asyncio.sleep(0.2)  # the feed's first read done: what follows comes by NOTIFY
        ids = await two_stores[0].runs.queue([request("a"), request("b")])
        await async_wait_until(lambda: submitted == ids, 2, "the runs offered by NOTIFY")
    finally:
        feeding.cancel()
        await member.stop()


async def test_a_run_held_for_a_daemon_is_claimed_by_it_alone_and_fails_when_it_is_gone(
        two_stores):
    store = two_stores[0]
    holder = Membership(store, FAST.model_copy(update={"name": "holder"}))
    await holder.start()
    try:
        (held,) = await store.runs.queue([RunRequest(
            "", Trigger.MANUAL, RunType.QUICK_BUILD, "linux/amd64",
            spec='{"context_path": "/state/contexts/upload-1"}', daemon=holder.daemon_id)])
        assert not await store.runs.mark_started(held, "other/1")
        assert (await store.runs.get(held)).status is RunStatus.QUEUED
    finally:
        await holder.stop()
    alive = Membership(two_stores[1], FAST)
    await alive.start()  # its first beat finds the run's daemon gone
    try:
        failed = await store.runs.get(held)
        assert failed.status is RunStatus.FAILED
        assert failed.error == ("the daemon holder that held its uploaded context or secrets "
                                "stopped before it ran")
    finally:
        await alive.stop()


async def test_a_restarted_daemon_adopts_the_held_runs_whose_upload_is_on_its_disk(
        two_stores, tmp_path):
    store = two_stores[0]
    contexts = tmp_path / "contexts"
    for name in ("upload-kept", "upload-secret", "upload-standing"):
        (contexts / name).mkdir(parents=True)
    standing = Membership(store, FAST.model_copy(update={"name": "standing"}))
    await standing.start()

    def held(upload: str, daemon: str, secrets: tuple[str, ...] = ()) -> RunRequest:
        return RunRequest("", Trigger.MANUAL, RunType.QUICK_BUILD, "linux/amd64",
                          spec=json.dumps({"context_path": upload}), secret_names=secrets,
                          daemon=daemon)

    # Left by the daemon's earlier life ("restarted/old", stopped: no row), and one held by
    # a daemon that still stands.
    kept, secret, elsewhere, standing_run = await store.runs.queue([
        held(str(contexts / "upload-kept"), "restarted/old"),
        held(str(contexts / "upload-secret"), "restarted/old", ("TOKEN",)),
        held("/another/state/contexts/upload-there", "restarted/old"),
        held(str(contexts / "upload-standing"), standing.daemon_id)])
    restarted = Membership(two_stores[1], FAST.model_copy(update={"name": "restarted"}),
                           held_uploads=QuickRuns(contexts).uploads)
    await restarted.start()  # adopts, then its first beat reaps
    try:
        adopted = await store.runs.get(kept)
        assert adopted.status is RunStatus.QUEUED and adopted.daemon == restarted.daemon_id
        for lost in (secret, elsewhere):  # its secrets died; its upload is not on this disk
            failed = await store.runs.get(lost)
            assert failed.status is RunStatus.FAILED, lost
            assert failed.error == ("the daemon restarted that held its uploaded context or "
                                    "secrets stopped before it ran")
        still = await store.runs.get(standing_run)
        assert still.status is RunStatus.QUEUED and still.daemon == standing.daemon_id
        assert await store.runs.mark_started(kept, restarted.daemon_id)
    finally:
        await restarted.stop()
        await standing.stop()


async def test_a_held_run_interrupted_on_its_daemon_goes_back_to_it_and_not_elsewhere(
        two_stores):
    store = two_stores[0]
    (run_id,) = await store.runs.queue([RunRequest(
        "app", Trigger.MANUAL, RunType.AUTO_BUILD, "linux/amd64", secret_names=("TOKEN",),
        daemon="d1/abc")])
    assert await store.runs.mark_started(run_id, "d1/abc")
    run = await store.runs.get(run_id)
    rerun = await store.runs.finish_and_requeue(run, RunStatus.FAILED, [], "engine lost",
                                                "its build engine one going down")
    assert (await store.runs.get(rerun)).daemon == "d1/abc"
    assert not await store.runs.mark_started(rerun, "d2/def")
    assert await store.runs.mark_started(rerun, "d1/abc")
