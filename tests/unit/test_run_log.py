"""A run's log file and the wake-ups of those following it."""
from __future__ import annotations

import asyncio
import threading

from basewatch.builder.run_log import LogUpdates, RunLog


async def test_a_write_from_an_engine_thread_wakes_the_follower(tmp_path):
    updates = LogUpdates()
    run_log = RunLog(tmp_path / "ca1.log", on_write=lambda: updates.changed("ca1"))
    with updates.follow("ca1") as changed:
        writer = threading.Thread(target=run_log.write, args=("Step 1/2 : FROM scratch\n",))
        writer.start()
        await asyncio.wait_for(changed.wait(), 5)
        writer.join()
    run_log.close()
    assert (tmp_path / "ca1.log").read_text() == "Step 1/2 : FROM scratch\n"


async def test_only_the_runs_own_followers_wake():
    updates = LogUpdates()
    with updates.follow("ca1") as first, updates.follow("ca2") as second:
        updates.changed("ca2")
        await asyncio.wait_for(second.wait(), 5)
        assert not first.is_set()


async def test_a_change_nobody_follows_is_dropped_and_followers_are_forgotten():
    updates = LogUpdates()
    updates.changed("ca1")  # before anyone followed: nothing to wake, nothing kept
    with updates.follow("ca1"):
        pass
    updates.changed("ca1")
    await asyncio.sleep(0)
    assert updates._followers == {}


def test_a_closed_log_takes_no_more_writes(tmp_path):
    calls = []
    run_log = RunLog(tmp_path / "ca1.log", on_write=lambda: calls.append(1))
    run_log.line("started")
    run_log.close()
    run_log.write("late\n")
    assert len(calls) == 1 and "late" not in (tmp_path / "ca1.log").read_text()
