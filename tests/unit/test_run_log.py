"""A run's log file and the wake-ups of those following it."""
from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

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


def test_the_log_stops_at_max_bytes_and_ends_with_one_line_saying_so(tmp_path):
    # Issue 8: a run's log grew without bound.
    calls = []
    run_log = RunLog(tmp_path / "ca1.log", on_write=lambda: calls.append(1), max_bytes=1000)
    for index in range(100):
        run_log.write(f"line {index:03} " + "x" * 40 + "\n")  # 50 bytes a line
    run_log.write("Run ID: ca1 was successful\n")  # 27 bytes
    run_log.close()
    text = (tmp_path / "ca1.log").read_text()
    *kept, last = text.splitlines()
    assert kept == [f"line {index:03} " + "x" * 40 for index in range(20)]  # 1000 bytes
    assert last.endswith("The log was cut at 1,000 bytes (max_log_bytes): 4,027 more bytes "
                         "of output were not kept")
    assert text.count("was cut") == 1
    assert len(calls) == 21  # the kept writes and the cut line wake followers; the rest not


def test_a_write_that_would_cross_the_cap_keeps_what_fits_up_to_a_line_end(tmp_path):
    run_log = RunLog(tmp_path / "ca1.log", max_bytes=10)
    run_log.write("12345\n6789\nabcdef\n")
    run_log.write("ä" * 20)
    run_log.close()
    lines = (tmp_path / "ca1.log").read_text().splitlines()
    assert lines[0] == "12345"
    assert lines[1].endswith("The log was cut at 10 bytes (max_log_bytes): 52 more bytes of "
                             "output were not kept")
    assert len(lines) == 2


def test_the_cut_line_starts_a_line_of_its_own(tmp_path):
    run_log = RunLog(tmp_path / "ca1.log", max_bytes=10)
    run_log.write("1234")  # the engine streams a line in pieces
    run_log.write("567890123\n")
    run_log.close()
    first, cut = (tmp_path / "ca1.log").read_text().splitlines()
    assert first == "1234" and " The log was cut at 10 bytes" in cut


def test_a_log_under_the_cap_has_no_cut_line(tmp_path):
    run_log = RunLog(tmp_path / "ca1.log", max_bytes=10)
    run_log.write("123456789\n")
    run_log.close()
    assert (tmp_path / "ca1.log").read_text() == "123456789\n"


def test_a_write_that_fails_raises_a_run_log_error_once(tmp_path):
    # Issue 8, item 5: ENOSPC on the run log crashed the writer with a bare OSError.
    from basewatch.errors import RunLogError
    run_log = RunLog(Path("/dev/full"))  # every write: No space left on device
    with pytest.raises(RunLogError, match="could not write the run's log: .*No space left"):
        run_log.write("Step 1/2 : FROM scratch\n")
    run_log.line("Run ID: ca1 errored")  # the runner's own last line: dropped, no second error
    run_log.close()


def test_a_log_that_cannot_be_opened_is_a_run_log_error(tmp_path):
    from basewatch.errors import RunLogError
    (tmp_path / "logs").write_text("a file where the folder should be")
    with pytest.raises(RunLogError, match="could not open the run's log"):
        RunLog(tmp_path / "logs" / "ca1.log")
