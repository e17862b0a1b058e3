"""Several daemons on one database: only the leader polls and fires, a new leader takes over
within an interval, and a change or a fire seen by two daemons at once queues one run per task.

Each daemon here is a store of its own on the same database (two connections, two pools, as two
processes would have): the same SQLite file, or with --store=postgres the same PostgreSQL
database."""
from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import text

from basewatch.builder.contexts.fetch import RemoteHeads
from basewatch.models import DependencyKind, RunStatus, Trigger
from basewatch.retention import PurgeResult, RetentionSchedule, purge_stray_logs
from basewatch.store import Store
from basewatch.tasks import BaseImageTrigger, CommitTrigger, Task, Timer
from basewatch.triggers import Triggers
from basewatch.triggers.base_image import FanOut, base_image_run
from basewatch.triggers.source_events import SourceOutcome
from basewatch.triggers.timers import TimerScheduler, timer_run
from basewatch.watcher import digest_watch
from basewatch.watcher.digest_watch import DigestWatcher
from basewatch.watcher.git_poll import GitPoller
from tests.support.stores import open_store
from tests.support.waiting import running, wait_for

BASE = "127.0.0.1:5000/base:1"
OTHER_BASE = "127.0.0.1:5000/other:1"
PLATFORM = "linux/amd64"
INTERVAL = 0.4  # seconds between polls of a reference
JITTER = 0.1


@pytest.fixture
async def two(tmp_path: Path):
    """Two daemons' stores on one database."""
    first = await open_store(tmp_path / "shared.db")
    second = await open_store(tmp_path / "shared.db")
    yield first, second
    await first.close()
    await second.close()


@dataclass
class Seen:
    digest: str
    index_digest: str | None = None


class Registry:
    """One registry that both daemons ask; each daemon's asks counted on its own."""

    def __init__(self, digest: str):
        self.digest = digest

    def client(self) -> "Client":
        return Client(self)


class Client:
    def __init__(self, registry: Registry):
        self.registry = registry
        self.calls = 0

    async def platform_digest(self, ref, platform):
        self.calls += 1
        await asyncio.sleep(0)  # a round trip: the other daemon may go on meanwhile
        return Seen(self.registry.digest)


class Leadership:
    """Which daemon leads: `is_leader(n)` for daemon n."""

    def __init__(self, leader: int | None = 0):
        self.leader = leader

    def of(self, daemon: int):
        return lambda: self.leader == daemon


async def add_task(store: Store, name: str, digest: str | None, *bases: str) -> None:
    task = Task(name=name, context="/nowhere", images=[f"reg/{name}"],
                base_image_trigger=BaseImageTrigger(True, "runtime"))
    await store.tasks.upsert(task, "config")
    await store.graph.replace_dependencies(
        name, [(base, PLATFORM, DependencyKind.RUNTIME) for base in bases or (BASE,)],
        {(base, PLATFORM): digest for base in bases or (BASE,)})


def watcher(store: Store, client: Client, submitted: list[str],
            is_leader=lambda: True) -> DigestWatcher:
    fanout = FanOut(store, Triggers(store.runs, lambda run_id, delay: submitted.append(run_id)))
    return DigestWatcher(store.graph, client, fanout.on_change, lambda host: INTERVAL,
                         jitter=JITTER, is_leader=is_leader)


async def queued_by_task(store: Store) -> dict[str, int]:
    counts: dict[str, int] = {}
    for run in await store.runs.queued():
        counts[run.task] = counts.get(run.task, 0) + 1
    return counts


async def finish_queued(store: Store) -> None:
    for run in await store.runs.queued():
        await store.runs.finish(run.id, RunStatus.SUCCEEDED)


# --- the digest watcher ------------------------------------------------------------------

