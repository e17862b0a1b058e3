"""The core loop on the real engine and registry: a patched base rebuilds its runtime dependents."""
from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
import yaml

from basewatch.config import load_config
from basewatch.daemon import Daemon
from basewatch.models import RunStatus, Trigger
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

DOCKERFILES = {
    # the base is the runtime stage's only image
    "single": "FROM {reg}/base:1\nRUN echo single > /app\n",
    # multi-stage: built with tools, runs on the base
    "multi": ("FROM {reg}/tools:1 AS build\nRUN echo multi > /artifact\n"
              "FROM {reg}/base:1 AS runtime\nCOPY --from=build /artifact /app\n"),
    # the base is used only to build; the runtime stage is tools
    "buildonly": ("FROM {reg}/base:1 AS build\nRUN echo buildonly > /artifact\n"
                  "FROM {reg}/tools:1\nCOPY --from=build /artifact /app\n"),
}


def write_config(tmp_path: Path, registry: str, trigger_type: str) -> Path:
    tasks = []
    for name, dockerfile in DOCKERFILES.items():
        context = tmp_path / "apps" / name
        context.mkdir(parents=True)
        (context / "Dockerfile").write_text(dockerfile.format(reg=registry))
        tasks.append({
            "name": name, "context": f"apps/{name}",
            "image": [f"{registry}/apps/{name}:{{{{.Run.ID}}}}", f"{registry}/apps/{name}:latest"],
            "base_image_trigger": {"enabled": True, "type": trigger_type},
        })
    config = {
        "state_dir": "state", "listen": "127.0.0.1:0", "max_concurrent_runs": 2,
        "poll_interval": "1s", "registries": [{"host": registry}], "tasks": tasks,
    }
    path = tmp_path / "basewatch.yml"
    path.write_text(yaml.safe_dump(config))
    return path


async def retag_in_registry(registry: str, repository: str, source: str, target: str) -> str:
    """Put the manifest of `source` under `target` through the registry API; its digest."""
    async with aiohttp.ClientSession() as session:
        url = f"http://{registry}/v2/{repository}/manifests"
        accept = {"Accept": "application/vnd.docker.distribution.manifest.v2+json"}
        async with session.get(f"{url}/{source}", headers=accept) as response:
            body, media_type = await response.read(), response.headers["Content-Type"]
        async with session.put(f"{url}/{target}", data=body,
                               headers={"Content-Type": media_type}) as response:
            assert response.status == 201, await response.text()
            return response.headers["Docker-Content-Digest"]


async def finished_runs(daemon: Daemon, task: str):
    return [r for r in await daemon.store.runs.list(task=task) if r.status.finished]


