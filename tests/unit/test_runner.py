"""The run lifecycle on a fake engine and a real database: every run ends in a final state with
its reason, whatever goes wrong; finishing is retried; a run that could not start is queued
again; a quick build's upload lives exactly as long as a run needs it."""
from __future__ import annotations

import asyncio
import logging
import sqlite3
from types import SimpleNamespace
from pathlib import Path

import pytest

from basewatch.store import runs as runs_module
from basewatch.builder.contexts.checkout import Checkouts
from basewatch.builder.engine import BuildResult
from basewatch.oci.image_sources import ImageSources
from basewatch.builder.quick_runs import QuickBuildSpec
from basewatch.builder.runner import RunExecutor
from basewatch.models import RunStatus, RunType, Trigger
from basewatch.runqueue import RunQueue
from basewatch.store import SQLiteStore
from basewatch.models import RunRequest
from tests.support.waiting import wait_for

DIGEST = "sha256:" + "a" * 64


class FakeEngine:
    """Builds nothing; `build` waits for `release` when one is given, then fails with `fail`."""

    def __init__(self, fail: BaseException | None = None):
        self.fail = fail
        self.building = asyncio.Event()
        self.release: asyncio.Event | None = None
        self.loop = asyncio.get_running_loop()

    def ping(self) -> None:
        pass

    def pull(self, source, name, platform, auth, log, current=None) -> str:
        log(f"pulled {source}\n")
        return DIGEST

    def build(self, request, log) -> BuildResult:
        log("Step 1/1 : FROM ...\n")
        self.loop.call_soon_threadsafe(self.building.set)
        if self.release is not None:
            asyncio.run_coroutine_threadsafe(self.release.wait(), self.loop).result(timeout=60)
        if self.fail is not None:
            raise self.fail
        return BuildResult("image")

    def push(self, tag, auth, log) -> str:
        return DIGEST

    def cancel(self) -> None:
        pass


class FakeDigests:
    """A registry client that answers with `fail` raised, as a hostile registry makes it."""

    def __init__(self, fail: BaseException | None = None):
        self.fail = fail

    async def platform_digest(self, ref, platform):
        if self.fail is not None:
            raise self.fail
        return None


@pytest.fixture
async def store(tmp_path):
    store = await SQLiteStore.open(tmp_path / "state" / "basewatch.db")
    yield store
    await store.close()


def make_executor(store, tmp_path, engine=None, digests=None) -> RunExecutor:
    engine = engine or FakeEngine()
    return RunExecutor(store, lambda: engine, tmp_path / "state" / "logs", ImageSources(),
                       digests or FakeDigests(), Checkouts(tmp_path / "state" / "contexts",
                                                           10_000_000))


def context(tmp_path: Path, dockerfile: str = "FROM scratch\n") -> Path:
    folder = tmp_path / "state" / "contexts" / "upload-1"
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text(dockerfile)
    return folder


async def queue_quick_build(store, folder: Path, validate: bool = True, **spec) -> str:
    # Unvalidated: a spec an older version stored, before its edge refused what it holds.
    make = QuickBuildSpec if validate else QuickBuildSpec.model_construct
    spec = make(context_path=str(folder), push=False, **spec)
    run = await store.runs.create(RunRequest("", Trigger.MANUAL, RunType.QUICK_BUILD,
                                             "linux/amd64", "quick build",
                                             spec=spec.model_dump_json()))
    return run.id


async def test_a_nul_in_the_dockerfile_name_fails_the_run(store, tmp_path, caplog):
    run_id = await queue_quick_build(store, context(tmp_path), validate=False,
                                     file="Docker\0file")
    await make_executor(store, tmp_path).execute(run_id)
    run = await store.runs.get(run_id)
    assert run.status is RunStatus.ERROR
    reason = ("this quick build's request is no longer accepted: file: the Dockerfile "
              "'Docker\\x00file' must be a relative path inside the build context")
    assert run.error == reason
    log = (tmp_path / "state" / "logs" / f"{run_id}.log").read_text()
    assert log.rstrip().endswith(f"errored: {reason}")
    assert "Traceback" not in log


@pytest.mark.parametrize("fail", [
    ValueError("invalid literal for int() with base 10: '²'"),  # RateLimit-Remaining: ²
    IndexError("list index out of range"),  # an empty manifest index
])
async def test_a_hostile_registry_answer_fails_the_run(store, tmp_path, fail):
    run_id = await queue_quick_build(store, context(tmp_path, "FROM 127.0.0.1:9/base:1\n"))
    await make_executor(store, tmp_path, digests=FakeDigests(fail)).execute(run_id)
    run = await store.runs.get(run_id)
    assert run.status is RunStatus.FAILED
    assert run.error == f"unexpected error: {type(fail).__name__}: {fail}"


