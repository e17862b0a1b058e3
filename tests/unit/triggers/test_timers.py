"""The timer trigger on a fake clock and a real store: each timer fires on its own, Sunday is 0,
disabled timers never fire, a fire coalesces into a queued run, missed fires give one catch-up
run, and a new timer does not fire for the past. Nothing here waits for the wall clock."""
from __future__ import annotations

import asyncio
import contextlib
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from basewatch.errors import StoreBusyError
from basewatch.models import RunRequest, RunStatus, RunType, Trigger
from basewatch.oci.platforms import Platform
from basewatch.tasks import Task, Timer
from basewatch.triggers import TimerFire, Triggers
from basewatch.triggers.timers import (MAX_SLEEP_SECONDS, RETRY_SECONDS, TimerScheduler,
                                       next_fire, timer_run)
from basewatch.triggers.manual import task_run
from tests.support.waiting import wait_for
from tests.support.stores import open_store


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


class Clock:
    def __init__(self, text: str):
        self.now = at(text)

    def __call__(self) -> datetime:
        return self.now

    def set(self, text: str) -> None:
        self.now = at(text)


def task(name: str = "app", *timers: Timer) -> Task:
    return Task(name=name, context="/srv/app", images=[f"reg:5000/{name}:latest"],
                platforms=[Platform("linux", "amd64"), Platform("linux", "arm64")],
                timers=timers)


@pytest.fixture
async def store(tmp_path):
    store = await open_store(tmp_path / "basewatch.db")
    yield store
    await store.close()


@pytest.fixture
def submitted() -> list[str]:
    return []


@pytest.fixture
def triggers(store, submitted) -> Triggers:
    return Triggers(store.runs, lambda run_id, delay: submitted.append(run_id))


@pytest.fixture
def clock() -> Clock:
    return Clock("2026-11-27 00:00:30")  # a Friday


@pytest.fixture
def scheduler(store, triggers, clock) -> TimerScheduler:
    return TimerScheduler(store.tasks, store.timers, triggers, clock=clock)


@pytest.fixture
def save(store, scheduler):
    """Store a task and tell the scheduler, as the registrar does after every change."""

    async def save(task: Task) -> None:
        await store.tasks.upsert(task, "api")
        scheduler.refresh()

    return save


async def finish_queued(store) -> None:
    """What the builder would do: every queued run ends, so the next fire is not coalesced."""
    for run in await store.runs.queued():
        await store.runs.finish(run.id, RunStatus.SUCCEEDED)


async def timer_runs(store):
    return [run for run in reversed(await store.runs.list(top=10000))
            if run.trigger is Trigger.TIMER]


async def step_through(store, scheduler, clock, until: str, step: timedelta) -> None:
    """Tick at every `step` up to `until`, the builder finishing each run before the next."""
    while clock.now < at(until):
        clock.now += step
        await scheduler.tick()
        await finish_queued(store)


def test_a_timer_run_names_the_timer_and_its_time_and_builds_every_platform():
    run = timer_run(task(), Timer("nightly", "0 2 * * *"), at("2026-12-01 02:00"))
    assert (run.task, run.trigger, run.run_type, run.platform) == (
        "app", Trigger.TIMER, RunType.AUTO_BUILD, "linux/amd64,linux/arm64")
    assert run.reason == "timer nightly (0 2 * * *) for 2026-12-01 02:00 UTC"
    catch_up = timer_run(task(), Timer("nightly", "0 2 * * *"), at("2026-12-01 02:00"), 9)
    assert catch_up.reason.endswith(", catching up on 9 missed fires")


@pytest.mark.parametrize("sunday", ["0", "7"])
async def test_a_sunday_timer_fires_on_sunday_not_monday(store, scheduler, clock, sunday):
    await store.tasks.upsert(task("app", Timer("weekly", f"0 12 * * {sunday}")), "api")
    await scheduler.tick()  # counted from Friday
    await step_through(store, scheduler, clock, "2026-12-05 23:00", timedelta(hours=1))
    [run] = await timer_runs(store)
    assert "for 2026-11-29 12:00 UTC" in run.reason
    assert at("2026-11-29 12:00").strftime("%A") == "Sunday"


async def test_every_minute_of_sunday_and_none_of_monday(store, scheduler, clock):
    await store.tasks.upsert(task("app", Timer("sundays", "* * * * 0")), "api")
    clock.set("2026-11-29 23:57:30")  # Sunday
    await scheduler.tick()
    await step_through(store, scheduler, clock, "2026-11-30 00:05:00", timedelta(minutes=1))
    assert [run.reason.split(" for ")[1] for run in await timer_runs(store)] == [
        "2026-11-29 23:58 UTC", "2026-11-29 23:59 UTC"]


