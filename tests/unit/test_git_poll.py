"""The git poller against real repositories (file:// and git http-backend), with a sink that
records what it is handed and a clock the tests move."""
from __future__ import annotations

import asyncio
import time
from collections.abc import Collection

import pytest

from basewatch.builder.contexts.checkout import Checkouts
from basewatch.metrics import Metrics
from basewatch.netpolicy import HostPolicy
from basewatch.tasks import CommitTrigger, Task
from basewatch.triggers.source_events import SourceEvent, SourceOutcome
from basewatch.watcher.git_poll import GitPoller, remote_plans
from tests.support.git_http import GitHttpServer
from tests.support.git_remotes import GitRemote
from tests.support.waiting import wait_for
from tests.support.stores import open_store

INTERVAL = 60.0


class RecordingSink:
    def __init__(self):
        self.events: list[SourceEvent] = []
        self.failing = False

    async def on_event(self, event: SourceEvent, tasks: Collection[str] | None = None
                       ) -> SourceOutcome:
        if self.failing:
            raise RuntimeError("the sink is down")
        self.events.append(event)
        return SourceOutcome(("run-1",))


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingLister:
    """Checkouts.list_heads, counted per remote."""

    def __init__(self, inner: Checkouts):
        self.inner = inner
        self.calls: list[str] = []

    async def list_heads(self, remote, branches, tags, contexts):
        self.calls.append(remote)
        return await self.inner.list_heads(remote, branches, tags, contexts)


def task(name: str, context: str, *branches: str, enabled: bool = True) -> Task:
    return Task(name=name, context=context, images=[f"reg.example/{name}"],
                commit_trigger=CommitTrigger(enabled, tuple(branches)))


@pytest.fixture
async def store(tmp_path):
    store = await open_store(tmp_path / "basewatch.db")
    yield store
    await store.close()


@pytest.fixture
def remote(tmp_path) -> GitRemote:
    return GitRemote.create(tmp_path / "served" / "app.git")


class Harness:
    """A poller over `tasks`, its sink, its lister and its clock."""

    def __init__(self, tmp_path, store, tasks: list[Task], interval: float = INTERVAL,
                 jitter: float = 0.0, clock=None):
        self.tasks = tasks
        self.sink = RecordingSink()
        self.clock = clock or Clock()
        self.metrics = Metrics()
        checkouts = Checkouts(tmp_path / "contexts", 1 << 20,
                              HostPolicy(("127.0.0.1",), only_listed=True))
        self.lister = CountingLister(checkouts)
        self.poller = GitPoller(self.read_tasks, store.git_heads, self.lister, self.sink,
                                interval, jitter=jitter, metrics=self.metrics, clock=self.clock)

    async def read_tasks(self) -> list[Task]:
        return list(self.tasks)

    def polls(self, result: str) -> float:
        return self.metrics.registry.get_sample_value("basewatch_git_polls_total",
                                                      {"result": result}) or 0.0


async def test_the_first_poll_records_and_a_new_commit_is_one_event(tmp_path, store, remote):
    h = Harness(tmp_path, store, [task("app", remote.url + "#main")])
    stats = await h.poller.poll_once()
    assert (stats.polled, stats.changed, stats.errors) == (1, 0, 0)
    assert h.sink.events == []
    assert await store.git_heads.heads() == {remote.url: {"main": remote.head()}}

    assert (await h.poller.poll_once()).changed == 0  # nothing moved: nothing handed on
    sha = remote.commit("main")
    assert (await h.poller.poll_once()).changed == 1
    assert h.sink.events == [SourceEvent(provider="poll", kind="push",
                                         repository_urls=(remote.url,), branch="main",
                                         commit=sha, default_branch="main")]
    assert len(sha) == 40
    await h.poller.poll_once()
    assert len(h.sink.events) == 1
    assert (h.polls("ok"), h.polls("changed"), h.polls("error")) == (3, 1, 0)


async def test_two_tasks_on_one_remote_make_one_ls_remote(tmp_path, store, remote):
    remote.commit("dev")
    async with GitHttpServer(remote.bare.parent) as server:
        url = server.url("app.git")
        h = Harness(tmp_path, store, [task("app", url + "#main"),
                                      task("app-dev", url, "refs/heads/dev"),
                                      task("off", url, enabled=False),
                                      task("local", str(tmp_path))])
        await h.poller.poll_once()
        assert h.lister.calls == [url]
        assert [r for r in server.requests if r.startswith("GET")] == [
            "GET /app.git/info/refs?service=git-upload-pack"]
        main, dev = remote.commit("main"), remote.commit("dev")
        await h.poller.poll_once()
        assert h.lister.calls == [url, url]
        assert {(e.branch, e.commit) for e in h.sink.events} == {("main", main), ("dev", dev)}


async def test_the_default_branch_is_followed_when_no_branch_is_named(tmp_path, store):
    remote = GitRemote.create(tmp_path / "served" / "trunk.git", default_branch="trunk")
    remote.tag("v1")
    remote.commit("other")
    h = Harness(tmp_path, store, [task("app", remote.url), task("pinned", remote.url + "#v1"),
                                  task("commit", remote.url + "#" + remote.head("trunk"))])
    assert [(p.remote, p.branches, p.tags) for p in remote_plans(h.tasks).values()] == [
        (remote.url, ["v1"], ["v1"])]
    await h.poller.poll_once()
    assert h.poller.problems() == {}
    sha = remote.commit("trunk")
    remote.commit("other")  # not followed by anyone
    await h.poller.poll_once()
    assert [(e.branch, e.commit, e.default_branch) for e in h.sink.events] == [
        ("trunk", sha, "trunk")]


