"""Multi-arch bases on the real engine and registry: each task watches its own platform's digest.

The bases are real indexes: one busybox image per platform, built here (arm `RUN` steps under
qemu) and joined into an index. A platform added to the index changes the index digest and no
platform digest: nothing is rebuilt. A patch to one platform's image rebuilds only the tasks
built for that platform; a task built for both platforms is rebuilt, both platforms into one
index, when either moves.
"""
from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request
from pathlib import Path

import pytest
import stack  # scripts/, put on sys.path by tests/conftest.py
import yaml
from busybox_images import BaseImages, MultiPlatformImage, PlatformImage

from basewatch.config import load_config
from basewatch.daemon import Daemon
from basewatch.models import Run, RunStatus, Trigger
from basewatch.oci.platforms import Platform
from basewatch.oci.reference import ImageReference
from basewatch.oci.registry import PlatformDigest, RegistryClient

pytestmark = pytest.mark.e2e

AMD64, ARM64, ARM_V7 = "linux/amd64", "linux/arm64", "linux/arm/v7"
RELEASE = {"/etc/base-release": "1\n"}
# Each task's own RUN step: under qemu for linux/arm64.
DOCKERFILE = "FROM {reg}/multi:1\nRUN uname -m > /app-arch\n"
TASKS = {"app-amd64": AMD64, "app-arm64": ARM64}


@pytest.fixture(scope="module")
def emulation() -> None:
    """qemu for the foreign platforms, and their busybox; skipped, saying why, where impossible."""
    try:
        for platform in (AMD64, ARM64, ARM_V7):
            stack.setup_emulation(platform)
            stack.busybox_for(platform)
    except (stack.EmulationError, subprocess.CalledProcessError, OSError) as exc:
        pytest.skip(f"cannot build foreign-platform images here: {exc}")


@pytest.fixture(autouse=True)
def no_docker_login(tmp_path, monkeypatch):
    """Keep the machine's own ~/.docker/config.json out of these tests."""
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "docker-config"))


async def build_base(base_images: BaseImages, image: str) -> MultiPlatformImage:
    return await asyncio.to_thread(base_images.build_multi_platform, image, [AMD64, ARM64],
                                   RELEASE)


async def build_platform(base_images: BaseImages, image: str, platform: str,
                         files: dict[str, str]) -> PlatformImage:
    return await asyncio.to_thread(base_images.build_platform, image, platform, files)


def write_config(tmp_path: Path, registry: str, platforms: dict = TASKS,
                 image: str = "{registry}/apps/{name}:{{{{.Run.ID}}}}") -> Path:
    tasks = []
    for name, platform in platforms.items():
        context = tmp_path / "apps" / name
        context.mkdir(parents=True)
        (context / "Dockerfile").write_text(DOCKERFILE.format(reg=registry))
        tasks.append({"name": name, "context": f"apps/{name}", "platform": platform,
                      "image": image.format(registry=registry, name=name)})
    config = {"state_dir": "state", "listen": "127.0.0.1:0", "max_concurrent_runs": 2,
              "poll_interval": "1s", "registries": [{"host": registry}], "tasks": tasks}
    path = tmp_path / "basewatch.yml"
    path.write_text(yaml.safe_dump(config))
    return path


async def wait_for(predicate, timeout: float, what: str):
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if result := await predicate():
            return result
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


class Scenario:
    """The daemon under test and what it has done, read from its store."""

    def __init__(self, daemon: Daemon, base: str, logs: Path):
        self.daemon, self.base, self.logs = daemon, base, logs

    async def runs(self, task: str) -> list[Run]:
        return await self.daemon.store.runs.list(task=task)

    async def all_runs(self) -> dict[str, list[Run]]:
        return {task: await self.runs(task) for task in TASKS}

    async def finished_run(self, task: str) -> Run | None:
        """The task's only run, once it has finished."""
        runs = await self.runs(task)
        return runs[0] if len(runs) == 1 and runs[0].status.finished else None

    async def seen(self, index_digest: str) -> bool:
        """Whether the watcher has read `index_digest` for every watched platform."""
        watched = [await self.daemon.store.graph.get_watched(self.base, p) for p in TASKS.values()]
        return all(w is not None and w.index_digest == index_digest for w in watched)

    def log(self, run: Run) -> str:
        return (self.logs / f"{run.id}.log").read_text()


