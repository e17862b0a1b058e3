"""The pool of build engines over fake backends and pings: least-loaded first within each
engine's slots, platforms, a run that waits for a slot, an engine that stops answering (its runs
fail naming it), back-off and return; the executor queueing a lost run again once; and two
daemons' pools sharing the engines' slots through one store."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from basewatch.builder.backends.pool import engine_pool
from basewatch.builder.backends.pool.engine_pool import EnginePool, PoolMember, plan_platforms
from basewatch.builder.executor import ENGINE_RECHECK_SECONDS, RunExecutor
from basewatch.builder.contexts.checkout import Checkouts
from basewatch.builder.planner import RunPlanner
from basewatch.builder.quick_runs import QuickBuildSpec, QuickRuns
from basewatch.errors import BasewatchError, EngineError, EngineLost, StoreBusyError
from basewatch.models import RunRequest, RunStatus, RunType, Trigger
from basewatch.oci.platforms import Platform
from basewatch.run_plan import BuildStep, RunPlan
from basewatch.store import LocalEngineSlots, SharedEngineSlots, SQLiteStore
from tests.support.fake_backend import FakeBackend
from tests.support.stores import open_store
from tests.support.waiting import wait_for


class Log:
    def __init__(self):
        self.lines: list[str] = []

    def line(self, text: str) -> None:
        self.lines.append(text)

    def write(self, text: str) -> None:
        self.lines.append(text)


class Ping:
    """A ping that answers until told `down`."""

    def __init__(self):
        self.down: str | None = None
        self.count = 0

    def __call__(self) -> None:
        self.count += 1
        if self.down:
            raise EngineError(self.down)


def plan(run_id: str, *platforms: str) -> RunPlan:
    return RunPlan(run_id, "t", Path("."), ["reg/t:1"],
                   [BuildStep(p, ["reg/t:1"], ["reg/base:1"]) for p in platforms or
                    ("linux/amd64",)])


def member(name: str, slots: int, platforms=None, backend=None, ping=None) -> PoolMember:
    return PoolMember(name, backend or FakeBackend(hold_on=BuildStep), ping or Ping(), slots,
                      None if platforms is None else tuple(map(Platform.parse, platforms)))


async def noop(outcome) -> None:
    pass


@pytest.fixture
async def daemon_stores(tmp_path):
    """open() gives a store on one database (each call another daemon's connection to it);
    closed after the pools stop, so no read of theirs is cut by a closed store."""
    opened = []

    async def open_one():
        opened.append(await open_store(tmp_path / "basewatch.db"))
        return opened[-1]

    yield open_one
    for store in opened:
        await store.close()


@pytest.fixture
async def pools(daemon_stores):
    made = []

    async def make(*members, **options) -> EnginePool:
        pool = EnginePool(list(members), **options)
        await pool.start()
        made.append(pool)
        return pool

    yield make
    for pool in made:
        await pool.stop()
        pool.close()


async def test_least_loaded_first_within_each_engines_slots(pools):
    assigned: list[tuple[str, str]] = []

    async def on_assigned(run_id, engine):
        assigned.append((run_id, engine))

    a, b = member("a", 1), member("b", 2)
    pool = await pools(a, b, on_assigned=on_assigned)
    assert pool.slots == 3
    runs = [asyncio.create_task(pool.run(plan(f"r{n}"), Log(), noop)) for n in range(3)]
    await wait_for(lambda: _true(len(assigned) == 3), 5, "three runs assigned")
    assert assigned == [("r0", "a"), ("r1", "b"), ("r2", "b")]
    assert pool.states()["b"] == {"state": "up", "runs": 2, "max_concurrent_runs": 2,
                                  "platforms": None}

    waiting_log = Log()
    fourth = asyncio.create_task(pool.run(plan("r3"), waiting_log, noop))
    await wait_for(lambda: _true(waiting_log.lines), 5, "the fourth run's wait")
    assert waiting_log.lines == ["Waiting for a build engine (a, b) with a free slot"]
    a.backend.release.set()  # a's run ends: its slot goes to the one waiting
    await runs[0]
    await wait_for(lambda: _true(len(assigned) == 4), 5, "the fourth run assigned")
    assert assigned[-1] == ("r3", "a") and waiting_log.lines[1] == "Engine: a"
    b.backend.release.set()
    await asyncio.gather(*runs[1:], fourth)
    assert {name: state["runs"] for name, state in pool.states().items()} == {"a": 0, "b": 0}


async def test_a_run_goes_to_an_engine_that_builds_every_platform_it_needs(pools):
    amd = member("amd", 2, ["linux/amd64"])
    both = member("both", 1, ["linux/amd64", "linux/arm64"])
    pool = await pools(amd, both)
    for engine in (amd, both):
        engine.backend.release.set()
    log = Log()
    await pool.run(plan("r1", "linux/amd64", "linux/arm64/v8"), log, noop)
    assert log.lines[0] == "Engine: both"
    assert plan_platforms(plan("x", "linux/arm64", "linux/amd64")) == {
        Platform.parse("linux/arm64"), Platform.parse("linux/amd64")}

    with pytest.raises(BasewatchError) as refused:
        await pool.run(plan("r2", "linux/s390x"), Log(), noop)
    assert str(refused.value) == ("no build engine builds linux/s390x (engines[].platforms: "
                                  "amd: linux/amd64; both: linux/amd64, linux/arm64)")
    assert not amd.runs and not both.runs


async def test_a_failing_run_on_an_engine_that_answers_fails_as_it_is(pools):
    failing = member("a", 1, backend=FakeBackend(fail_on=BuildStep))
    pool = await pools(failing)
    with pytest.raises(EngineError) as failed:
        await pool.run(plan("r1"), Log(), noop)
    assert not isinstance(failed.value, EngineLost)
    assert pool.states()["a"]["state"] == "up"


async def test_an_engine_that_stops_answering_is_down_until_it_answers_again(pools, caplog):
    ping = Ping()
    lost = member("a", 2, backend=FakeBackend(fail_on=BuildStep,
                                              failure=EngineError("build failed: EOF")),
                  ping=ping)
    pool = await pools(lost, check_seconds=3600, down_recheck_seconds=0.05)
    ping.down = "cannot reach the Docker Engine at tcp://a:2376: connection refused"
    with pytest.raises(EngineLost) as raised:
        await pool.run(plan("r1"), Log(), noop)
    assert raised.value.engine == "a"
    assert str(raised.value) == ("the build engine a stopped answering during the run "
                                 "(cannot reach the Docker Engine at tcp://a:2376: connection "
                                 "refused)")
    assert pool.states()["a"] == {"state": "down", "runs": 0, "max_concurrent_runs": 2,
                                  "platforms": None, "error": ping.down}
    assert "build engine a is down" in caplog.text

    # While it is down a run waits; once it answers (backing off meanwhile) the run goes there.
    lost.backend = FakeBackend()
    log = Log()
    waiting = asyncio.create_task(pool.run(plan("r2"), log, noop))
    await wait_for(lambda: _true(ping.count >= 4), 5, "pings while it is down")
    assert not waiting.done() and log.lines == [
        "Waiting for a build engine (a) with a free slot; down: a"]
    ping.down = None
    await asyncio.wait_for(waiting, 5)
    assert log.lines[1] == "Engine: a" and pool.states()["a"]["state"] == "up"


async def test_an_engine_that_hangs_has_its_runs_cut_short(pools):
    ping = Ping()
    hung = member("a", 2, ping=ping)
    pool = await pools(hung, check_seconds=0.05, down_recheck_seconds=3600)
    run = asyncio.create_task(pool.run(plan("r1"), Log(), noop))
    await hung.backend.holding.wait()
    ping.down = "no answer to a ping within 10s"  # the watch's next ping marks it down
    with pytest.raises(EngineLost) as raised:
        await asyncio.wait_for(run, 5)
    assert "no answer to a ping within 10s" in str(raised.value)


async def test_a_run_lost_with_its_engine_is_queued_again_once(tmp_path, pools):
    store = await SQLiteStore.open(tmp_path / "state" / "basewatch.db")
    try:
        ping = Ping()
        engine = member("a", 1, backend=FakeBackend(fail_on=BuildStep), ping=ping)
        pool = await pools(engine, on_assigned=store.runs.record_engine,
                           check_seconds=3600, down_recheck_seconds=3600)
        requeued: list[str] = []
        planner = RunPlanner(store, Checkouts(tmp_path / "state" / "contexts", 10_000_000),
                             QuickRuns(tmp_path / "state" / "contexts"))
        executor = RunExecutor(store, planner, pool, tmp_path / "state" / "logs",
                               requeue=requeued.append)
        folder = tmp_path / "state" / "contexts" / "upload-1"
        folder.mkdir(parents=True)
        (folder / "Dockerfile").write_text("FROM scratch\n")
        spec = QuickBuildSpec(context_path=str(folder), push=False)
        first = (await store.runs.create(RunRequest(
            "", Trigger.MANUAL, RunType.QUICK_BUILD, "linux/amd64", "quick build",
            spec=spec.model_dump_json()))).id
        ping.down = "connection refused"
        await executor.execute(first)
        run = await store.runs.get(first)
        assert run.status is RunStatus.FAILED and run.engine == "a"
        assert run.error == ("the build engine a stopped answering during the run "
                             "(connection refused)")
        [rerun_id] = requeued
        rerun = await store.runs.get(rerun_id)
        assert rerun.status is RunStatus.QUEUED and rerun.retry_of == first
        assert rerun.engine is None
        assert "its build engine a going down" in rerun.reason
        log = (tmp_path / "state" / "logs" / f"{first}.log").read_text()
        assert "Engine: a" in log and "; it is queued again" in log
        assert folder.exists(), "the quick build's upload is kept for its re-run"

        # The re-run lost too: failed, and not queued a third time.
        ping.down = None
        await pool._check(engine)
        ping.down = "connection refused"
        await executor.execute(rerun_id)
        assert (await store.runs.get(rerun_id)).status is RunStatus.FAILED
        assert requeued == [rerun_id]
        assert not folder.exists(), "no run needs the upload now"
    finally:
        await store.close()


async def _true(value) -> bool:
    return bool(value)


async def test_a_run_no_engine_has_room_for_waits_outside_the_queue(tmp_path, pools):
    amd, arm = member("amd", 1, ["linux/amd64"]), member("arm", 1, ["linux/arm64"])
    pool = await pools(amd, arm)
    held = asyncio.create_task(pool.run(plan("r1", "linux/amd64"), Log(), noop))
    await amd.backend.holding.wait()
    assert not pool.has_room("linux/amd64"), "its one engine is busy"
    assert pool.has_room("linux/arm64") and pool.has_room("linux/s390x")
    assert pool.has_room("linux/amd64,linux/arm64"), "no engine builds both: it fails at once"
    arm.up = False
    assert pool.has_room("linux/arm64"), "all down: it waits in run(), not in the queue"

    store = await SQLiteStore.open(tmp_path / "state" / "basewatch.db")
    try:
        planner = RunPlanner(store, Checkouts(tmp_path / "state" / "contexts", 10_000_000),
                             QuickRuns(tmp_path / "state" / "contexts"))
        executor = RunExecutor(store, planner, pool, tmp_path / "state" / "logs",
                               has_room=pool.has_room)
        run = await store.runs.create(RunRequest("t", Trigger.MANUAL, RunType.QUICK_BUILD,
                                                 "linux/amd64", "manual"))
        assert await executor.execute(run.id) == ENGINE_RECHECK_SECONDS
        assert (await store.runs.get(run.id)).status is RunStatus.QUEUED
    finally:
        await store.close()
    amd.backend.release.set()
    await held


class CountingBackend(FakeBackend):
    """Counts the runs on its engine however many daemons' pools send them (`on`, shared),
    and the most there were at once; each run takes `seconds`."""

    def __init__(self, name: str, on: dict[str, int], most: dict[str, int], seconds: float):
        super().__init__()
        self.name, self.on, self.most, self.seconds = name, on, most, seconds

    async def run(self, plan, log, report) -> None:
        self.on[self.name] = self.on.get(self.name, 0) + 1
        self.most[self.name] = max(self.most.get(self.name, 0), self.on[self.name])
        try:
            await asyncio.sleep(self.seconds)
        finally:
            self.on[self.name] -= 1


@pytest.mark.parametrize("shared_by", ["store", "memory"])
async def test_two_daemons_on_one_store_never_exceed_an_engines_slots(daemon_stores, pools,
                                                                      shared_by):
    """Two daemons' pools over the same two engines, 24 runs at once spread over both: each
    engine's max holds across them, and every slot is free again at the end."""
    stores = [await daemon_stores() for _ in range(2)]
    memory = LocalEngineSlots()
    on: dict[str, int] = {}
    most: dict[str, int] = {}
    daemons = []
    for index, store in enumerate(stores):
        slots = SharedEngineSlots(store.database) if shared_by == "store" else memory
        daemons.append(await pools(
            *(PoolMember(name, CountingBackend(name, on, most, 0.02), Ping(), slots_)
              for name, slots_ in (("a", 1), ("b", 2))),
            slots=slots, daemon_id=f"daemon-{index}"))
    runs = [daemons[n % 2].run(plan(f"r{n}"), Log(), noop) for n in range(24)]
    await asyncio.wait_for(asyncio.gather(*runs), 60)
    assert most == {"a": 1, "b": 2}, "each engine full at times, never past its max"
    assert on == {"a": 0, "b": 0}
    assert await daemons[0].engine_slots.loads() == {}

    async def all_free() -> bool:  # each asking reads the other daemon's loads when old
        return all(state["runs"] == 0 for pool in daemons
                   for state in pool.states().values())

    await wait_for(all_free, 5, "both daemons seeing every slot free")


async def test_another_daemons_runs_count_in_has_room_and_states(daemon_stores, pools):
    store = await daemon_stores()
    slots = SharedEngineSlots(store.database)
    here = await pools(member("a", 2), slots=slots, daemon_id="here")
    assert await slots.claim("elsewhere-1", [("a", 2)], "there") == "a"
    assert await slots.claim("elsewhere-2", [("a", 2)], "there") == "a"
    # Asked, it reads the loads again in the background once LOADS_SECONDS have passed.
    await wait_for(lambda: _true(not here.has_room("linux/amd64")), 5, "a seen full")
    assert here.states()["a"]["runs"] == 2

    # A run here waits for the other daemon's slot, and gets it once freed there.
    log = Log()
    waiting = asyncio.create_task(here.run(plan("r1"), log, noop))
    await wait_for(lambda: _true(log.lines), 5, "the wait")
    assert log.lines == ["Waiting for a build engine (a) with a free slot"]
    await slots.release("elsewhere-1")
    await wait_for(lambda: _true("Engine: a" in log.lines), 5, "the slot freed there")
    assert await slots.loads() == {"a": 2}
    assert await slots.loads(other_than="here") == {"a": 1}
    here.members[0].backend.release.set()
    await waiting
    assert await slots.loads() == {"a": 1}


async def test_a_slot_is_freed_whatever_ends_the_run(daemon_stores, pools):
    store = await daemon_stores()
    slots = SharedEngineSlots(store.database)
    ping = Ping()
    lost = member("a", 1, backend=FakeBackend(fail_on=BuildStep,
                                              failure=EngineError("EOF")), ping=ping)
    pool = await pools(lost, slots=slots, check_seconds=3600, down_recheck_seconds=3600)
    ping.down = "connection refused"
    with pytest.raises(EngineLost):
        await pool.run(plan("r1"), Log(), noop)
    assert await slots.loads() == {}

    held = member("b", 1)
    pool = await pools(held, slots=slots)
    run = asyncio.create_task(pool.run(plan("r2"), Log(), noop))
    await held.backend.holding.wait()
    assert await slots.loads() == {"b": 1}
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert await slots.loads() == {} and not held.runs

    # Canceled while it waits for a slot: it held none, and holds none.
    blocker = asyncio.create_task(pool.run(plan("r3"), Log(), noop))
    await wait_for(lambda: _true(held.runs), 5, "r3 on b")
    log = Log()
    waiting = asyncio.create_task(pool.run(plan("r4"), log, noop))
    await wait_for(lambda: _true(log.lines), 5, "r4's wait")
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    held.backend.release.set()
    await blocker
    assert await slots.loads() == {}


class RefusingSlots(LocalEngineSlots):
    """Slots whose store refuses the first `claims` claims and `releases` releases."""

    def __init__(self, claims: int = 0, releases: int = 0):
        super().__init__()
        self.refuse = {"claim": claims, "release": releases}

    def _refused(self, what: str) -> None:
        if self.refuse[what]:
            self.refuse[what] -= 1
            raise StoreBusyError("database is locked")

    async def claim(self, run_id, candidates, daemon):
        self._refused("claim")
        return await super().claim(run_id, candidates, daemon)

    async def release(self, run_id):
        self._refused("release")
        await super().release(run_id)


async def test_a_store_that_refuses_for_now_delays_a_claim_or_a_release(pools, monkeypatch,
                                                                         caplog):
    monkeypatch.setattr(engine_pool, "RELEASE_WAIT_SECONDS", 0.05)
    monkeypatch.setattr(engine_pool, "RELEASE_RETRY_SECONDS", 0.05)
    slots = RefusingSlots(claims=1, releases=2)
    engine = member("a", 1)
    engine.backend.release.set()
    pool = await pools(engine, slots=slots)
    log = Log()
    await asyncio.wait_for(pool.run(plan("r1"), log, noop), 5)
    assert log.lines[:2] == [
        "The store refuses the claim of a build engine's slot for now (database is locked); "
        "trying again", "Engine: a"]
    # The run has ended; its slot is freed once the store takes the release.
    assert "cannot free run r1's build engine slot yet (database is locked)" in caplog.text
    await wait_for(lambda: _true(not slots._held), 5, "the slot freed")
    assert slots.refuse == {"claim": 0, "release": 0}
