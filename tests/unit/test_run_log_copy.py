"""Runs' logs copied into the database as they are written, and read back by another daemon:
batched (a few writes a second whatever the build prints), never blocking the writer, tried
again while the database refuses, never failing the run, and complete before the run is
recorded as finished. On either store (`--store=postgres`)."""
from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from basewatch.builder.executor import RunExecutor
from basewatch.builder.run_log import LogUpdates, RunLog, log_path
from basewatch.builder.run_log_copy import RunLogCopies
from basewatch.builder.run_log_reader import RunLogReader
from basewatch.errors import StoreBusyError
from basewatch.http.api import stream_log
from basewatch.models import RunRequest, RunType, Trigger
from basewatch.run_plan import BuildStep
from tests.support.fake_backend import FakeBackend
from tests.support.stores import open_store
from tests.unit.test_executor import context, make_planner, queue_quick_build


@pytest.fixture
async def store(tmp_path):
    store = await open_store(tmp_path / "state" / "basewatch.db")
    yield store
    await store.close()


async def new_run(store) -> str:
    return (await store.runs.create(RunRequest("app", Trigger.MANUAL, RunType.AUTO_BUILD,
                                               "linux/amd64"))).id


class CountedAppends:
    """The store's run_logs, counting the writes and refusing the first `refuse` of them
    (with `error`), as a database that is away for a while does."""

    def __init__(self, run_logs, refuse: int = 0, error: Exception | None = None):
        self.run_logs = run_logs
        self.refuse = refuse
        self.error = error or StoreBusyError("connection refused")
        self.calls = 0
        self.tried = 0

    async def append(self, pieces) -> None:
        self.tried += 1
        if self.refuse:
            self.refuse -= 1
            raise self.error
        self.calls += 1
        await self.run_logs.append(pieces)

    async def read(self, run_id, offset, limit=1024 * 1024):
        return await self.run_logs.read(run_id, offset, limit)

    async def size(self, run_id):
        return await self.run_logs.size(run_id)