async def test_only_the_leader_polls_and_a_new_leader_takes_over_within_an_interval(two):
    first, second = two
    await add_task(first, "app", "sha256:old")
    registry, leadership = Registry("sha256:old"), Leadership(0)
    clients = [registry.client(), registry.client()]
    submitted: list[list[str]] = [[], []]
    watchers = [watcher(store, clients[n], submitted[n], leadership.of(n))
                for n, store in enumerate(two)]
    async with running(*(w.run() for w in watchers)):
        await wait_for(lambda: asyncio.sleep(0, clients[0].calls >= 3), 10,
                       "the leader's polls", interval=0.02)
        assert clients[1].calls == 0, "a follower does not poll"
        assert watchers[1].watched_count == 1, "a follower still knows what is watched"
        # Its metrics show the leader's checks (the store's), not its own lack of them.
        polled_since = time.time()

        async def follower_shows_the_leaders_check():
            watchers[1].refresh()  # as the periodic re-read does
            [state] = watchers[1].reference_states()
            return state.last_check >= polled_since and not state.failing
        await wait_for(follower_shows_the_leaders_check, 10, "the leader's check, on the follower",
                       interval=0.05)

        leadership.leader = 1
        handed_over = time.monotonic()
        leader_calls = clients[0].calls
        await wait_for(lambda: asyncio.sleep(0, clients[1].calls >= 1), 10,
                       "the new leader's first poll", interval=0.02)
        took = time.monotonic() - handed_over
        # Asked whether it leads within a second; then its reference's next due time.
        assert took < digest_watch.LEADERSHIP_CHECK_SECONDS + INTERVAL * (1 + JITTER) + 0.5
        await wait_for(lambda: asyncio.sleep(0, clients[1].calls >= 3), 10,
                       "the new leader polling on", interval=0.02)
        assert clients[0].calls <= leader_calls + 1, "the old leader stopped (one in flight)"

        registry.digest = "sha256:new"
        await wait_for(lambda: asyncio.sleep(0, submitted[1]), 10, "the change's run",
                       interval=0.02)
    assert submitted[0] == [] and len(submitted[1]) == 1
    assert await queued_by_task(first) == {"app": 1}


async def test_leadership_changed_wakes_a_follower_at_once(two, monkeypatch):
    monkeypatch.setattr(digest_watch, "LEADERSHIP_CHECK_SECONDS", 30.0)
    first, _ = two
    await add_task(first, "app", "sha256:old")
    leadership, client = Leadership(None), Registry("sha256:old").client()
    follower = watcher(first, client, [], leadership.of(0))
    async with running(follower.run()):
        await asyncio.sleep(INTERVAL * 2)
        assert client.calls == 0
        leadership.leader = 0
        follower.leadership_changed()
        started = time.monotonic()
        await wait_for(lambda: asyncio.sleep(0, client.calls >= 1), 10, "a poll",
                       interval=0.02)
        assert time.monotonic() - started < INTERVAL * (1 + JITTER) + 0.5


async def test_a_follower_still_checks_what_a_notification_names(two):
    first, second = two
    await add_task(first, "app", "sha256:old")
    registry = Registry("sha256:new")
    submitted: list[str] = []
    follower = watcher(second, registry.client(), submitted, lambda: False)
    assert await follower.check_references(lambda base: base == BASE) == 1
    assert len(submitted) == 1 and await queued_by_task(first) == {"app": 1}


async def test_the_same_change_seen_by_two_daemons_at_once_queues_one_run_per_task(two):
    first, second = two
    for name in ("app", "api", "web"):
        await add_task(first, name, "sha256:v0")
    registry = Registry("sha256:v0")
    submitted: list[list[str]] = [[], []]
    watchers = [watcher(store, registry.client(), submitted[n]) for n, store in enumerate(two)]
    for w in watchers:  # both views read before the change
        await w.check_references(lambda base: True)
    for version in range(1, 6):
        registry.digest = f"sha256:v{version}"
        # The leader's poll and a follower's notification check, at the same moment.
        await asyncio.gather(watchers[0].check(BASE, PLATFORM),
                             watchers[1].check(BASE, PLATFORM))
        assert await queued_by_task(first) == {"app": 1, "api": 1, "web": 1}, version
        assert (await first.graph.get_watched(BASE, PLATFORM)).digest == registry.digest
        await finish_queued(first)
    assert len(submitted[0]) + len(submitted[1]) == 15


