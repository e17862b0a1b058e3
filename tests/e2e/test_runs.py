"""How runs end on the real engine: a failing build, a timeout, an engine that is not there."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from basewatch.config import Config, RegistrySettings, TaskSettings
from basewatch.daemon import Daemon
from basewatch.models import RunStatus, RunType, Trigger
from basewatch.models import RunRequest

pytestmark = pytest.mark.e2e


async def run_once(tmp_path: Path, docker_host: str, dockerfile: str, reg: str,
                   **task_options) -> tuple[object, str]:
    context = tmp_path / "app"
    context.mkdir()
    (context / "Dockerfile").write_text(dockerfile)
    task = TaskSettings(name="app", context=context, image=[f"{reg}/app:{{{{.Run.ID}}}}"],
                        **task_options)
    # Listed: the daemon contacts a registry on loopback only when the config lists it.
    config = Config(state_dir=tmp_path / "state", listen="127.0.0.1:0", tasks=[task],
                    registries=[RegistrySettings(host=reg)])
    daemon = Daemon(config, docker_host)
    await daemon.start()
    try:
        run = await daemon.store.runs.create(
            RunRequest("app", Trigger.MANUAL, RunType.QUICK_BUILD, task.to_task().platform_list))
        daemon.queue.submit(run.id)
        for _ in range(240):
            run = await daemon.store.runs.get(run.id)
            if run.status.finished:
                break
            await asyncio.sleep(0.25)
        log = (tmp_path / "state" / "logs" / f"{run.id}.log").read_text()
        return run, log
    finally:
        await daemon.stop()


async def test_failing_build_is_failed_with_the_error_in_its_log(tmp_path, registry, base_images,
                                                                 docker_host):
    reg = registry.address
    await asyncio.to_thread(base_images.build, f"{reg}/base:1")
    run, log = await run_once(tmp_path, docker_host,
                              f"FROM {reg}/base:1\nRUN echo about to fail && exit 3\n", reg)
    assert run.status is RunStatus.FAILED
    assert "returned a non-zero code: 3" in run.error
    assert "about to fail" in log and "returned a non-zero code: 3" in log
    assert run.outputs == []


async def test_run_past_its_timeout_is_stopped(tmp_path, registry, base_images, docker_host,
                                               docker_client):
    reg = registry.address
    await asyncio.to_thread(base_images.build, f"{reg}/base:1")
    run, log = await run_once(tmp_path, docker_host, f"FROM {reg}/base:1\nRUN sleep 120\n", reg,
                              timeout=3)
    assert run.status is RunStatus.TIMEOUT
    assert "timeout of 3s" in run.error and "timed out" in log
    assert run.duration_seconds < 30
    # The engine canceled the build: no container is left sleeping.
    await asyncio.sleep(1)
    assert docker_client.containers.list(all=True, filters={"status": "running"}) == []


async def test_unreachable_engine_fails_the_run_clearly(tmp_path, registry):
    run, log = await run_once(tmp_path, f"unix://{tmp_path}/none.sock",
                              "FROM scratch\nCOPY . /\n", registry.address)
    assert run.status is RunStatus.FAILED
    assert "cannot reach the Docker Engine" in run.error and "none.sock" in run.error
    assert "cannot reach the Docker Engine" in log
