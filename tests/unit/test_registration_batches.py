"""Config tasks registered a batch at a time as the daemon starts: one read, one graph check
and one transaction a batch; a task that fails leaves the rest of its batch registered; the
progress /healthz and the API read (a real store on disk; digests from a stand-in)."""
from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from basewatch.config import TaskSettings
from basewatch.config_sync import ConfigSync
from basewatch.errors import NotFoundError, RegistryAddressRefused, StartingError
from basewatch.health import HostState, health_report
from basewatch.registration_progress import RegistrationProgress
from basewatch.services import Services
from basewatch.watcher import registration
from basewatch.watcher.registration import TaskRegistrar
from tests.support.fake_registry import SeenDigests

REGISTRY = "reg.example:5000"


def settings(tmp_path: Path, name: str, dockerfile: str) -> TaskSettings:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    (folder / "Dockerfile").write_text(dockerfile)
    return TaskSettings(name=name, context=folder, image=[f"{REGISTRY}/{name}:latest"])


def many(tmp_path: Path, count: int, broken: frozenset[int] = frozenset()) -> list[TaskSettings]:
    return [settings(tmp_path, f"app-{n:03d}",
                     "RUN true\n" if n in broken else f"FROM {REGISTRY}/base-{n % 7}:1\n")
            for n in range(count)]


@pytest.fixture
def transactions(store, monkeypatch) -> list[int]:
    """One entry per store transaction opened."""
    opened: list[int] = []
    original = store.database.transaction

    @contextlib.asynccontextmanager
    async def counted():
        opened.append(1)
        async with original() as db:
            yield db

    monkeypatch.setattr(store.database, "transaction", counted)
    return opened


async def test_a_failing_task_mid_batch_leaves_the_rest_of_its_batch_registered(
        tmp_path, store, monkeypatch, transactions):
    monkeypatch.setattr(registration, "REGISTRATION_BATCH", 10)
    sync = ConfigSync(store, TaskRegistrar(store, SeenDigests(), REGISTRY), lambda: None)
    batches: list[tuple[int, int]] = []
    original = sync.progress.reached

    def reached(registered, failed):
        registered, failed = list(registered), list(failed)
        batches.append((len(registered), len(failed)))
        original(registered, failed)

    sync.progress.reached = reached
    await sync.sync(many(tmp_path, 25, broken=frozenset({13})))

    assert batches == [(10, 0), (9, 1), (5, 0)]
    assert len(await store.tasks.names()) == 24
    assert list(sync.problems()) == ["app-013"] and "FROM" in sync.problems()["app-013"]
    assert sync.progress.view() == {"state": "done", "registered": 24, "total": 25,
                                    "failed": 1}
    # Two transactions a batch (the tasks, their edges), not two a task.
    assert len(transactions) <= 3 * 2 + 2
    assert {d.task for d in await store.graph.dependencies()} == \
        {f"app-{n:03d}" for n in range(25) if n != 13}


async def test_a_cycle_closed_inside_a_batch_is_refused_to_the_task_that_closes_it(
        tmp_path, store):
    registrar = TaskRegistrar(store, SeenDigests(), REGISTRY)
    tasks = [settings(tmp_path, "a", f"FROM {REGISTRY}/c:latest\n").to_task(),
             settings(tmp_path, "b", f"FROM {REGISTRY}/a:latest\n").to_task(),
             settings(tmp_path, "c", f"FROM {REGISTRY}/b:latest\n").to_task(),
             settings(tmp_path, "d", f"FROM {REGISTRY}/c:latest\n").to_task()]
    failed = await registrar.register_many(tasks, "config")
    assert list(failed) == ["c"] and "cycle" in failed["c"]
    assert await store.tasks.names() == {"a", "b", "d"}
    graph = await registrar.graph()
    assert graph.upstream["b"] == {"a"} and not graph.upstream.get("d")


async def test_a_restart_with_the_same_config_registers_without_rebuilding_the_graph(
        tmp_path, store, monkeypatch):
    tasks = [t.to_task() for t in many(tmp_path, 30)]
    await TaskRegistrar(store, SeenDigests(), REGISTRY).register_many(tasks, "config")
    builds: list[int] = []
    original = registration._graph_of

    def counted(*args):
        builds.append(1)
        return original(*args)

    monkeypatch.setattr(registration, "_graph_of", counted)
    restarted = TaskRegistrar(store, SeenDigests(), REGISTRY)
    assert await restarted.register_many(tasks, "config") == {}
    assert builds == [1]  # the graph read from the store, and nothing more


async def test_progress_tells_what_is_waiting_and_the_report_says_starting(tmp_path):
    progress = RegistrationProgress()
    assert progress.view()["state"] == "in_progress" and not progress.started
    progress.begin(["a", "b", "c"])
    progress.reached(["a"], ["b"])
    assert progress.waiting == {"c"}
    assert progress.view() == {"state": "in_progress", "registered": 1, "total": 3,
                               "failed": 1}
    report = health_report(HostState(None, None), [], 0, (), registration=progress.view(),
                           starting=True)
    assert report["status"] == "starting" and report["registration"]["total"] == 3
    progress.finish()
    assert progress.waiting == set() and not progress.not_reached("c")
    assert not progress.started  # until the daemon has its watch on
    progress.ready()
    assert progress.started
    done = health_report(HostState(None, None), [], 0, (), registration=progress.view())
    assert done["status"] == "ok" and done["registration"]["state"] == "done"