async def test_a_failing_remote_backs_off_is_reported_and_recovers(tmp_path, store):
    bare = tmp_path / "served" / "late.git"
    h = Harness(tmp_path, store, [task("app", bare.as_uri())])
    assert await h.poller.poll_due() == [bare.as_uri()]  # jitter 0: due at once
    [(shown, problem)] = h.poller.problems().items()
    assert shown == bare.as_uri()
    assert problem == f"cannot list the branches of {bare.as_uri()}: the repository was not found"
    assert h.poller.due_at(bare.as_uri()) == h.clock.now + 2 * INTERVAL

    h.clock.now += INTERVAL
    assert await h.poller.poll_due() == []  # backed off: not polled at the interval
    h.clock.now += INTERVAL
    assert await h.poller.poll_due() == [bare.as_uri()]
    assert h.poller.due_at(bare.as_uri()) == h.clock.now + 4 * INTERVAL
    for _ in range(3):
        h.clock.now = h.poller.due_at(bare.as_uri())
        await h.poller.poll_due()
    assert h.poller.due_at(bare.as_uri()) == h.clock.now + 8 * INTERVAL  # capped
    assert h.polls("error") == 5

    remote = GitRemote.create(bare)
    h.clock.now = h.poller.due_at(bare.as_uri())
    await h.poller.poll_due()
    assert h.poller.problems() == {}
    assert h.poller.due_at(bare.as_uri()) == h.clock.now + INTERVAL
    assert await store.git_heads.heads() == {bare.as_uri(): {"main": remote.head()}}
    assert h.sink.events == [] and h.polls("ok") == 1


async def test_a_head_that_moved_while_the_daemon_was_down_is_one_event(tmp_path, remote):
    path = tmp_path / "basewatch.db"
    tasks = [task("app", remote.url)]
    store = await open_store(path)
    try:
        await Harness(tmp_path, store, tasks).poller.poll_once()
    finally:
        await store.close()
    sha = remote.commit("main")  # the daemon is down
    store = await open_store(path)
    try:
        restarted = Harness(tmp_path, store, tasks)
        await restarted.poller.poll_once()
        await restarted.poller.poll_once()
        assert [(e.branch, e.commit) for e in restarted.sink.events] == [("main", sha)]
    finally:
        await store.close()


async def test_a_branch_filter_matching_no_branch_is_reported(tmp_path, store, remote):
    h = Harness(tmp_path, store, [task("app", remote.url, "release", "main"),
                                  task("gone", remote.url + "#nothing")])
    stats = await h.poller.poll_once()
    assert stats.errors == 0  # the remote answered; what it lacks is reported
    assert h.poller.problems() == {remote.url: (
        f"{remote.url} has no branch 'release' (task app's commit_trigger.branches); "
        "no branch or tag 'nothing' (task gone's context)")}
    sha = remote.commit("main")  # the branches that do exist are still followed
    await h.poller.poll_once()
    assert [(e.branch, e.commit) for e in h.sink.events] == [("main", sha)]
    h.tasks[:] = [task("app", remote.url, "main")]
    h.poller.refresh()
    await h.poller.poll_due()
    assert h.poller.problems() == {}


async def test_an_event_the_sink_refuses_is_handed_on_again(tmp_path, store, remote):
    h = Harness(tmp_path, store, [task("app", remote.url)])
    await h.poller.poll_once()
    sha = remote.commit()
    h.sink.failing = True
    await h.poller.poll_once()
    h.sink.failing = False
    await h.poller.poll_once()
    assert [e.commit for e in h.sink.events] == [sha]


async def test_a_remote_no_task_polls_is_forgotten(tmp_path, store, remote):
    h = Harness(tmp_path, store, [task("app", remote.url)])
    await h.poller.poll_once()
    h.tasks.clear()
    await h.poller.poll_once()
    assert h.poller.remotes == [] and await store.git_heads.heads() == {}


async def test_the_running_poller_hands_on_a_push_and_follows_new_tasks(tmp_path, store, remote):
    other = GitRemote.create(tmp_path / "served" / "other.git")
    h = Harness(tmp_path, store, [task("app", remote.url)], interval=0.05, jitter=0.1,
                clock=time.monotonic)

    async def events():
        return h.sink.events

    async def other_polled():
        return other.url in (await store.git_heads.heads())

    running = asyncio.create_task(h.poller.run())
    try:
        await wait_for(store.git_heads.heads, 10, "the first poll", interval=0.02)
        sha = remote.commit()
        await wait_for(events, 10, "the push's event", interval=0.02)
        assert [e.commit for e in h.sink.events] == [sha]
        h.tasks.append(task("other", other.url))
        h.poller.refresh()
        await wait_for(other_polled, 10, "the new task's remote polled", interval=0.02)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


def test_the_schedule_backs_off_doubling_up_to_eight_times_and_jitters():
    from basewatch.watcher.schedule import backed_off, first_delay, next_delay

    assert [backed_off(60, failures) for failures in range(5)] == [60, 120, 240, 480, 480]
    delays = {next_delay(60, 0, 0.1) for _ in range(50)}
    assert all(54 <= d <= 66 for d in delays) and len(delays) > 1
    assert all(0 <= first_delay(60, 0.1) <= 6 for _ in range(50))