async def test_a_full_disk_under_the_run_log_fails_the_run(store, tmp_path):
    run_id = await queue_quick_build(store, context(tmp_path))
    logs = tmp_path / "state" / "logs"
    logs.mkdir(parents=True)
    (logs / f"{run_id}.log").symlink_to("/dev/full")  # every write: ENOSPC
    await make_executor(store, tmp_path).execute(run_id)
    run = await store.runs.get(run_id)
    assert run.status in (RunStatus.FAILED, RunStatus.ERROR)
    assert "No space left on device" in run.error
    assert "/" not in run.error.partition("No space left on device")[2], "no daemon paths"


async def test_an_engine_error_of_an_unexpected_kind_fails_the_run(store, tmp_path):
    run_id = await queue_quick_build(store, context(tmp_path))
    engine = FakeEngine(fail=RuntimeError("multi\nline"))
    await make_executor(store, tmp_path, engine).execute(run_id)
    run = await store.runs.get(run_id)
    assert run.status is RunStatus.FAILED
    assert run.error == "unexpected error: RuntimeError: multi line"


class DatabaseLock:
    """Another process holding the database's write lock, as `sqlite3` in a shell can."""

    def __init__(self, path: Path):
        self.connection = sqlite3.connect(path, isolation_level=None)

    def __enter__(self):
        self.connection.execute("BEGIN IMMEDIATE")
        return self

    def __exit__(self, *exc):
        self.connection.execute("ROLLBACK")
        self.connection.close()


async def test_finishing_is_retried_while_the_database_is_locked(store, tmp_path, caplog,
                                                                 monkeypatch):
    monkeypatch.setattr(runs_module, "FINISH_RETRY_WAIT_SECONDS", 0.1, raising=False)
    caplog.set_level(logging.WARNING)
    run_id = await queue_quick_build(store, context(tmp_path))
    lock = DatabaseLock(tmp_path / "state" / "basewatch.db")
    finish = store.runs.finish

    async def finish_while_locked(*args, **kwargs):
        lock.__enter__()  # taken just as the run ends, longer than busy_timeout
        return await finish(*args, **kwargs)

    monkeypatch.setattr(store.runs, "finish", finish_while_locked)
    execution = asyncio.create_task(make_executor(store, tmp_path).execute(run_id))

    async def retried():
        return any("cannot record the end of run" in r.getMessage() for r in caplog.records)

    try:
        await wait_for(retried, 60, "a failed attempt to record the run's end")
        assert (await store.runs.get(run_id)).status is RunStatus.RUNNING
    finally:
        lock.__exit__()
    await asyncio.wait_for(execution, 60)
    assert (await store.runs.get(run_id)).status is RunStatus.SUCCEEDED


async def test_a_run_that_could_not_start_is_queued_again(store, tmp_path, caplog, monkeypatch):
    import basewatch.runqueue as runqueue_module
    monkeypatch.setattr(runqueue_module, "RETRY_AFTER_ERROR_SECONDS", 0.1, raising=False)
    caplog.set_level(logging.WARNING)
    run_id = await queue_quick_build(store, context(tmp_path))
    executor = make_executor(store, tmp_path)
    queue = RunQueue(executor.execute, 1)
    queue.start()
    try:
        with DatabaseLock(tmp_path / "state" / "basewatch.db"):
            queue.submit(run_id)

            async def refused():
                return any(run_id in r.getMessage() and "again" in r.getMessage()
                           for r in caplog.records)

            await wait_for(refused, 60, "the run's start to fail")
            assert (await store.runs.get(run_id)).status is RunStatus.QUEUED

        async def finished():
            return (await store.runs.get(run_id)).status.finished

        await wait_for(finished, 60, "the run to run once the database is free")
        assert (await store.runs.get(run_id)).status is RunStatus.SUCCEEDED
    finally:
        await queue.stop()
        executor.close()


async def test_each_platform_of_a_quick_build_pulls_the_bases_its_dockerfile_names(store,
                                                                                   tmp_path):
    # TARGETARCH has the value of the platform being built, as in BuildKit: each platform of
    # the build is analysed on its own.
    folder = context(tmp_path, "FROM 127.0.0.1:9/base-${TARGETARCH}:1\n")
    pulled = []

    class RecordingEngine(FakeEngine):
        def pull(self, source, name, platform, auth, log, current=None) -> str:
            pulled.append((source, platform))
            return super().pull(source, name, platform, auth, log, current)

    spec = QuickBuildSpec(context_path=str(folder), push=False)
    run = await store.runs.create(RunRequest("", Trigger.MANUAL, RunType.QUICK_BUILD,
                                             "linux/amd64,linux/arm64", "quick build",
                                             spec=spec.model_dump_json()))
    class SeenDigests:  # the registry holds, for every base, the image the engine pulls
        async def platform_digest(self, ref, platform):
            return SimpleNamespace(digest=DIGEST, index_digest=None)

    await make_executor(store, tmp_path, engine=RecordingEngine(),
                        digests=SeenDigests()).execute(run.id)
    finished = await store.runs.get(run.id)
    assert finished.status is RunStatus.SUCCEEDED, finished.error
    assert pulled == [("127.0.0.1:9/base-amd64:1", "linux/amd64"),
                      ("127.0.0.1:9/base-arm64:1", "linux/arm64")]
