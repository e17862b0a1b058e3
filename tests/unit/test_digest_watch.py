"""The change policy: what a digest check records, and when it queues runs."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import text

from basewatch.errors import ImageReferenceError, RegistryError
from basewatch.models import DependencyKind, RunRequest, RunStatus, RunType, Trigger
from basewatch.oci.platforms import Platform
from basewatch.oci.reference import ImageReference
from basewatch.store import Store
from basewatch.tasks import BaseImageTrigger, Task
from basewatch.triggers import Triggers
from basewatch.triggers.base_image import FanOut
from basewatch.watcher import digest_watch
from basewatch.watcher.digest_watch import DigestWatcher
from tests.support.stores import open_store
from tests.support.waiting import running

BASE = "127.0.0.1:5000/base:1"
PLATFORM = "linux/amd64"


@dataclass
class Seen:
    digest: str
    index_digest: str | None = None


class FakeRegistry:
    """Answers with whatever digest the test sets, or fails the way a registry can."""

    def __init__(self, digest: str):
        self.digest = digest
        self.failure: Exception | None = None
        self.calls = 0

    async def platform_digest(self, ref, platform):
        self.calls += 1
        if self.failure is not None:
            raise self.failure
        return Seen(self.digest)


@pytest.fixture
async def store(tmp_path: Path):
    store = await open_store(tmp_path / "basewatch.db")
    yield store
    await store.close()


async def add_task(store: Store, name: str, kind: DependencyKind, digest: str | None,
                   trigger_type: str = "runtime", enabled: bool = True) -> None:
    task = Task(name=name, context="/nowhere", images=[f"reg/{name}"],
                base_image_trigger=BaseImageTrigger(enabled, trigger_type))
    await store.tasks.upsert(task, "config")
    await store.graph.replace_dependencies(name, [(BASE, PLATFORM, kind)],
                                           {(BASE, PLATFORM): digest})


def make_watcher(store: Store, registry: FakeRegistry, submitted: list[str]) -> DigestWatcher:
    fanout = FanOut(store, Triggers(store.runs, lambda run_id, delay: submitted.append(run_id)))
    return DigestWatcher(store.graph, registry, fanout.on_change, lambda host: 1.0)


async def test_change_queues_one_run_per_runtime_dependent(store):
    await add_task(store, "app", DependencyKind.RUNTIME, "sha256:old")
    await add_task(store, "other", DependencyKind.RUNTIME, "sha256:old")
    await add_task(store, "builder", DependencyKind.BUILDTIME, "sha256:old")
    await add_task(store, "all", DependencyKind.BUILDTIME, "sha256:old", trigger_type="all")
    await add_task(store, "off", DependencyKind.RUNTIME, "sha256:old", enabled=False)
    registry, submitted = FakeRegistry("sha256:new"), []
    watcher = make_watcher(store, registry, submitted)

    change = await watcher.check(BASE, PLATFORM)

    assert change.old == "sha256:old" and change.new == "sha256:new"
    runs = {run.task: run for run in await store.runs.queued()}
    assert set(runs) == {"app", "other", "all"}
    assert sorted(submitted) == sorted(run.id for run in runs.values())
    assert all(run.trigger is Trigger.IMAGE_UPDATE for run in runs.values())
    assert (await store.graph.get_watched(BASE, PLATFORM)).digest == "sha256:new"


async def test_a_change_of_either_platform_queues_one_run_of_every_platform(store):
    arm64 = "linux/arm64"
    task = Task(name="both", context="/nowhere", images=["reg/both"],
                platforms=[Platform("linux", "amd64"), Platform("linux", "arm64")])
    await store.tasks.upsert(task, "config")
    await store.graph.replace_dependencies(
        "both", [(BASE, PLATFORM, DependencyKind.RUNTIME), (BASE, arm64, DependencyKind.RUNTIME)],
        {(BASE, PLATFORM): "sha256:amd-old", (BASE, arm64): "sha256:arm-old"})
    registry, submitted = FakeRegistry("sha256:arm-new"), []
    watcher = make_watcher(store, registry, submitted)
    change = await watcher.check(BASE, arm64)
    assert (change.platform, change.new) == (arm64, "sha256:arm-new")
    [run] = await store.runs.queued()
    assert (run.task, run.platform) == ("both", "linux/amd64,linux/arm64")
    assert (await store.graph.get_watched(BASE, PLATFORM)).digest == "sha256:amd-old"
    registry.digest = "sha256:amd-new"  # the other platform moves before the run starts
    await watcher.check(BASE, PLATFORM)
    assert [r.id for r in await store.runs.queued()] == [run.id] and submitted == [run.id]


async def test_same_digest_again_queues_nothing(store):
    await add_task(store, "app", DependencyKind.RUNTIME, "sha256:old")
    registry, submitted = FakeRegistry("sha256:old"), []
    watcher = make_watcher(store, registry, submitted)
    for _ in range(3):
        assert await watcher.check(BASE, PLATFORM) is None
    assert submitted == [] and await store.runs.queued() == []


async def test_first_observation_is_a_baseline(store):
    await add_task(store, "app", DependencyKind.RUNTIME, None)  # registry was down at registration
    registry, submitted = FakeRegistry("sha256:first"), []
    watcher = make_watcher(store, registry, submitted)
    assert await watcher.check(BASE, PLATFORM) is None
    assert (await store.graph.get_watched(BASE, PLATFORM)).digest == "sha256:first"
    registry.digest = "sha256:second"
    assert await watcher.check(BASE, PLATFORM) is not None
    assert len(submitted) == 1


async def test_errors_trigger_nothing_and_are_recorded(store):
    await add_task(store, "app", DependencyKind.RUNTIME, "sha256:old")
    registry, submitted = FakeRegistry("sha256:new"), []
    registry.failure = RegistryError("cannot reach registry 127.0.0.1:5000")
    watcher = make_watcher(store, registry, submitted)
    stats = await watcher.poll_once()
    assert (stats.checked, stats.errors, stats.changed) == (1, 1, 0)
    watched = await store.graph.get_watched(BASE, PLATFORM)
    assert watched.digest == "sha256:old" and "cannot reach" in watched.last_error
    assert submitted == []
    # Back off a failing reference: its next interval is longer than the normal one.
    assert watcher._interval(BASE, PLATFORM) > 1.0 * (1 + watcher.jitter)
    registry.failure = None
    stats = await watcher.poll_once()
    assert (stats.errors, stats.changed) == (0, 1)
    assert (await store.graph.get_watched(BASE, PLATFORM)).last_error is None


async def test_a_queued_run_is_not_queued_twice(store):
    await add_task(store, "app", DependencyKind.RUNTIME, "sha256:a")
    registry, submitted = FakeRegistry("sha256:b"), []
    watcher = make_watcher(store, registry, submitted)
    await watcher.check(BASE, PLATFORM)
    registry.digest = "sha256:c"  # patched again before the first rebuild started
    await watcher.check(BASE, PLATFORM)
    queued = await store.runs.queued()
    assert [run.task for run in queued] == ["app"]
    assert (await store.graph.get_watched(BASE, PLATFORM)).digest == "sha256:c"


async def test_already_built_on_the_new_digest_is_skipped(store):
    await add_task(store, "app", DependencyKind.RUNTIME, "sha256:a")
    # A manual run got there first.
    await store.graph.record_build("app", PLATFORM, {BASE: "sha256:b"})
    registry, submitted = FakeRegistry("sha256:b"), []
    await make_watcher(store, registry, submitted).check(BASE, PLATFORM)
    assert submitted == []


async def test_run_ids_are_never_reused(store):
    request = RunRequest("app", Trigger.MANUAL, RunType.QUICK_BUILD, PLATFORM)
    first = await store.runs.create(request)
    second = await store.runs.create(request)
    assert (first.id, second.id) == ("ca1", "ca2")
    async with store.database.transaction() as db:
        await db.execute(text("DELETE FROM runs WHERE id = 'ca2'"))
    assert (await store.runs.create(request)).id == "ca3"
    assert (await store.runs.get("ca1")).status is RunStatus.QUEUED


async def test_interrupted_runs_are_marked_failed(store):
    run = await store.runs.create(RunRequest("app", Trigger.MANUAL, RunType.QUICK_BUILD, PLATFORM))
    await store.runs.mark_started(run.id)
    [(failed_id, rerun_id)] = await store.runs.fail_unfinished("the daemon stopped")
    failed = await store.runs.get(run.id)
    assert failed_id == run.id
    assert failed.status is RunStatus.FAILED and failed.error == "the daemon stopped"
    rerun = await store.runs.get(rerun_id)
    assert rerun.status is RunStatus.QUEUED and rerun.retry_of == run.id
    assert rerun.task == run.task and rerun.trigger is run.trigger
    # A re-run interrupted in its turn is not queued a third time.
    await store.runs.mark_started(rerun.id)
    assert await store.runs.fail_unfinished("the daemon stopped") == [(rerun.id, None)]
    assert await store.runs.queued() == []


async def test_migrations_run_once(tmp_path):
    store = await open_store(tmp_path / "db.sqlite")
    await store.close()
    store = await open_store(tmp_path / "db.sqlite")  # second open: nothing to migrate
    assert await store.tasks.all() == []
    await store.close()


async def test_a_base_shared_by_many_tasks_is_checked_once_per_cycle(store):
    for n in range(5):
        await add_task(store, f"app{n}", DependencyKind.RUNTIME, "sha256:old")
    registry, submitted = FakeRegistry("sha256:old"), []
    watcher = make_watcher(store, registry, submitted)
    stats = await watcher.poll_once()
    assert (stats.checked, registry.calls) == (1, 1)
    registry.digest = "sha256:new"
    stats = await watcher.poll_once()
    assert (stats.checked, stats.changed, registry.calls) == (1, 1, 2)
    assert len(submitted) == 5


async def test_the_scheduler_polls_on_its_own_and_spreads_checks(store):
    await add_task(store, "app", DependencyKind.RUNTIME, "sha256:old")
    registry, submitted = FakeRegistry("sha256:old"), []
    fanout = FanOut(store, Triggers(store.runs, lambda run_id, delay: submitted.append(run_id)))
    watcher = DigestWatcher(store.graph, registry, fanout.on_change, lambda host: 0.2)
    async with running(watcher.run()):
        for _ in range(100):
            if registry.calls >= 3:
                break
            await asyncio.sleep(0.05)
        assert registry.calls >= 3, "the scheduler re-checks each interval"
        registry.digest = "sha256:new"
        for _ in range(100):
            if submitted:
                break
            await asyncio.sleep(0.05)
        assert len(submitted) == 1
        assert (await store.graph.get_watched(BASE, PLATFORM)).checked_at is not None


async def test_a_notified_digest_the_tag_does_not_serve_yet_is_checked_again(store,
                                                                            monkeypatch):
    # distribution 2.x notifies a tagged push before it moves the tag: the first check after
    # the notification can read the old digest.
    monkeypatch.setattr(digest_watch, "NOTIFIED_RECHECK_DELAYS", (0.01, 0.01, 0.01))
    await add_task(store, "app", DependencyKind.RUNTIME, "sha256:old")
    registry, submitted = FakeRegistry("sha256:old"), []
    watcher = make_watcher(store, registry, submitted)
    served_after = 2  # the tag moves once the first re-check has been made

    async def platform_digest(ref, platform):
        registry.calls += 1
        return Seen("sha256:new" if registry.calls > served_after else "sha256:old")

    registry.platform_digest = platform_digest
    assert await watcher.check_references(lambda base: base == BASE,
                                          lambda base: "sha256:new") == 1
    assert submitted == [], "the tag still served the old digest"
    await asyncio.gather(*watcher._checks)
    assert registry.calls == 3
    assert [run.task for run in await store.runs.queued()] == ["app"]


async def test_a_notified_digest_already_served_is_not_checked_again(store):
    await add_task(store, "app", DependencyKind.RUNTIME, "sha256:old")
    registry, submitted = FakeRegistry("sha256:new"), []
    watcher = make_watcher(store, registry, submitted)
    await watcher.check_references(lambda base: True, lambda base: "sha256:new")
    assert not watcher._checks and registry.calls == 1 and len(submitted) == 1


async def test_what_the_graph_shows_is_announced_only_when_it_changes(store):
    await add_task(store, "app", DependencyKind.RUNTIME, None)
    registry, shown = FakeRegistry("sha256:one"), []
    watcher = DigestWatcher(store.graph, registry, lambda change: asyncio.sleep(0),
                            lambda host: 1.0, on_shown_change=lambda: shown.append(1))
    await watcher.check(BASE, PLATFORM)
    assert len(shown) == 1, "the first digest"
    await watcher.check(BASE, PLATFORM)
    assert len(shown) == 1, "the same digest again: nothing to redraw"
    registry.failure = RegistryError("down")
    await watcher.check(BASE, PLATFORM)
    await watcher.check(BASE, PLATFORM)
    assert len(shown) == 2, "the check began failing (once, not on every failure)"
    registry.failure = None
    await watcher.check(BASE, PLATFORM)
    assert len(shown) == 3, "back"
    registry.digest = "sha256:two"
    await watcher.check(BASE, PLATFORM)
    assert len(shown) == 4, "a new digest"


async def test_reference_states_say_when_each_was_checked_and_whether_it_fails(store):
    import time

    await add_task(store, "app", DependencyKind.RUNTIME, "sha256:old")
    registry = FakeRegistry("sha256:old")
    watcher = make_watcher(store, registry, [])
    before = time.time()
    await watcher.poll_once()
    [state] = watcher.reference_states()
    assert (state.reference, state.platform, state.poll_interval) == (BASE, PLATFORM, 1.0)
    assert before <= state.last_check <= time.time() and not state.failing
    registry.failure = RegistryError("unreachable")
    await watcher.check(BASE, PLATFORM)
    [failing] = watcher.reference_states()
    assert failing.failing and failing.last_check >= state.last_check


async def test_a_change_and_its_fan_out_log_the_base_and_digest(store, caplog):
    import structlog

    await add_task(store, "app", DependencyKind.RUNTIME, "sha256:old")
    contexts = []

    def remember(record):
        contexts.append((record.getMessage(), structlog.contextvars.get_contextvars()))
        return True

    caplog.set_level("INFO", logger="basewatch")
    caplog.handler.addFilter(remember)
    await make_watcher(store, FakeRegistry("sha256:new"), []).check(BASE, PLATFORM)
    by_message = {message.split(" changed")[0]: context for message, context in contexts}
    expected = {"base": BASE, "platform": PLATFORM, "digest": "sha256:new"}
    assert by_message[f"base {BASE} ({PLATFORM})"] == expected
    assert by_message[f"base {BASE}"] == expected  # FanOut's "changed: queued ca1"
    assert structlog.contextvars.get_contextvars() == {}  # unbound afterwards


async def test_a_push_heard_before_the_watch_runs_sees_bases_registered_since(store):
    # While the daemon starts, the watcher is not running yet and registration refreshes it
    # batch after batch: a notification must see the bases registered up to then.
    registry, submitted = FakeRegistry("sha256:old"), []
    watcher = make_watcher(store, registry, submitted)
    await add_task(store, "app", DependencyKind.RUNTIME, "sha256:old")
    assert await watcher.check_references(lambda base: True) == 1
    later = "127.0.0.1:5000/later:1"
    await store.tasks.upsert(Task(name="later", context="/nowhere", images=["reg/later"]),
                             "config")
    await store.graph.replace_dependencies("later", [(later, PLATFORM, DependencyKind.RUNTIME)],
                                           {(later, PLATFORM): "sha256:before"})
    watcher.refresh()
    assert await watcher.check_references(lambda base: base == later) == 1
    assert len(submitted) == 1  # later's base moved: sha256:before -> sha256:old


async def add_tasks(store: Store, count: int, digest: str) -> list[str]:
    """`count` tasks, each on a base of its own; the bases."""
    bases = [f"127.0.0.1:5000/base-{n}:1" for n in range(count)]
    await store.tasks.upsert_many([(Task(name=f"app{n}", context="/nowhere",
                                         images=[f"reg/app{n}"]), "config")
                                   for n in range(count)])
    await store.graph.replace_many(
        [(f"app{n}", [(base, PLATFORM, DependencyKind.RUNTIME)], ())
         for n, base in enumerate(bases)], {(base, PLATFORM): digest for base in bases})
    return bases


def record_same_calls(store: Store, monkeypatch) -> list[int]:
    """The size of each batch of unchanged checks written, as the store is asked to."""
    sizes, record_same = [], store.graph.record_same

    async def recorded(checks):
        checks = list(checks)
        sizes.append(len(checks))
        await record_same(checks)

    monkeypatch.setattr(store.graph, "record_same", recorded)
    return sizes


async def test_unchanged_checks_are_written_a_batch_at_a_time(store, monkeypatch):
    monkeypatch.setattr(digest_watch, "SAME_BATCH", 2)
    bases = await add_tasks(store, 5, "sha256:old")
    watcher = make_watcher(store, FakeRegistry("sha256:old"), [])
    sizes = record_same_calls(store, monkeypatch)
    stats = await watcher.poll_once()
    assert (stats.checked, stats.changed) == (5, 0)
    assert sizes == [2, 2, 1]  # one transaction per batch, not per check nor per cycle
    for base in bases:
        assert (await store.graph.get_watched(base, PLATFORM)).checked_at is not None


async def test_the_scheduler_writes_unchanged_checks_together(store, monkeypatch):
    # One reference checked every 50 ms: its checks are written at most every SAME_FLUSH_SECONDS,
    # not one transaction each; and the last is written without waiting for another check.
    monkeypatch.setattr(digest_watch, "SAME_FLUSH_SECONDS", 0.3)
    await add_task(store, "app", DependencyKind.RUNTIME, "sha256:old")
    registry = FakeRegistry("sha256:old")
    sizes = record_same_calls(store, monkeypatch)
    watcher = DigestWatcher(store.graph, registry, lambda change: asyncio.sleep(0),
                            lambda host: 0.05, jitter=0.0)
    async with running(watcher.run()):
        for _ in range(200):
            if registry.calls >= 12:
                break
            await asyncio.sleep(0.05)
        assert registry.calls >= 12
        assert 1 <= len(sizes) <= registry.calls / 2, (sizes, registry.calls)


async def test_a_lone_unchanged_check_is_written_within_the_flush_window(store, monkeypatch):
    monkeypatch.setattr(digest_watch, "SAME_FLUSH_SECONDS", 0.2)
    await add_task(store, "app", DependencyKind.RUNTIME, "sha256:old")
    registry = FakeRegistry("sha256:old")
    sizes = record_same_calls(store, monkeypatch)
    # Checked at once (no jitter), then not for an hour.
    watcher = DigestWatcher(store.graph, registry, lambda change: asyncio.sleep(0),
                            lambda host: 3600.0, jitter=0.0)
    async with running(watcher.run()):
        for _ in range(200):
            if sizes:
                break
            await asyncio.sleep(0.05)
        assert (sizes, registry.calls) == ([1], 1)
        assert (await store.graph.get_watched(BASE, PLATFORM)).checked_at is not None


async def test_watched_references_are_parsed_once_not_on_every_check(store, monkeypatch):
    bases = await add_tasks(store, 3, "sha256:old")
    parsed, parse = [], ImageReference.parse

    def counted(text: str) -> ImageReference:
        parsed.append(text)
        return parse(text)

    monkeypatch.setattr(ImageReference, "parse", staticmethod(counted))
    watcher = make_watcher(store, FakeRegistry("sha256:old"), [])
    for _ in range(3):
        assert (await watcher.poll_once()).checked == 3  # each cycle reads the watched set
    watcher.reference_states()
    assert sorted(parsed) == sorted(bases)


async def test_a_base_that_does_not_parse_fails_its_check_as_before(store):
    await add_task(store, "app", DependencyKind.RUNTIME, "sha256:old")
    bad = "Not/A:Ref:!"
    await store.tasks.upsert(Task(name="bad", context="/nowhere", images=["reg/bad"]), "config")
    await store.graph.replace_dependencies("bad", [(bad, PLATFORM, DependencyKind.RUNTIME)], {})
    registry = FakeRegistry("sha256:old")
    watcher = make_watcher(store, registry, [])
    # Reading the watched set parses it: the bad one does not stop the others being checked.
    assert await watcher.check_references(lambda base: base == BASE) == 1
    with pytest.raises(ImageReferenceError):
        await watcher.check(bad, PLATFORM)
    assert registry.calls == 1


async def test_the_schedule_follows_the_watched_set_as_it_changes(store):
    other = "127.0.0.1:5000/other:1"
    await add_task(store, "app", DependencyKind.RUNTIME, "sha256:old")
    checked: list[str] = []

    async def platform_digest(ref, platform):
        checked.append(str(ref))
        return Seen("sha256:old")

    registry = FakeRegistry("sha256:old")
    registry.platform_digest = platform_digest
    watcher = DigestWatcher(store.graph, registry, lambda change: asyncio.sleep(0),
                            lambda host: 0.05, jitter=0.0)

    async def until(condition) -> None:
        for _ in range(200):
            if condition():
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"not within 4 s: {checked[-5:]}")

    async with running(watcher.run()):
        await until(lambda: checked.count(BASE) >= 2)
        await store.tasks.upsert(Task(name="other", context="/nowhere", images=["reg/other"]),
                                 "config")
        await store.graph.replace_dependencies("other", [(other, PLATFORM,
                                                          DependencyKind.RUNTIME)],
                                               {(other, PLATFORM): "sha256:old"})
        watcher.refresh()
        await until(lambda: checked.count(other) >= 2)  # a new reference joins the schedule
        await store.graph.replace_dependencies("app", [], {})
        await store.graph.prune()
        watcher.refresh()
        await until(lambda: checked.count(other) >= checked.count(BASE) + 3)
        seen = checked.count(BASE)
        await until(lambda: checked.count(other) >= checked.count(BASE) + 6)
        assert checked.count(BASE) == seen  # one no longer watched leaves the schedule


async def test_a_cycle_writes_full_batches_while_it_still_checks(store, monkeypatch):
    monkeypatch.setattr(digest_watch, "SAME_BATCH", 2)
    bases = await add_tasks(store, 6, "sha256:old")
    events, record_same = [], store.graph.record_same

    async def platform_digest(ref, platform):
        await asyncio.sleep(0.05 * bases.index(str(ref)))  # answered one after the other
        events.append("checked")
        return Seen("sha256:old")

    async def recorded(checks):
        events.append("written")
        await record_same(checks)

    monkeypatch.setattr(store.graph, "record_same", recorded)
    registry = FakeRegistry("sha256:old")
    registry.platform_digest = platform_digest
    assert (await make_watcher(store, registry, []).poll_once()).checked == 6
    assert events.count("written") == 3
    assert events.index("written") < len(events) - 1 - events[::-1].index("checked")
