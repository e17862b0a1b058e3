"""The run queue: at most `concurrency` runs at once, each run once, "not yet" answered by
waiting outside the queue, and a run that could not start tried again, backing off."""
from __future__ import annotations

import asyncio

from basewatch import runqueue
from basewatch.runqueue import RunQueue
from tests.support.waiting import wait_for


async def test_no_more_than_concurrency_runs_at_once():
    running, most, release = set(), [0], asyncio.Event()
    done = []

    async def execute(run_id):
        running.add(run_id)
        most[0] = max(most[0], len(running))
        await release.wait()
        running.discard(run_id)
        done.append(run_id)

    queue = RunQueue(execute, concurrency=2)
    queue.start()
    try:
        for run_id in ("ca1", "ca2", "ca3", "ca4"):
            queue.submit(run_id)
        await wait_for(lambda: asyncio.sleep(0, len(running) == 2), 5, "two runs to start")
        assert queue.depth == 2 and queue.running == {"ca1", "ca2"}
        release.set()
        await wait_for(lambda: asyncio.sleep(0, len(done) == 4), 5, "every run to end")
        assert most == [2] and sorted(done) == ["ca1", "ca2", "ca3", "ca4"]
    finally:
        await queue.stop()


async def test_a_run_submitted_twice_runs_once():
    calls = []

    async def execute(run_id):
        calls.append(run_id)

    queue = RunQueue(execute, concurrency=1)
    queue.submit("ca1")
    queue.submit("ca1")
    queue.start()
    try:
        await wait_for(lambda: asyncio.sleep(0, calls == ["ca1"]), 5, "the run")
        await asyncio.sleep(0.05)
        assert calls == ["ca1"]
    finally:
        await queue.stop()


async def test_not_yet_waits_outside_the_queue_then_asks_again():
    answers = {"ca1": [0.05, None]}
    calls = []

    async def execute(run_id):
        calls.append(run_id)
        return answers[run_id].pop(0) if run_id in answers else None

    queue = RunQueue(execute, concurrency=1)
    queue.start()
    try:
        queue.submit("ca1")
        queue.submit("ca2")
        await wait_for(lambda: asyncio.sleep(0, calls.count("ca1") == 2), 5, "the second ask")
        assert calls == ["ca1", "ca2", "ca1"], "the waiting run held no worker"
    finally:
        await queue.stop()


async def test_a_run_that_could_not_start_is_tried_again_backing_off(monkeypatch):
    monkeypatch.setattr(runqueue, "RETRY_AFTER_ERROR_SECONDS", 0.01)
    attempts = []

    async def execute(run_id):
        attempts.append(asyncio.get_running_loop().time())
        if len(attempts) < 3:
            raise OSError("database is locked")

    queue = RunQueue(execute, concurrency=1)
    queue.start()
    try:
        queue.submit("ca1")
        await wait_for(lambda: asyncio.sleep(0, len(attempts) == 3), 5, "the third attempt")
        # Each retry waits at least twice as long as the one before (a loaded machine may
        # stretch the first, so the floors are checked, not the two against each other).
        first_wait, second_wait = attempts[1] - attempts[0], attempts[2] - attempts[1]
        resolution = asyncio.get_running_loop()._clock_resolution
        assert first_wait >= 0.01 - resolution
        assert second_wait >= 0.02 - resolution, "each retry waits longer"
        await asyncio.sleep(0.05)
        assert len(attempts) == 3, "not run again once it started"
    finally:
        await queue.stop()