async def test_a_stale_view_neither_queues_again_nor_writes_an_older_digest_back(two):
    first, second = two
    await add_task(first, "app", "sha256:old")
    registry = Registry("sha256:old")
    submitted: list[list[str]] = [[], []]
    watchers = [watcher(store, registry.client(), submitted[n]) for n, store in enumerate(two)]
    for w in watchers:
        await w.check_references(lambda base: True)

    registry.digest = "sha256:new"
    await watchers[1].check(BASE, PLATFORM)  # the other daemon sees it first
    assert len(submitted[1]) == 1
    # This daemon's view still says old: it sees a change the store has already.
    await watchers[0].check(BASE, PLATFORM)
    assert submitted[0] == [] and await queued_by_task(first) == {"app": 1}

    # An unchanged check of the old digest, batched before the change, is written after it.
    registry.digest = "sha256:newer"
    await watchers[1].check(BASE, PLATFORM)
    await first.graph.record_same([(BASE, PLATFORM, "sha256:new", "sha256:old-index")])
    watched = await first.graph.get_watched(BASE, PLATFORM)
    assert (watched.digest, watched.index_digest) == ("sha256:newer", None)
    # Nor does a first digest land on a reference that has one.
    assert not await first.graph.record_first(BASE, PLATFORM, "sha256:first", None)
    assert (await first.graph.get_watched(BASE, PLATFORM)).digest == "sha256:newer"


async def test_a_first_digest_another_daemon_recorded_is_compared_with(two):
    first, second = two
    await add_task(first, "app", None)  # the registry was down at registration
    registry = Registry("sha256:one")
    submitted: list[list[str]] = [[], []]
    watchers = [watcher(store, registry.client(), submitted[n]) for n, store in enumerate(two)]
    for w in watchers:
        await w.check_references(lambda base: False)  # views read: no digest yet
    await watchers[1].check(BASE, PLATFORM)  # the baseline, recorded by the other daemon
    registry.digest = "sha256:two"
    await watchers[0].check(BASE, PLATFORM)  # this one's view has none: the store's counts
    assert len(submitted[0]) == 1 and await queued_by_task(first) == {"app": 1}
    assert (await first.graph.get_watched(BASE, PLATFORM)).digest == "sha256:two"


# --- the store's queueing ------------------------------------------------------------------

async def test_changes_of_two_bases_at_once_queue_one_run_of_their_task(two):
    """Serialised across daemons: each transaction sees the other's queued run."""
    first, second = two
    await add_task(first, "app", "sha256:v0", BASE, OTHER_BASE)
    for version in range(1, 9):
        digest = f"sha256:v{version}"
        await asyncio.gather(*(
            store.runs.record_change_and_queue(base, PLATFORM, digest, None,
                                               [base_image_run("app", base, PLATFORM, digest)])
            for store, base in ((first, BASE), (second, OTHER_BASE))))
        assert await queued_by_task(first) == {"app": 1}, version
        await finish_queued(first)


async def test_a_digest_the_store_has_already_queues_nothing(two):
    first, second = two
    await add_task(first, "app", "sha256:old")
    request = base_image_run("app", BASE, PLATFORM, "sha256:new")
    results = await asyncio.gather(*(
        store.runs.record_change_and_queue(BASE, PLATFORM, "sha256:new", None, [request])
        for store in two))
    assert sorted(len(ids) for ids in results) == [0, 1]
    await finish_queued(first)
    assert await second.runs.record_change_and_queue(BASE, PLATFORM, "sha256:new", None,
                                                     [request]) == []
    assert await first.runs.queued() == []


async def test_one_timer_fire_recorded_by_two_daemons_at_once_queues_one_run(two):
    first, second = two
    timer = Timer("nightly", "0 2 * * *")
    app = Task(name="app", context="/srv/app", images=["reg/app"], timers=(timer,))
    await first.tasks.upsert(app, "api")
    await first.timers.start("app", "nightly", timer.schedule,
                             datetime(2026, 11, 30, 2, tzinfo=timezone.utc))
    for day in range(1, 6):
        fire = datetime(2026, 11, 30, 2, tzinfo=timezone.utc) + timedelta(days=day)
        results = await asyncio.gather(*(
            store.runs.record_fire_and_queue("app", "nightly", fire, [timer_run(app, timer, fire)])
            for store in two))
        assert sorted(len(ids) for ids in results) == [0, 1], day
        await finish_queued(first)