async def test_several_timers_fire_each_on_its_own(store, scheduler, clock):
    await store.tasks.upsert(task("app", Timer("often", "*/20 * * * *"),
                                  Timer("half", "30 * * * *")), "api")
    await store.tasks.upsert(task("other", Timer("hourly", "0 * * * *")), "api")
    clock.set("2026-12-01 09:59:00")
    await scheduler.tick()
    await step_through(store, scheduler, clock, "2026-12-01 11:55:00", timedelta(minutes=5))
    fired = [(run.task, run.reason.split(" (")[0].removeprefix("timer "),
              run.reason.split(" for ")[1]) for run in await timer_runs(store)]
    assert sorted(fired) == sorted([
        ("app", "often", "2026-12-01 10:00 UTC"), ("app", "often", "2026-12-01 10:20 UTC"),
        ("app", "often", "2026-12-01 10:40 UTC"), ("app", "often", "2026-12-01 11:00 UTC"),
        ("app", "often", "2026-12-01 11:20 UTC"), ("app", "often", "2026-12-01 11:40 UTC"),
        ("app", "half", "2026-12-01 10:30 UTC"), ("app", "half", "2026-12-01 11:30 UTC"),
        ("other", "hourly", "2026-12-01 10:00 UTC"), ("other", "hourly", "2026-12-01 11:00 UTC"),
    ])


async def test_a_disabled_timer_never_fires(store, scheduler, clock):
    await store.tasks.upsert(task("app", Timer("off", "* * * * *", enabled=False)), "api")
    await scheduler.tick()
    await step_through(store, scheduler, clock, "2026-11-27 03:00", timedelta(minutes=7))
    assert await timer_runs(store) == []
    assert await store.timers.marks() == []


async def test_a_fire_while_a_run_of_the_task_is_queued_coalesces_into_it(
        store, scheduler, clock, submitted):
    await store.tasks.upsert(task("app", Timer("a", "0 * * * *"), Timer("b", "0 * * * *")), "api")
    await scheduler.tick()
    clock.set("2026-11-27 01:00:10")
    await scheduler.tick()  # both fire for 01:00: one run
    [run] = await store.runs.queued()
    assert run.trigger is Trigger.TIMER and submitted == [run.id]
    clock.set("2026-11-27 02:00:10")
    await scheduler.tick()  # still queued: the 02:00 fires are served by it
    assert [r.id for r in await store.runs.list(top=100)] == [run.id]
    # Handled all the same: the fires are not made up for once the run has gone.
    await finish_queued(store)
    await scheduler.tick()
    assert len(await store.runs.list(top=100)) == 1


@pytest.mark.parametrize("queued, coalesces", [
    (RunRequest("app", Trigger.IMAGE_UPDATE, RunType.AUTO_BUILD, "linux/amd64"), True),
    (task_run("app", "linux/amd64", {}), True),
    # These build something else than the task's context as it stands: the fire runs too.
    (task_run("app", "linux/amd64", {"CHANNEL": "beta"}), False),
    (RunRequest("app", Trigger.PULL_REQUEST, RunType.AUTO_BUILD, "linux/amd64"), False),
    (task_run("other", "linux/amd64", {}), False),
])
async def test_which_queued_runs_serve_a_fire(store, scheduler, clock, triggers, queued,
                                              coalesces):
    await store.tasks.upsert(task("app", Timer("hourly", "0 * * * *")), "api")
    await scheduler.tick()
    await triggers.enqueue([queued])
    clock.set("2026-11-27 01:00:10")
    await scheduler.tick()
    assert len(await timer_runs(store)) == (0 if coalesces else 1)


async def test_fires_missed_while_down_give_one_catch_up_run(store, triggers, clock):
    await store.tasks.upsert(task("app", Timer("hourly", "0 * * * *")), "api")
    await TimerScheduler(store.tasks, store.timers, triggers, clock=clock).tick()
    # Ten days down; a new daemon (a new scheduler on the same store) starts.
    clock.set("2026-12-07 00:30:00")
    restarted = TimerScheduler(store.tasks, store.timers, triggers, clock=clock)
    assert await restarted.tick() == at("2026-12-07 01:00")
    [run] = await store.runs.queued()
    assert run.reason == ("timer hourly (0 * * * *) for 2026-12-07 00:00 UTC, catching up on "
                          "240 missed fires")
    await finish_queued(store)
    await restarted.tick()
    await TimerScheduler(store.tasks, store.timers, triggers, clock=clock).tick()
    assert len(await timer_runs(store)) == 1


async def test_a_catch_up_after_a_very_long_gap_counts_up_to_a_bound(store, triggers, clock):
    await store.tasks.upsert(task("app", Timer("always", "* * * * *")), "api")
    await TimerScheduler(store.tasks, store.timers, triggers, clock=clock).tick()
    clock.set("2027-11-27 00:00:30")
    await TimerScheduler(store.tasks, store.timers, triggers, clock=clock).tick()
    [run] = await timer_runs(store)
    assert run.reason.endswith("catching up on 1000+ missed fires")


async def test_a_new_timer_does_not_fire_for_the_past(store, scheduler, clock):
    clock.set("2026-12-01 02:30:00")
    await store.tasks.upsert(task("app", Timer("nightly", "0 2 * * *")), "api")
    assert await scheduler.tick() == at("2026-12-02 02:00")
    assert await timer_runs(store) == []
    clock.set("2026-12-02 02:00:00")
    await scheduler.tick()
    [run] = await timer_runs(store)
    assert "for 2026-12-02 02:00 UTC" in run.reason and "catching up" not in run.reason


