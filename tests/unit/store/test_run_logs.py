"""Runs' logs in the database: appended by position, read from any offset, gone with the run.
Runs on either store (`--store=postgres`)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from basewatch.models import RunRequest, RunStatus, RunType, Trigger
from basewatch.store.run_logs import MAX_CHUNK_BYTES
from tests.support.stores import open_store


async def new_run(store) -> str:
    run = await store.runs.create(RunRequest("app", Trigger.MANUAL, RunType.AUTO_BUILD,
                                             "linux/amd64"))
    return run.id


async def test_a_log_appended_in_pieces_reads_back_whole_and_from_any_offset(tmp_path):
    store = await open_store(tmp_path / "basewatch.db")
    try:
        run, other = await new_run(store), await new_run(store)
        assert await store.run_logs.read(run, 0) == b"" and await store.run_logs.size(run) == 0
        log = b"".join(f"line {n} \xc3\xa9\n".encode() for n in range(40000))  # ~500 KiB
        await store.run_logs.append([(run, 0, log[:10]), (other, 0, b"other run\n")])
        await store.run_logs.append([(run, 10, log[10:400_000])])
        await store.run_logs.append([(run, 400_000, log[400_000:])])

        assert await store.run_logs.size(run) == len(log)
        assert await store.run_logs.read(run, 0) == log
        for offset in (0, 9, 10, 11, MAX_CHUNK_BYTES + 10, 399_999, len(log) - 1):
            assert await store.run_logs.read(run, offset) == log[offset:], offset
        assert await store.run_logs.read(run, len(log)) == b""
        assert await store.run_logs.read(run, len(log) + 5) == b""
        assert await store.run_logs.read(other, 0) == b"other run\n"
        assert await store.run_logs.read("nosuchrun", 0) == b""
    finally:
        await store.close()


async def test_a_read_is_bounded_and_a_reader_goes_on_from_where_it_stopped(tmp_path):
    store = await open_store(tmp_path / "basewatch.db")
    try:
        run = await new_run(store)
        log = bytes(range(256)) * (5 * MAX_CHUNK_BYTES // 256 + 7)
        await store.run_logs.append([(run, 0, log)])
        read, pieces = b"", 0
        while piece := await store.run_logs.read(run, len(read), limit=MAX_CHUNK_BYTES):
            assert len(piece) <= 2 * MAX_CHUNK_BYTES
            read += piece
            pieces += 1
        assert read == log and pieces >= 5
    finally:
        await store.close()


async def test_writing_again_at_a_position_replaces_it_with_the_longer_bytes(tmp_path):
    # A flush the database committed though the daemon saw it fail is sent again, with what
    # was written since: the log must not get the first part twice, nor lose the rest.
    store = await open_store(tmp_path / "basewatch.db")
    try:
        run = await new_run(store)
        log = b"x" * (MAX_CHUNK_BYTES + 100) + b"y" * 50
        await store.run_logs.append([(run, 0, log[:MAX_CHUNK_BYTES + 100])])
        await store.run_logs.append([(run, 0, log)])
        assert await store.run_logs.read(run, 0) == log
        assert await store.run_logs.size(run) == len(log)
    finally:
        await store.close()


async def test_a_purged_run_takes_its_log_rows_with_it(tmp_path):
    store = await open_store(tmp_path / "basewatch.db")
    try:
        old, kept = await new_run(store), await new_run(store)
        for run in (old, kept):
            await store.run_logs.append([(run, 0, b"a log\n")])
        await store.runs.finish(old, RunStatus.SUCCEEDED)
        deleted, _ = await store.runs.purge_finished(
            datetime.now(timezone.utc) + timedelta(days=1), [])
        assert deleted == {old}
        assert await store.run_logs.size(old) == 0 and await store.run_logs.read(old, 0) == b""
        assert await store.run_logs.read(kept, 0) == b"a log\n"  # still queued: kept
    finally:
        await store.close()
