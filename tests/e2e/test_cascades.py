"""Cascades on the real engine and registry: base -> mid -> app, failures, cycles, bursts."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from basewatch.config import Config, RegistrySettings, TaskSettings
from basewatch.daemon import Daemon
from basewatch.errors import GraphError
from basewatch.models import RunStatus
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e


def task(tmp_path: Path, name: str, dockerfile: str, image: str, **options) -> TaskSettings:
    context = tmp_path / "apps" / name
    context.mkdir(parents=True, exist_ok=True)
    (context / "Dockerfile").write_text(dockerfile)
    return TaskSettings(name=name, context=context, image=[image], **options)


async def start_daemon(tmp_path: Path, docker_host: str, registry: str, tasks: list,
                       **options) -> Daemon:
    # An hour between polls: every rebuild here comes from a check the test or a cascade asks.
    config = Config(state_dir=tmp_path / "state", listen="127.0.0.1:0", poll_interval=3600,
                    registries=[RegistrySettings(host=registry)], tasks=tasks, **options)
    daemon = Daemon(config, docker_host)
    await daemon.start()
    return daemon


async def runs_of(daemon: Daemon, name: str):
    return list(reversed(await daemon.store.runs.list(task=name)))


async def test_chain_rebuilds_in_order_once_each(tmp_path, registry, base_images, docker_host):
    reg = registry.address
    await asyncio.to_thread(base_images.build, f"{reg}/base:1", {"/etc/release": "1\n"})
    # mid:latest as an earlier build left it, so app can be registered on it.
    await asyncio.to_thread(base_images.build, f"{reg}/mid:latest", {"/etc/release": "1\n"})
    tasks = [task(tmp_path, "mid", f"FROM {reg}/base:1\nRUN echo mid > /mid\n",
                  f"{reg}/mid:latest"),
             task(tmp_path, "app", f"FROM {reg}/mid:latest\nRUN echo app > /app\n",
                  f"{reg}/app:{{{{.Run.ID}}}}")]
    daemon = await start_daemon(tmp_path, docker_host, reg, tasks)
    try:
        graph = await daemon.registrar.graph()
        assert graph.ancestors("app") == {"mid"} and graph.ancestors("mid") == set()

        await asyncio.to_thread(base_images.build, f"{reg}/base:1",
                                {"/etc/release": "1\n", "/etc/patch": "fixed\n"})
        assert await daemon.watcher.check_references(lambda base: base == f"{reg}/base:1") == 1

        async def app_done():
            runs = await runs_of(daemon, "app")
            return runs if runs and runs[0].status.finished else None

        [app_run] = await wait_for(app_done, 60, "the app rebuild, cascaded from mid")
        [mid_run] = await runs_of(daemon, "mid")
        assert mid_run.status is RunStatus.SUCCEEDED and app_run.status is RunStatus.SUCCEEDED
        assert app_run.started_at >= mid_run.finished_at, "app is built after mid is pushed"
        assert app_run.base_digests[f"{reg}/mid:latest"] == mid_run.outputs[0].digest
        patched = await asyncio.to_thread(base_images.read_file,
                                          app_run.outputs[0].image, "/etc/patch")
        assert patched == "fixed\n", "the patch reached app through mid"
        await asyncio.sleep(2)
        assert len(await runs_of(daemon, "mid")) == len(await runs_of(daemon, "app")) == 1
    finally:
        await daemon.stop()


async def test_failed_upstream_triggers_nothing_downstream(tmp_path, registry, base_images,
                                                          docker_host):
    reg = registry.address
    await asyncio.to_thread(base_images.build, f"{reg}/base:1", {"/etc/release": "1\n"})
    await asyncio.to_thread(base_images.build, f"{reg}/mid:latest", {"/etc/release": "1\n"})
    tasks = [task(tmp_path, "mid", f"FROM {reg}/base:1\nRUN test ! -f /etc/broken\n",
                  f"{reg}/mid:latest"),
             task(tmp_path, "app", f"FROM {reg}/mid:latest\n", f"{reg}/app:latest")]
    daemon = await start_daemon(tmp_path, docker_host, reg, tasks)
    try:
        await asyncio.to_thread(base_images.build, f"{reg}/base:1", {"/etc/broken": "yes\n"})
        await daemon.watcher.check_references(lambda base: base == f"{reg}/base:1")

        async def mid_done():
            runs = await runs_of(daemon, "mid")
            return runs if runs and runs[0].status.finished else None

        [mid_run] = await wait_for(mid_done, 60, "the mid rebuild")
        assert mid_run.status is RunStatus.FAILED
        await asyncio.sleep(2)
        assert await runs_of(daemon, "app") == []
    finally:
        await daemon.stop()


async def test_cycle_is_refused_at_registration(tmp_path, registry, base_images, docker_host):
    reg = registry.address
    for name in ("a", "b"):
        await asyncio.to_thread(base_images.build, f"{reg}/{name}:latest")
    a = task(tmp_path, "a", f"FROM {reg}/b:latest\n", f"{reg}/a:latest")
    b = task(tmp_path, "b", f"FROM {reg}/a:latest\n", f"{reg}/b:latest")
    daemon = await start_daemon(tmp_path, docker_host, reg, [a])
    try:
        with pytest.raises(GraphError) as refused:
            await daemon.registrar.register(b.to_task(), "api")
        assert str(refused.value) == (
            f"tasks would form a cycle: a -> b -> a (a's image {reg}/a:latest is b's base, "
            f"b's image {reg}/b:latest is a's base)")
        assert [t.name for t in await daemon.store.tasks.all()] == ["a"], "nothing half-written"
        assert {d.task for d in await daemon.store.graph.dependencies()} == {"a"}
    finally:
        await daemon.stop()


async def test_a_burst_of_pushes_within_the_settle_window_gives_one_run(
        tmp_path, registry, base_images, docker_host):
    reg = registry.address
    await asyncio.to_thread(base_images.build, f"{reg}/base:1", {"/etc/release": "0\n"})
    tasks = [task(tmp_path, name, f"FROM {reg}/base:1\n", f"{reg}/{name}:latest")
             for name in ("one", "two")]
    daemon = await start_daemon(tmp_path, docker_host, reg, tasks, settle_window=4)
    try:
        for push in range(1, 6):
            await asyncio.to_thread(base_images.build, f"{reg}/base:1",
                                    {"/etc/release": f"{push}\n"})
            await daemon.watcher.check_references(lambda base: base == f"{reg}/base:1")

        async def both_done():
            runs = [await runs_of(daemon, name) for name in ("one", "two")]
            return runs if all(r and r[-1].status.finished for r in runs) else None

        for runs in await wait_for(both_done, 60, "both rebuilds"):
            assert len(runs) == 1 and runs[0].status is RunStatus.SUCCEEDED
            released = await asyncio.to_thread(base_images.read_file, runs[0].outputs[0].image,
                                               "/etc/release")
            assert released == "5\n", "built on the last push of the burst"
    finally:
        await daemon.stop()