async def test_the_api_asks_to_come_back_for_a_config_task_not_registered_yet(store):
    progress = RegistrationProgress()
    progress.begin(["later"])
    services = Services(store, TaskRegistrar(store, SeenDigests(), REGISTRY),
                        executor=type("Executor", (), {"log_updates": None, "logs_dir": None})(),
                        triggers=None, registration=progress)
    with pytest.raises(StartingError) as raised:
        await services.get_task("later")
    assert raised.value.http_status == 503 and "0 of 1" in str(raised.value)
    with pytest.raises(StartingError):
        await services.create_task({"name": "later", "context": "/srv/x",
                                    "image": ["reg.example:5000/x:1"]})
    progress.finish()
    progress.ready()
    assert (await services.list_tasks()) == []
    with pytest.raises(NotFoundError):
        await services.get_task("later")


async def test_while_the_config_is_read_an_unknown_task_may_be_one_of_its(store, tmp_path):
    progress = RegistrationProgress()  # the file not read yet: no names known
    registrar = TaskRegistrar(store, SeenDigests(), REGISTRY)
    await registrar.register(settings(tmp_path, "api-task", f"FROM {REGISTRY}/b:1\n")
                             .to_task(), "api")
    services = Services(store, registrar, executor=type("Executor", (), {"log_updates": None, "logs_dir": None})(),
                        triggers=None, registration=progress)
    assert (await services.get_task("api-task"))["name"] == "api-task"
    with pytest.raises(StartingError):
        await services.get_task("not-read-yet")


async def test_a_reload_during_the_starts_sync_waits_for_it_then_applies_the_file(
        tmp_path, store, monkeypatch):
    monkeypatch.setattr(registration, "REGISTRATION_BATCH", 5)
    sync = ConfigSync(store, TaskRegistrar(store, SeenDigests(), REGISTRY), lambda: None)
    at_start = many(tmp_path, 30)
    first = asyncio.create_task(sync.sync(at_start))
    await asyncio.sleep(0)  # the start's sync holds the lock: the reload queues behind it
    await sync.sync(at_start[:10])  # SIGHUP: a file with fewer tasks
    await first
    assert await store.tasks.names() == {t.name for t in at_start[:10]}
    assert sync.progress.view() == {"state": "done", "registered": 10, "total": 10,
                                    "failed": 0}


async def test_a_sync_cancelled_mid_way_leaves_whole_batches_and_the_next_one_completes(
        tmp_path, store, monkeypatch):
    monkeypatch.setattr(registration, "REGISTRATION_BATCH", 5)
    sync = ConfigSync(store, TaskRegistrar(store, SeenDigests(), REGISTRY), lambda: None)
    tasks = many(tmp_path, 30)
    batches = asyncio.Event()
    sync.registrar.on_change = batches.set  # told after each batch stored
    started = asyncio.create_task(sync.sync(tasks))
    await batches.wait()
    started.cancel()  # SIGTERM mid-registration
    with pytest.raises(asyncio.CancelledError):
        await started
    assert len(await store.tasks.names()) % 5 == 0  # whole batches, nothing half-stored
    await ConfigSync(store, TaskRegistrar(store, SeenDigests(), REGISTRY),
                     lambda: None).sync(tasks)
    assert len(await store.tasks.names()) == 30


async def test_a_base_the_daemon_may_not_contact_refuses_its_tasks_only(tmp_path, store):
    class Guarded(SeenDigests):
        async def platform_digest(self, ref, platform):
            if ref.registry == "10.0.0.1":
                raise RegistryAddressRefused("10.0.0.1 is a private address")
            return await super().platform_digest(ref, platform)

    registrar = TaskRegistrar(store, Guarded(), REGISTRY)
    tasks = [settings(tmp_path, "fine", f"FROM {REGISTRY}/base:1\n").to_task(),
             settings(tmp_path, "private", "FROM 10.0.0.1/base:1\n").to_task()]
    failed = await registrar.register_many(tasks, "config")
    assert failed == {"private": "10.0.0.1 is a private address"}
    assert await store.tasks.names() == {"fine"}


async def test_git_contexts_are_fetched_and_stored_in_the_batch_beside_local_ones(
        tmp_path, store):
    from basewatch.builder.contexts.checkout import Checkouts
    from tests.unit.test_checkout import git_repository

    url = git_repository(tmp_path / "repo", {"Dockerfile": f"FROM {REGISTRY}/git-base:1\n"
                                             .encode()})
    registrar = TaskRegistrar(store, SeenDigests(), REGISTRY,
                              Checkouts(tmp_path / "contexts", 1 << 20))
    tasks = [settings(tmp_path, "local", f"FROM {REGISTRY}/base:1\n"),
             TaskSettings(name="from-git", context=url, image=[f"{REGISTRY}/g:1"]),
             TaskSettings(name="gone", context=f"file://{tmp_path}/missing",
                          image=[f"{REGISTRY}/x:1"])]
    failed = await registrar.register_many([t.to_task() for t in tasks], "config")
    assert list(failed) == ["gone"]
    assert {d.task: d.base for d in await store.graph.dependencies()} == {
        "local": f"{REGISTRY}/base:1", "from-git": f"{REGISTRY}/git-base:1"}
    assert not any((tmp_path / "contexts").iterdir()), "the fetched checkout was removed"