# --- timers ----------------------------------------------------------------------------------

class Clock:
    def __init__(self, moment: datetime):
        self.now = moment

    def __call__(self) -> datetime:
        return self.now


async def test_only_the_leader_fires_timers(two):
    first, second = two
    clock = Clock(datetime(2026, 11, 27, 0, 0, 30, tzinfo=timezone.utc))
    await first.tasks.upsert(Task(name="app", context="/srv/app", images=["reg/app"],
                                  timers=(Timer("minutely", "* * * * *"),)), "api")
    leadership = Leadership(0)
    submitted: list[list[str]] = [[], []]

    async def sleep(seconds: float) -> None:
        await asyncio.sleep(0.01)  # the test moves the clock

    schedulers = [
        TimerScheduler(store.tasks, store.timers,
                       Triggers(store.runs, lambda run_id, delay, n=n: submitted[n].append(run_id)),
                       clock=clock, sleep=sleep, is_leader=leadership.of(n))
        for n, store in enumerate(two)]

    async def timer_runs() -> list:
        return [run for run in await first.runs.list(top=100) if run.trigger is Trigger.TIMER]

    async def runs(count: int) -> bool:
        return len(await timer_runs()) >= count

    async with running(*(s.run() for s in schedulers)):
        await wait_for(first.timers.marks, 10, "the timer counted from now", interval=0.02)
        clock.now += timedelta(minutes=1)
        await wait_for(lambda: runs(1), 10, "the leader's fire", interval=0.02)
        assert (len(submitted[0]), len(submitted[1])) == (1, 0)
        await finish_queued(first)

        leadership.leader = 1
        await asyncio.sleep(0.2)  # the old leader sees it leads no more
        clock.now += timedelta(minutes=1)
        await wait_for(lambda: runs(2), 10, "the new leader's fire", interval=0.02)
        await asyncio.sleep(0.2)
        assert (len(submitted[0]), len(submitted[1])) == (1, 1)
        await finish_queued(first)

        leadership.leader = None  # nobody leads: nothing fires
        clock.now += timedelta(minutes=1)
        await asyncio.sleep(0.3)
        assert len(await timer_runs()) == 2


# --- the git poller -------------------------------------------------------------------------

REMOTE = "https://git.example/app.git"


class Lister:
    """`git ls-remote` of one remote whose head the test moves; each daemon's calls counted."""

    def __init__(self, heads: dict[str, str]):
        self.heads = heads
        self.calls = 0

    async def list_heads(self, remote, branches, tags, contexts):
        self.calls += 1
        return RemoteHeads(dict(self.heads), default_branch="main")


class Sink:
    def __init__(self):
        self.commits: list[str] = []

    async def on_event(self, event, tasks=None) -> SourceOutcome:
        self.commits.append(event.commit)
        return SourceOutcome(())