async def test_each_task_is_rebuilt_only_for_its_own_platform(tmp_path, registry, base_images,
                                                              docker_host, emulation):
    reg = registry.address
    base = f"{reg}/multi:1"
    # a. A two-platform base, and a task for each platform built on it.
    first = await build_base(base_images, base)
    amd64, arm64 = first.images
    daemon = Daemon(load_config(write_config(tmp_path, reg)), docker_host)
    await daemon.start()
    scenario = Scenario(daemon, base, tmp_path / "state" / "logs")
    try:
        deps = await daemon.store.graph.dependencies()
        assert {(d.task, d.base, d.platform, d.digest_at_build) for d in deps} == {
            ("app-amd64", base, AMD64, amd64.digest), ("app-arm64", base, ARM64, arm64.digest)}

        # b. linux/arm/v7 added to the index: a new index digest, the same platform digests.
        arm_v7 = await build_platform(base_images, base, ARM_V7, RELEASE)
        grown = await asyncio.to_thread(base_images.push_index, base, [amd64, arm64, arm_v7])
        assert grown != first.index_digest
        await wait_for(lambda: scenario.seen(grown), 15, "the watcher to read the new index")
        await asyncio.sleep(3)  # a few more poll cycles: still nothing may be queued
        assert await scenario.all_runs() == {"app-amd64": [], "app-arm64": []}
        for platform, image in ((AMD64, amd64), (ARM64, arm64)):
            watched = await daemon.store.graph.get_watched(base, platform)
            assert (watched.digest, watched.changed_at) == (image.digest, None)

        # c. Only the arm64 image patched: the arm64 task alone is rebuilt, on the new digest.
        patched_arm64 = await build_platform(base_images, base, ARM64,
                                             {**RELEASE, "/etc/patch": "arm64 fix\n"})
        assert patched_arm64.digest != arm64.digest
        index = await asyncio.to_thread(base_images.push_index, base,
                                        [amd64, patched_arm64, arm_v7])
        run = await wait_for(lambda: scenario.finished_run("app-arm64"), 60,
                             "the rebuild of app-arm64")
        assert run.status is RunStatus.SUCCEEDED, (run.error, scenario.log(run))
        assert (run.trigger, run.platform) == (Trigger.IMAGE_UPDATE, ARM64)
        assert run.base_digests == {base: patched_arm64.digest}, "the platform's, not the index's"
        await wait_for(lambda: scenario.seen(index), 15, "the watcher to read the patched index")
        assert await scenario.runs("app-amd64") == []
        [output] = run.outputs
        config = await asyncio.to_thread(base_images.image_config, output.image)
        assert (config["os"], config["architecture"]) == ("linux", "arm64")
        files = {path: await asyncio.to_thread(base_images.read_file, output.image, path, ARM64)
                 for path in ("/app-arch", "/etc/arch", "/etc/patch")}
        # Its RUN ran under qemu as aarch64, on the patched arm64 base.
        assert files == {"/app-arch": "aarch64\n", "/etc/arch": "aarch64\n",
                         "/etc/patch": "arm64 fix\n"}
        deps = {d.task: d.digest_at_build for d in await daemon.store.graph.dependencies()}
        assert deps == {"app-amd64": amd64.digest, "app-arm64": patched_arm64.digest}

        # d. The amd64 image patched: the amd64 task alone is rebuilt.
        patched_amd64 = await build_platform(base_images, base, AMD64,
                                             {**RELEASE, "/etc/patch": "amd64 fix\n"})
        index = await asyncio.to_thread(base_images.push_index, base,
                                        [patched_amd64, patched_arm64, arm_v7])
        run = await wait_for(lambda: scenario.finished_run("app-amd64"), 60,
                             "the rebuild of app-amd64")
        assert run.status is RunStatus.SUCCEEDED, (run.error, scenario.log(run))
        assert run.base_digests == {base: patched_amd64.digest}
        await wait_for(lambda: scenario.seen(index), 15, "the watcher to read the last index")
        assert len(await scenario.runs("app-arm64")) == 1
        [output] = run.outputs
        config = await asyncio.to_thread(base_images.image_config, output.image)
        assert config["architecture"] == "amd64"
        assert await asyncio.to_thread(base_images.read_file, output.image, "/etc/patch") \
            == "amd64 fix\n"
    finally:
        await daemon.stop()


async def test_both_platforms_patched_at_once_each_build_on_their_own(
        tmp_path, registry, base_images, docker_host, emulation):
    """Two runs at once, one per platform, on one engine where the base tag is a single name."""
    reg = registry.address
    base = f"{reg}/multi:1"
    await build_base(base_images, base)
    daemon = Daemon(load_config(write_config(tmp_path, reg)), docker_host)
    await daemon.start()
    scenario = Scenario(daemon, base, tmp_path / "state" / "logs")
    try:
        patched = await asyncio.to_thread(
            base_images.build_multi_platform, base, [AMD64, ARM64],
            {**RELEASE, "/etc/patch": "both\n"})

        async def both_finished():
            runs = [await scenario.finished_run(task) for task in TASKS]
            return runs if all(runs) else None

        runs = await wait_for(both_finished, 60, "the rebuilds of both tasks")
        for (task, platform), run in zip(TASKS.items(), runs):
            assert run.status is RunStatus.SUCCEEDED, (run.error, scenario.log(run))
            assert run.base_digests == {base: patched.digests[platform]}
            [output] = run.outputs
            config = await asyncio.to_thread(base_images.image_config, output.image)
            expected = "x86_64\n" if platform == AMD64 else "aarch64\n"
            files = {path: await asyncio.to_thread(base_images.read_file, output.image, path,
                                                   platform)
                     for path in ("/app-arch", "/etc/arch")}
            assert (task, config["architecture"], files) == (
                task, Platform.parse(platform).architecture,
                {"/app-arch": expected, "/etc/arch": expected})
    finally:
        await daemon.stop()


