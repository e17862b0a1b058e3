"""The run lifecycle on a real database: every run ends in a final state with its reason,
whatever goes wrong; finishing is retried; a run that could not start is queued again; a quick
build's upload lives exactly as long as a run needs it; cancel, timeout, the wait for upstream
runs and the hooks. On the Docker backend over a fake engine where the engine's side matters,
on the fake backend elsewhere."""
from __future__ import annotations

import asyncio
import logging
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from basewatch.builder.backends.docker.backend import DockerBackend
from basewatch.builder.contexts.checkout import Checkouts
from basewatch.builder.executor import UPSTREAM_RECHECK_SECONDS, RunExecutor
from basewatch.builder.planner import RunPlanner
from basewatch.builder.quick_runs import QuickBuildSpec, QuickRuns
from basewatch.config import TaskSettings
from basewatch.tasks import Task
from basewatch.errors import EngineError
from basewatch.models import RunStatus, RunType, Trigger, RunRequest
from basewatch.oci.image_sources import ImageSources
from basewatch.run_plan import BuildStep, IndexStep, PushStep
from basewatch.runqueue import RunQueue
from basewatch.store import runs as runs_module
from basewatch.watcher.registration import TaskRegistrar
from tests.support.fake_backend import FakeBackend, digest_of
from tests.support.fake_engine import DIGEST, FakeDigests, FakeEngine
from tests.support.fake_registry import SeenDigests
from tests.support.waiting import wait_for
from tests.support.stores import open_store


@pytest.fixture
async def store(tmp_path):
    store = await open_store(tmp_path / "state" / "basewatch.db")
    yield store
    await store.close()


def make_planner(store, tmp_path, **kwargs) -> RunPlanner:
    return RunPlanner(store, Checkouts(tmp_path / "state" / "contexts", 10_000_000),
                      QuickRuns(tmp_path / "state" / "contexts"), **kwargs)


def make_executor(store, tmp_path, engine=None, digests=None, backend=None,
                  **kwargs) -> RunExecutor:
    """The Docker backend on a fake engine, unless a backend is given."""
    if backend is None:
        engine = engine or FakeEngine()
        backend = DockerBackend(lambda: engine, ImageSources(), digests or FakeDigests())
    return RunExecutor(store, make_planner(store, tmp_path), backend, tmp_path / "state" / "logs",
                       **kwargs)


def context(tmp_path: Path, dockerfile: str = "FROM scratch\n") -> Path:
    folder = tmp_path / "state" / "contexts" / "upload-1"
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text(dockerfile)
    return folder


async def queue_quick_build(store, folder: Path, validate: bool = True, **spec) -> str:
    # Unvalidated: a spec an older version stored, before its edge refused what it holds.
    make = QuickBuildSpec if validate else QuickBuildSpec.model_construct
    spec = make(context_path=str(folder), **{"push": False, **spec})
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


@pytest.mark.sqlite_only
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


@pytest.mark.sqlite_only
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


# ------------------------------------------------------------------ on the fake backend