@pytest.mark.parametrize("trigger_type, rebuilt", [
    ("runtime", {"single", "multi"}),
    ("all", {"single", "multi", "buildonly"}),
])
async def test_patched_base_rebuilds_dependents(tmp_path, registry, base_images, docker_host,
                                                trigger_type, rebuilt):
    reg = registry.address
    await asyncio.to_thread(base_images.build, f"{reg}/base:1", {"/etc/base-release": "1\n"})
    await asyncio.to_thread(base_images.build, f"{reg}/tools:1", {"/etc/tools": "1\n"})
    daemon = Daemon(load_config(write_config(tmp_path, reg, trigger_type)), docker_host)
    await daemon.start()
    try:
        deps = await daemon.store.graph.dependencies()
        assert {(d.task, d.base, d.kind.value) for d in deps if d.base.endswith("base:1")} == {
            ("single", f"{reg}/base:1", "runtime"), ("multi", f"{reg}/base:1", "runtime"),
            ("buildonly", f"{reg}/base:1", "buildtime")}
        assert all(d.digest_at_build for d in deps), "registration records the current digest"

        # Patch the base in the registry only: the engine keeps the old one under the same tag
        # all along, so a rebuild that did not pull would not contain the patch. The patched
        # image goes up under a staging tag, then its manifest is put under tag 1 directly.
        old_base = (await daemon.store.graph.get_watched(f"{reg}/base:1", "linux/amd64")).digest
        await asyncio.to_thread(base_images.build, f"{reg}/base:staging",
                                {"/etc/base-release": "1\n", "/etc/patch": "CVE fixed\n"})
        new_base = await retag_in_registry(reg, "base", "staging", "1")
        assert new_base != old_base

        async def all_rebuilt():
            runs = {name: await finished_runs(daemon, name) for name in rebuilt}
            return runs if all(runs.values()) else None

        await wait_for(all_rebuilt, 60, f"rebuilds of {sorted(rebuilt)}")
        # A few more poll cycles: nothing else may be queued.
        await asyncio.sleep(3)
        for name in DOCKERFILES:
            history = await daemon.store.runs.list(task=name)
            if name in rebuilt:
                assert len(history) == 1, history
                run = history[0]
                log_text = (tmp_path / "state" / "logs" / f"{run.id}.log").read_text()
                assert run.status is RunStatus.SUCCEEDED, (run.error, log_text)
                assert run.trigger is Trigger.IMAGE_UPDATE
                assert run.base_digests[f"{reg}/base:1"] == new_base
                # what fired it, recorded with the run: the reference, platform and digest
                assert (run.base_change.reference, run.base_change.platform,
                        run.base_change.digest) == (f"{reg}/base:1", run.platform, new_base)
                assert {o.image for o in run.outputs} == {
                    f"{reg}/apps/{name}:{run.id}", f"{reg}/apps/{name}:latest"}
                content = await asyncio.to_thread(base_images.read_file,
                                                  f"{reg}/apps/{name}:{run.id}", "/etc/patch")
                if name != "buildonly":
                    assert content == "CVE fixed\n"
                assert f"Run ID: {run.id} was successful" in log_text
            else:
                assert history == [], f"{name} must not be rebuilt in {trigger_type} mode"
    finally:
        await daemon.stop()


async def test_a_run_builds_on_the_digest_that_fired_it_not_where_the_tag_moved_since(
        tmp_path, registry, base_images, docker_host):
    """The change is queued with a settle window; the tag moves again before the run pulls,
    unseen by the watcher (no poll in the meantime). The run builds on the digest that fired
    it, not on what the tag points to by then; the later push is the next poll's business."""
    reg = registry.address
    base = f"{reg}/base:1"
    await asyncio.to_thread(base_images.build, base, {"/etc/base-release": "1\n"})
    context = tmp_path / "apps" / "single"
    context.mkdir(parents=True)
    (context / "Dockerfile").write_text(DOCKERFILES["single"].format(reg=reg))
    path = tmp_path / "basewatch.yml"
    path.write_text(yaml.safe_dump({
        "state_dir": "state", "listen": "127.0.0.1:0", "poll_interval": "1h",
        "settle_window": "3s", "registries": [{"host": reg}],
        "tasks": [{"name": "single", "context": "apps/single",
                   "image": f"{reg}/apps/single:{{{{.Run.ID}}}}"}]}))
    daemon = Daemon(load_config(path), docker_host)
    await daemon.start()
    try:
        fired = await asyncio.to_thread(base_images.build, base, {"/etc/patch": "fired\n"})
        change = await daemon.watcher.check(base, "linux/amd64")
        assert change is not None and change.new == fired
        later = await asyncio.to_thread(base_images.build, base, {"/etc/patch": "later\n"})
        assert later != fired

        async def finished():
            runs = await finished_runs(daemon, "single")
            return runs[0] if runs else None

        run = await wait_for(finished, 120, "the run to finish")
        log_text = (tmp_path / "state" / "logs" / f"{run.id}.log").read_text()
        assert run.status is RunStatus.SUCCEEDED, (run.error, log_text)
        assert run.base_digests[base] == fired
        assert "the digest that triggered this run" in log_text
        content = await asyncio.to_thread(base_images.read_file,
                                          f"{reg}/apps/single:{run.id}", "/etc/patch")
        assert content == "fired\n"
    finally:
        await daemon.stop()