async def test_only_the_leader_polls_git_and_a_new_leader_starts_from_the_stored_heads(two):
    first, second = two
    tasks = [Task(name="app", context=REMOTE + "#main", images=["reg/app"],
                  commit_trigger=CommitTrigger(True, ()))]
    heads = {"main": "a" * 40}
    leadership = Leadership(0)
    listers, sinks = [Lister(heads), Lister(heads)], [Sink(), Sink()]

    async def read_tasks():
        return tasks

    pollers = [GitPoller(read_tasks, store.git_heads, listers[n], sinks[n], INTERVAL,
                         jitter=JITTER, is_leader=leadership.of(n))
               for n, store in enumerate(two)]
    async with running(*(p.run() for p in pollers)):
        await wait_for(lambda: asyncio.sleep(0, listers[0].calls >= 2), 10, "the leader's polls",
                       interval=0.02)
        heads["main"] = "b" * 40
        await wait_for(lambda: asyncio.sleep(0, sinks[0].commits), 10, "the moved head",
                       interval=0.02)
        assert listers[1].calls == 0

        leadership.leader = 1
        handed_over, calls = time.monotonic(), listers[0].calls
        await wait_for(lambda: asyncio.sleep(0, listers[1].calls >= 1), 10,
                       "the new leader's poll", interval=0.02)
        assert time.monotonic() - handed_over < 1.0 + INTERVAL * (1 + JITTER) + 0.5
        await wait_for(lambda: asyncio.sleep(0, listers[1].calls >= 2), 10,
                       "the new leader polling on", interval=0.02)
        assert sinks[1].commits == [], "the head the old leader handed on is not handed again"
        heads["main"] = "c" * 40
        await wait_for(lambda: asyncio.sleep(0, sinks[1].commits), 10, "the next moved head",
                       interval=0.02)
        assert listers[0].calls <= calls + 1
    assert sinks[0].commits == ["b" * 40] and sinks[1].commits == ["c" * 40]


# --- retention ------------------------------------------------------------------------------

async def test_a_follower_removes_only_its_stray_logs_and_purges_no_run(two, tmp_path):
    first, _ = two
    logs = tmp_path / "logs"
    logs.mkdir()
    run = await first.runs.create(
        base_image_run("app", BASE, PLATFORM, "sha256:x"))
    await first.runs.finish(run.id, RunStatus.SUCCEEDED)
    old = (datetime.now(timezone.utc) - timedelta(days=60)).isoformat()
    async with first.database.transaction() as db:
        await db.execute(text("UPDATE runs SET finished_at = :t, queued_at = :t"), {"t": old})
    kept, stray = logs / f"{run.id}.log", logs / "ca999.log"
    for path in (kept, stray):
        path.write_text("log\n")
        stamp = time.time() - 60 * 86400
        os.utime(path, (stamp, stamp))

    assert await purge_stray_logs(first.runs, logs, timedelta(days=30)) == PurgeResult(0, 1)
    assert kept.exists() and not stray.exists()
    assert await first.runs.get(run.id) is not None

    follower = RetentionSchedule(first.runs, logs, timedelta(days=30),
                                 interval=timedelta(milliseconds=50), is_leader=lambda: False)
    follower.start()
    try:
        await wait_for(lambda: asyncio.sleep(0, follower.purges >= 2), 10, "two purges",
                       interval=0.02)
    finally:
        await follower.stop()
    assert await first.runs.get(run.id) is not None and kept.exists()

    leader = RetentionSchedule(first.runs, logs, timedelta(days=30),
                               interval=timedelta(milliseconds=50))
    leader.start()
    try:
        await wait_for(lambda: asyncio.sleep(0, leader.purges >= 1), 10, "a purge",
                       interval=0.02)
    finally:
        await leader.stop()
    assert await first.runs.get(run.id) is None and not kept.exists()


async def test_a_leader_reads_again_the_tasks_another_daemon_changed(two):
    first, second = two
    clock = Clock(datetime(2026, 11, 27, 0, 0, 30, tzinfo=timezone.utc))
    submitted: list[str] = []
    scheduler = TimerScheduler(second.tasks, second.timers,
                               Triggers(second.runs, lambda run_id, delay: submitted.append(run_id)),
                               clock=clock, reread_tasks=timedelta(minutes=1))
    await scheduler.tick()
    # Added through the other daemon's API: this one's registrar never says so.
    await first.tasks.upsert(Task(name="app", context="/srv/app", images=["reg/app"],
                                  timers=(Timer("minutely", "* * * * *"),)), "api")
    clock.now += timedelta(seconds=30)
    await scheduler.tick()
    assert await second.timers.marks() == []
    clock.now += timedelta(seconds=31)  # a minute since the last read
    await scheduler.tick()
    assert [mark.timer for mark in await second.timers.marks()] == ["minutely"]
    clock.now += timedelta(minutes=1)
    await scheduler.tick()
    assert len(submitted) == 1