async def register(store, tmp_path, name="app", base="reg.example:5000/base:1",
                   platform="linux/amd64") -> Task:
    """A task on a local folder, registered as the daemon does: its edges are in the graph."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "Dockerfile").write_text(f"FROM {base}\n")
    task = TaskSettings(name=name, context=str(folder), platform=platform,
                        image=[f"reg.example:5000/{name}:{{{{.Run.ID}}}}",
                               f"reg.example:5000/{name}:latest"]).to_task()
    await TaskRegistrar(store, SeenDigests(), "reg.example:5000").register(task, "config")
    return task


async def queue_task_run(store, task: str, platform: str = "linux/amd64", **kwargs) -> str:
    return (await store.runs.create(RunRequest(task, Trigger.IMAGE_UPDATE, RunType.AUTO_BUILD,
                                               platform, "base moved", **kwargs))).id


async def test_a_run_carried_out_records_what_it_built_on_and_pushed(store, tmp_path):
    await register(store, tmp_path)
    finished = []
    backend = FakeBackend()

    async def on_finished(run):
        finished.append(run)

    executor = make_executor(store, tmp_path, backend=backend, on_finished=on_finished)
    run_id = await queue_task_run(store, "app")
    assert await executor.execute(run_id) is None
    run = await store.runs.get(run_id)
    assert run.status is RunStatus.SUCCEEDED, run.error
    base = "reg.example:5000/base:1"
    assert run.base_digests == {base: digest_of(f"{base} linux/amd64")}
    assert [(o.image, o.digest) for o in run.outputs] == [
        (f"reg.example:5000/app:{run_id}", digest_of(f"reg.example:5000/app:{run_id}")),
        ("reg.example:5000/app:latest", digest_of("reg.example:5000/app:latest"))]
    assert [type(s) for s in backend.steps] == [BuildStep, PushStep, PushStep]
    # What the graph says the task was last built on.
    assert [d.digest_at_build for d in await store.graph.dependencies("app")] == [
        digest_of(f"{base} linux/amd64")]
    assert [r.id for r in finished] == [run_id] and finished[0].status is RunStatus.SUCCEEDED
    log = (tmp_path / "state" / "logs" / f"{run_id}.log").read_text()
    assert f"Run ID: {run_id} started: task app, trigger Image Update (base moved)" in log
    assert f"Run ID: {run_id} was successful after" in log


async def test_a_run_of_several_platforms_records_each_platforms_bases_and_its_indexes(
        store, tmp_path):
    await register(store, tmp_path, platform="linux/amd64,linux/arm64")
    backend = FakeBackend()
    run_id = await queue_task_run(store, "app", "linux/amd64,linux/arm64")
    await make_executor(store, tmp_path, backend=backend).execute(run_id)
    run = await store.runs.get(run_id)
    assert run.status is RunStatus.SUCCEEDED, run.error
    base = "reg.example:5000/base:1"
    assert run.base_digests == {f"{base} (linux/amd64)": digest_of(f"{base} linux/amd64"),
                                f"{base} (linux/arm64)": digest_of(f"{base} linux/arm64")}
    # The outputs are the indexes, not the platforms' own tags.
    assert [(o.image, o.digest) for o in run.outputs] == [
        (tag, digest_of(f"index {tag}"))
        for tag in (f"reg.example:5000/app:{run_id}", "reg.example:5000/app:latest")]


async def test_a_failed_step_fails_the_run_with_its_reason(store, tmp_path):
    await register(store, tmp_path)
    finished = []

    async def on_finished(run):
        finished.append(run.status)

    backend = FakeBackend(fail_on=PushStep, failure=EngineError("push of x failed: denied"))
    run_id = await queue_task_run(store, "app")
    await make_executor(store, tmp_path, backend=backend, on_finished=on_finished).execute(run_id)
    run = await store.runs.get(run_id)
    assert (run.status, run.error, run.outputs) == (RunStatus.FAILED,
                                                    "push of x failed: denied", [])
    assert run.base_digests, "built on these before the push failed"
    assert [type(s) for s in backend.steps] == [BuildStep, PushStep], "no step after a failure"
    assert finished == [RunStatus.FAILED]
    assert [d.digest_at_build for d in await store.graph.dependencies("app")] == [DIGEST], \
        "the graph keeps the digests of the last build that succeeded"


async def test_an_unexpected_exception_in_the_backend_fails_the_run(store, tmp_path, caplog):
    await register(store, tmp_path)
    backend = FakeBackend(fail_on=BuildStep, failure=KeyError("surprise"))
    run_id = await queue_task_run(store, "app")
    await make_executor(store, tmp_path, backend=backend).execute(run_id)
    run = await store.runs.get(run_id)
    assert (run.status, run.error) == (RunStatus.FAILED, "unexpected error: KeyError: 'surprise'")


async def test_a_task_that_no_longer_exists_is_an_error(store, tmp_path):
    backend = FakeBackend()
    run_id = await queue_task_run(store, "gone")
    await make_executor(store, tmp_path, backend=backend).execute(run_id)
    run = await store.runs.get(run_id)
    assert (run.status, run.error) == (RunStatus.ERROR, "task gone no longer exists")
    assert backend.plans == []


async def test_a_running_run_is_canceled_by_request(store, tmp_path):
    await register(store, tmp_path)
    finished = []

    async def on_finished(run):
        finished.append(run.status)

    backend = FakeBackend(hold_on=BuildStep)
    executor = make_executor(store, tmp_path, backend=backend, on_finished=on_finished)
    run_id = await queue_task_run(store, "app")
    execution = asyncio.create_task(executor.execute(run_id))
    await asyncio.wait_for(backend.holding.wait(), 30)
    assert await executor.cancel(run_id)
    await asyncio.wait_for(execution, 30)
    run = await store.runs.get(run_id)
    assert (run.status, run.error) == (RunStatus.CANCELED, "canceled by request")
    assert finished == [RunStatus.CANCELED]
    assert not await executor.cancel(run_id), "it has ended"


async def test_a_queued_quick_build_canceled_never_runs_and_its_upload_goes(store, tmp_path):
    backend = FakeBackend()
    executor = make_executor(store, tmp_path, backend=backend)
    folder = context(tmp_path)
    run_id = await queue_quick_build(store, folder)
    assert await executor.cancel(run_id)
    assert not folder.exists()
    assert await executor.execute(run_id) is None
    run = await store.runs.get(run_id)
    assert (run.status, run.error) == (RunStatus.CANCELED, "canceled by request")
    assert backend.plans == []


async def test_a_run_past_its_timeout_ends_as_timeout(store, tmp_path):
    folder = context(tmp_path)
    run_id = await queue_quick_build(store, folder, timeout=0.5)
    backend = FakeBackend(hold_on=BuildStep)
    await asyncio.wait_for(make_executor(store, tmp_path, backend=backend).execute(run_id), 30)
    run = await store.runs.get(run_id)
    assert (run.status, run.error) == (RunStatus.TIMEOUT,
                                       "the run exceeded its timeout of 0s")
    assert not folder.exists(), "the upload goes with the run's end"


async def test_a_run_waits_while_a_task_it_is_built_on_is_rebuilt(store, tmp_path):
    await register(store, tmp_path)
    await queue_task_run(store, "upstream")  # queued: pending
    backend = FakeBackend()

    async def upstream_of(task):
        return {"upstream"} if task == "app" else set()

    executor = make_executor(store, tmp_path, backend=backend, upstream_of=upstream_of)
    run_id = await queue_task_run(store, "app")
    assert await executor.execute(run_id) == UPSTREAM_RECHECK_SECONDS
    assert (await store.runs.get(run_id)).status is RunStatus.QUEUED
    assert backend.plans == []


async def test_a_run_settling_waits_until_its_time(store, tmp_path):
    await register(store, tmp_path)
    backend = FakeBackend()
    executor = make_executor(store, tmp_path, backend=backend)
    run_id = await queue_task_run(
        store, "app", not_before=datetime.now(timezone.utc) + timedelta(seconds=30))
    wait = await executor.execute(run_id)
    assert wait is not None and 20 < wait <= 30
    assert (await store.runs.get(run_id)).status is RunStatus.QUEUED


async def test_a_failing_hook_does_not_undo_the_run(store, tmp_path, caplog):
    await register(store, tmp_path)

    async def on_finished(run):
        raise RuntimeError("the cascade broke")

    run_id = await queue_task_run(store, "app")
    await make_executor(store, tmp_path, backend=FakeBackend(),
                        on_finished=on_finished).execute(run_id)
    assert (await store.runs.get(run_id)).status is RunStatus.SUCCEEDED
    assert any("what follows its end failed" in r.getMessage() for r in caplog.records)


async def test_a_shutdown_during_a_run_cancels_it_and_queues_it_again(store, tmp_path):
    await register(store, tmp_path)
    backend = FakeBackend(hold_on=BuildStep)
    executor = make_executor(store, tmp_path, backend=backend)
    run_id = await queue_task_run(store, "app")
    execution = asyncio.create_task(executor.execute(run_id))
    await asyncio.wait_for(backend.holding.wait(), 30)
    execution.cancel()
    with pytest.raises(asyncio.CancelledError):
        await execution
    runs = await store.runs.list()
    assert sorted((r.status, r.error, r.retry_of) for r in runs) == sorted([
        (RunStatus.CANCELED, "the daemon shut down during the run", None),
        (RunStatus.QUEUED, None, run_id)])


async def test_closing_the_executor_closes_its_backend(store, tmp_path):
    backend = FakeBackend()
    make_executor(store, tmp_path, backend=backend).close()
    assert backend.closed


def last_platform_push(step) -> bool:
    return isinstance(step, PushStep) and step.platform == "linux/arm64"


@pytest.mark.parametrize("fail_on, recorded", [(last_platform_push, False), (IndexStep, True)])
async def test_several_platforms_record_their_bases_once_each_is_built_and_pushed(
        store, tmp_path, fail_on, recorded):
    await register(store, tmp_path)
    run_id = await queue_task_run(store, "app", "linux/amd64,linux/arm64")
    await make_executor(store, tmp_path, backend=FakeBackend(fail_on=fail_on)).execute(run_id)
    run = await store.runs.get(run_id)
    assert run.status is RunStatus.FAILED
    assert bool(run.base_digests) is recorded