async def test_a_timer_enabled_again_or_rescheduled_starts_from_now(store, scheduler, clock,
                                                                 save):
    nightly = Timer("nightly", "0 2 * * *")
    await save(task("app", nightly))
    await scheduler.tick()
    await save(task("app", replace(nightly, enabled=False)))
    clock.set("2026-11-30 12:00:00")
    await scheduler.tick()  # disabled: forgotten
    await save(task("app", nightly))
    clock.set("2026-12-01 12:00:00")
    await scheduler.tick()  # enabled again: nothing for the nights it was off
    await save(task("app", replace(nightly, schedule="0 3 * * *")))
    clock.set("2026-12-05 12:00:00")
    await scheduler.tick()  # the schedule changed while down: counted from now, too
    assert await timer_runs(store) == []
    [mark] = await store.timers.marks()
    assert (mark.schedule, mark.last_scheduled) == ("0 3 * * *", at("2026-12-05 03:00"))


async def test_a_deleted_task_loses_its_marks_and_queues_nothing(store, scheduler, triggers,
                                                                 clock):
    await store.tasks.upsert(task("app", Timer("hourly", "0 * * * *")), "api")
    await scheduler.tick()
    await store.tasks.delete("app")
    assert await store.timers.marks() == []
    fire = TimerFire("app", "hourly", at("2026-11-27 01:00"))
    request = timer_run(task("app"), Timer("hourly", "0 * * * *"), fire.scheduled)
    assert await triggers.enqueue([request], timer_fire=fire) == []
    await store.timers.start("app", "hourly", "0 * * * *", at("2026-11-27 00:00"))
    assert await store.timers.marks() == []  # no mark for a task that is gone


async def test_a_fire_is_recorded_once(store, scheduler, triggers):
    await store.tasks.upsert(task("app", Timer("hourly", "0 * * * *")), "api")
    await scheduler.tick()
    fire = TimerFire("app", "hourly", at("2026-11-27 01:00"))
    request = timer_run(task("app"), Timer("hourly", "0 * * * *"), fire.scheduled)
    [first] = await triggers.enqueue([request], timer_fire=fire)
    await finish_queued(store)
    assert await triggers.enqueue([request], timer_fire=fire) == []  # the same fire again
    assert [run.id for run in await timer_runs(store)] == [first]


def test_next_fire_is_in_utc_and_none_when_disabled():
    now = at("2026-12-01 02:30:00")
    assert next_fire(Timer("n", "0 2 * * *"), now) == at("2026-12-02 02:00")
    assert next_fire(Timer("n", "0 2 * * *", enabled=False), now) is None


async def test_the_loop_sleeps_until_the_next_fire_and_wakes_when_tasks_change(
        store, triggers, clock):
    slept: list[float] = []
    time_passes = asyncio.Event()

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        await time_passes.wait()  # the test lets the time go by
        time_passes.clear()
        clock.now += timedelta(seconds=seconds)

    async def sleeps(count: int) -> None:
        await wait_for(lambda: asyncio.sleep(0, len(slept) >= count), 5, f"{count} sleeps")

    scheduler = TimerScheduler(store.tasks, store.timers, triggers, clock=clock, sleep=sleep)
    running = asyncio.create_task(scheduler.run())
    try:
        await sleeps(1)
        assert slept == [MAX_SLEEP_SECONDS]  # no timers: the tasks are read again each minute
        await store.tasks.upsert(task("app", Timer("minutely", "* * * * *")), "api")
        scheduler.refresh()  # as the registrar's on_change does after a task changes
        await sleeps(2)  # woken at once: counted from 00:00 (it is 00:00:30), 30 s to 00:01
        assert slept[1] == 30.0 and clock.now == at("2026-11-27 00:00:30")
        time_passes.set()
        await sleeps(3)
        assert slept[2] == 60.0
        assert [r.reason.split(" for ")[1] for r in await timer_runs(store)] == [
            "2026-11-27 00:01 UTC"]
        time_passes.set()
        await sleeps(4)  # 00:02 came while that run was still queued: served by it
        assert len(await timer_runs(store)) == 1
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def test_a_store_that_refuses_for_now_is_tried_again(store, triggers, clock, caplog):
    class Busy:
        calls = 0

        async def all(self):
            Busy.calls += 1
            if Busy.calls == 1:
                raise StoreBusyError("database is locked")
            return await store.tasks.all()

    slept: list[float] = []
    stop = asyncio.Event()

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) >= 2:
            await stop.wait()

    await store.tasks.upsert(task("app", Timer("hourly", "0 * * * *")), "api")
    scheduler = TimerScheduler(Busy(), store.timers, triggers, clock=clock, sleep=sleep)
    running = asyncio.create_task(scheduler.run())
    try:
        await wait_for(lambda: asyncio.sleep(0, len(slept) >= 2), 5, "two sleeps")
        assert slept[0] == RETRY_SECONDS
        assert "timers: database is locked; trying again in 5s" in caplog.text
        assert [m.timer for m in await store.timers.marks()] == ["hourly"]  # then it went on
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