async def test_a_log_written_from_threads_is_copied_whole_in_a_few_writes(store, tmp_path):
    run_id = await new_run(store)
    appends = CountedAppends(store.run_logs)
    copies = RunLogCopies(appends)
    run_log = RunLog(log_path(tmp_path / "logs", run_id), copy=copies.open(run_id),
                     max_bytes=100_000)

    def build_output(thread: int) -> None:  # the engine's threads, as a build prints
        for n in range(2000):
            run_log.write(f"thread {thread} line {n}\n")

    threads = [threading.Thread(target=build_output, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        await asyncio.sleep(0.05)
    run_log.close()  # past the cap: its closing line is copied too
    await copies.close(run_id)

    file = log_path(tmp_path / "logs", run_id).read_bytes()
    assert b"(max_log_bytes)" in file
    assert await store.run_logs.read(run_id, 0) == file
    assert await store.run_logs.size(run_id) == len(file)
    assert appends.calls <= 5, "8,000 writes, batched by the flush period"
    assert copies._copies == {}, "nothing kept once the run ended"
    await asyncio.wait_for(copies._task, 5)  # and the writer ends with the last run


async def test_writes_never_wait_for_the_database(store, tmp_path):
    run_id = await new_run(store)
    held = asyncio.Event()

    class StuckDatabase(CountedAppends):
        async def append(self, pieces):
            await held.wait()
            await super().append(pieces)

    copies = RunLogCopies(StuckDatabase(store.run_logs))
    sink = copies.open(run_id)
    loop = asyncio.get_running_loop()
    started = loop.time()
    for n in range(1000):
        await asyncio.to_thread(sink, f"line {n}\n".encode())
    assert loop.time() - started < 5
    held.set()
    await copies.close(run_id)
    assert await store.run_logs.read(run_id, 0) == b"".join(
        f"line {n}\n".encode() for n in range(1000))


async def test_a_database_that_refuses_for_a_while_gets_the_whole_log_later(store, tmp_path,
                                                                            caplog):
    run_id = await new_run(store)
    appends = CountedAppends(store.run_logs, refuse=3)
    copies = RunLogCopies(appends, flush_seconds=0.05)
    sink = copies.open(run_id)
    for n in range(5):
        sink(f"line {n}\n".encode())
        await asyncio.sleep(0.06)
    await copies.close(run_id)
    assert await store.run_logs.read(run_id, 0) == b"".join(
        f"line {n}\n".encode() for n in range(5))
    assert appends.tried == appends.calls + 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["cannot copy runs' logs to the database (connection refused); "
                        "trying again"], "one warning for the whole time it refused"


async def test_a_copy_the_database_never_takes_is_given_up_without_failing_anything(
        store, tmp_path, caplog):
    run_id = await new_run(store)
    copies = RunLogCopies(CountedAppends(store.run_logs, refuse=10 ** 6), flush_seconds=0.01,
                          final_flush_seconds=0.3)
    copies.open(run_id)(b"a line\n")
    await copies.close(run_id)  # returns, after its bounded wait
    assert "the last 7 bytes of its log could not be copied" in caplog.text
    await copies.stop()

    broken = await new_run(store)
    copies = RunLogCopies(CountedAppends(store.run_logs, refuse=1, error=ValueError("bug")))
    sink = copies.open(broken)
    sink(b"first\n")
    await asyncio.sleep(0.2)
    sink(b"second\n")  # dropped: the copy was given up
    await copies.close(broken)
    assert f"cannot copy the logs of runs {broken} to the database" in caplog.text
    assert await store.run_logs.read(broken, 0) == b""


async def test_a_reader_reads_its_own_file_else_the_database_copy(store, tmp_path):
    here, elsewhere = await new_run(store), await new_run(store)
    (tmp_path / "logs").mkdir()
    log_path(tmp_path / "logs", here).write_bytes(b"from the file\n")
    await store.run_logs.append([(here, 0, b"from the database\n"),
                                 (elsewhere, 0, b"from the database\n")])
    shared = RunLogReader(tmp_path / "logs", store.run_logs)
    assert await shared.read(here, 0) == b"from the file\n"
    assert await shared.read(elsewhere, 5) == b"the database\n"
    assert await shared.copy_from_database(here) is None  # the archive reads the file
    assert await shared.copy_from_database(elsewhere) == b"from the database\n"
    assert await shared.copy_from_database(await new_run(store)) is None
    files_only = RunLogReader(tmp_path / "logs")  # SQLite: as before
    assert await files_only.read(elsewhere, 0) == b""
    assert await files_only.copy_from_database(elsewhere) is None


class Collected:
    """What stream_log sends, as an aiohttp response would."""

    def __init__(self):
        self.body = b""

    async def write(self, data: bytes) -> None:
        self.body += data


async def test_another_daemon_follows_a_run_to_its_end_from_the_database(store, tmp_path):
    # Daemon A runs the build (held half-way); daemon B, with a logs folder of its own on the
    # same database, follows the log until the run ends, and gets all of it.
    backend = FakeBackend(hold_on=BuildStep)
    copies = RunLogCopies(store.run_logs)
    executor = RunExecutor(store, make_planner(store, tmp_path), backend,
                           tmp_path / "a" / "logs", log_copies=copies)
    run_id = await queue_quick_build(store, context(tmp_path))
    execution = asyncio.create_task(executor.execute(run_id))
    await asyncio.wait_for(backend.holding.wait(), 30)

    async def running() -> bool:
        return not (await store.runs.get(run_id)).status.finished

    b = RunLogReader(tmp_path / "b" / "logs", store.run_logs)
    followed = Collected()
    follow = asyncio.create_task(stream_log(followed, b.source(run_id, running), True,
                                            LogUpdates().follow(run_id)))
    for _ in range(100):
        if b"fake: BuildStep" in followed.body:
            break
        await asyncio.sleep(0.05)
    assert b"started: task" in followed.body and b"fake: BuildStep" in followed.body
    assert not follow.done()
    backend.release.set()
    await asyncio.wait_for(execution, 30)
    await asyncio.wait_for(follow, 10)
    whole = log_path(tmp_path / "a" / "logs", run_id).read_bytes()
    assert b"was successful" in whole
    assert followed.body == whole
    assert not (tmp_path / "b" / "logs").exists()