@pytest.mark.parametrize("platform, built_for", [
    (AMD64, AMD64), (ARM64, ARM64), ("linux/arm64/v8", ARM64), ("linux/arm", ARM_V7)])
async def test_registry_client_resolves_each_platform_of_a_built_index(
        registry, base_images, emulation, platform, built_for):
    base = f"{registry.address}/multi:1"
    images = [await build_platform(base_images, base, p, RELEASE) for p in (AMD64, ARM64, ARM_V7)]
    index = await asyncio.to_thread(base_images.push_index, base, images)
    digests = {image.platform: image.digest for image in images}
    async with RegistryClient() as client:
        seen = await client.platform_digest(ImageReference.parse(base), Platform.parse(platform))
    assert seen == PlatformDigest(digests[built_for], index)


def index_platforms(registry: str, repository: str, tag: str) -> dict[str, str]:
    """The platforms of the index a tag serves, and each one's manifest digest."""
    request = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.index.v1+json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        index = json.load(response)
    return {f"{m['platform']['os']}/{m['platform']['architecture']}": m["digest"]
            for m in index["manifests"]}


async def test_a_task_of_two_platforms_is_rebuilt_into_one_index_when_only_arm64_moves(
        tmp_path, registry, base_images, docker_host, emulation):
    reg = registry.address
    base = f"{reg}/multi:1"
    first = await build_base(base_images, base)
    amd64, arm64 = first.images
    # a. One task built for both platforms: each platform's digest of the base is watched.
    config = write_config(tmp_path, reg, {"app-both": [AMD64, ARM64]},
                          image="{registry}/apps/{name}:latest")
    daemon = Daemon(load_config(config), docker_host)
    await daemon.start()
    scenario = Scenario(daemon, base, tmp_path / "state" / "logs")
    try:
        deps = await daemon.store.graph.dependencies()
        assert {(d.task, d.base, d.platform, d.digest_at_build) for d in deps} == {
            ("app-both", base, AMD64, amd64.digest), ("app-both", base, ARM64, arm64.digest)}

        # b. Only the arm64 image patched: one run rebuilds both platforms into one index.
        patched = await build_platform(base_images, base, ARM64,
                                       {**RELEASE, "/etc/patch": "arm64 fix\n"})
        index = await asyncio.to_thread(base_images.push_index, base, [amd64, patched])
        run = await wait_for(lambda: scenario.finished_run("app-both"), 120,
                             "the rebuild of app-both")
        assert run.status is RunStatus.SUCCEEDED, (run.error, scenario.log(run))
        assert (run.trigger, run.platform) == (Trigger.IMAGE_UPDATE, f"{AMD64},{ARM64}")
        assert f"base {base} ({ARM64}) changed to {patched.digest}" in run.reason
        # Each platform's base digest is recorded, on the run and on the graph's edges.
        assert run.base_digests == {f"{base} ({AMD64})": amd64.digest,
                                    f"{base} ({ARM64})": patched.digest}
        deps = {d.platform: d.digest_at_build for d in await daemon.store.graph.dependencies()}
        assert deps == {AMD64: amd64.digest, ARM64: patched.digest}
        await wait_for(lambda: scenario.seen(index), 15, "the watcher to read the patched index")
        await asyncio.sleep(3)  # a few more poll cycles: the amd64 digest did not move
        assert len(await scenario.runs("app-both")) == 1

        # c. One index pushed per tag, with both platforms, each built on its own base.
        [output] = run.outputs
        assert output.image == f"{reg}/apps/app-both:latest"
        manifests = await asyncio.to_thread(index_platforms, reg, "apps/app-both", "latest")
        assert set(manifests) == {AMD64, ARM64}
        for platform, machine, patch in ((AMD64, "x86_64\n", None),
                                         (ARM64, "aarch64\n", "arm64 fix\n")):
            files = {path: await asyncio.to_thread(base_images.read_file, output.image, path,
                                                   platform)
                     for path in ("/app-arch", "/etc/patch")}
            assert files == {"/app-arch": machine, "/etc/patch": patch}, platform
    finally:
        await daemon.stop()
