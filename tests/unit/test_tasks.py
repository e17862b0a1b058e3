"""The domain Task, and the two edges that map into it: the config file and the API's body."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from basewatch.config import TaskSettings, load_config, task_fields
from basewatch.errors import InvalidRequestError
from basewatch.oci.platforms import Platform
from basewatch.services import Services
from basewatch.store import SQLiteStore
from basewatch.tasks import BaseImageTrigger, Task
from basewatch.triggers import Triggers
from basewatch.watcher.registration import TaskRegistrar

AMD64, ARM64 = Platform("linux", "amd64"), Platform("linux", "arm64")
REG = "reg.example:5000"
# Each platform's bases are its own: TARGETARCH picks the runtime base.
DOCKERFILE = f"FROM {REG}/base-$TARGETARCH:1\nRUN true\n"


def test_a_config_task_maps_into_the_domain_task(tmp_path):
    (tmp_path / "app").mkdir()
    (tmp_path / "basewatch.yml").write_text(yaml.safe_dump({"tasks": [{
        "name": "app", "context": "app", "file": "build/Dockerfile",
        "image": f"{REG}/app:latest", "build_args": {"V": 1}, "target": "final",
        "platform": ["linux/amd64", "linux/aarch64"], "push": False, "timeout": "5m",
        "base_image_trigger": {"enabled": False, "type": "all"}}]}))
    [settings] = load_config(tmp_path / "basewatch.yml").tasks
    assert settings.to_task() == Task(
        name="app", context=str(tmp_path / "app"), images=[f"{REG}/app:latest"],
        file="build/Dockerfile", build_args={"V": "1"}, target="final",
        platforms=[AMD64, ARM64], base_image_trigger=BaseImageTrigger(False, "all"),
        push=False, timeout=300.0)


def test_the_defaults_map_too():
    task = TaskSettings(name="app", context="/srv/app", image=[f"{REG}/app:1"]).to_task()
    assert task == Task(name="app", context="/srv/app", images=[f"{REG}/app:1"])
    assert (task.platforms, task.platform_list) == ([AMD64], "linux/amd64")


def test_task_fields_map_back_into_the_same_task():
    task = Task(name="app", context="/srv/app", images=[f"{REG}/app:1"], target="t",
                platforms=[ARM64, AMD64], base_image_trigger=BaseImageTrigger(True, "all"))
    assert task_fields(task)["platform"] == ["linux/arm64", "linux/amd64"]
    assert TaskSettings.model_validate(task_fields(task)).to_task() == task


class Digests:
    async def platform_digest(self, ref, platform):
        return SimpleNamespace(digest=f"sha256:{platform.architecture}", index_digest=None)


@pytest.fixture
async def services(tmp_path: Path):
    store = await SQLiteStore.open(tmp_path / "state" / "basewatch.db")
    registrar = TaskRegistrar(store, Digests(), REG)
    yield Services(store, registrar, SimpleNamespace(log_updates=None),
                   Triggers(store.runs, lambda run_id, delay: None), local_contexts_root=tmp_path)
    await store.close()


def app_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "Dockerfile").write_text(DOCKERFILE)
    return folder


@pytest.mark.parametrize("platform", ["linux/amd64,linux/arm64", ["linux/amd64", "linux/arm64"]])
async def test_an_api_body_maps_into_a_task_of_several_platforms(tmp_path, services, platform):
    view = await services.create_task({"name": "app", "context": str(app_folder(tmp_path)),
                                       "image": f"{REG}/app:1", "platform": platform})
    assert view["platform"] == ["linux/amd64", "linux/arm64"]
    task = await services.store.tasks.get("app")
    assert (task.images, task.platforms) == ([f"{REG}/app:1"], [AMD64, ARM64])
    # Each platform analysed on its own, and watched from its own digest.
    assert {(b["reference"], b["platform"], b["digest_at_build"]) for b in view["bases"]} == {
        (f"{REG}/base-amd64:1", "linux/amd64", "sha256:amd64"),
        (f"{REG}/base-arm64:1", "linux/arm64", "sha256:arm64")}
    run = await services.run_task("app", {})
    assert run["platform"] == "linux/amd64,linux/arm64"


async def test_an_api_update_keeps_what_it_does_not_change(tmp_path, services):
    await services.create_task({"name": "app", "context": str(app_folder(tmp_path)),
                                "image": f"{REG}/app:1", "platform": "linux/arm64"})
    view = await services.update_task("app", {"platform": "linux/amd64,linux/arm64"})
    assert (view["image"], view["platform"]) == ([f"{REG}/app:1"], ["linux/amd64", "linux/arm64"])
    assert len(view["bases"]) == 2


@pytest.mark.parametrize("platform, message", [
    ("linux/amd64,linux", "task: platform: platform 'linux' is not of the form os/arch[/variant]"),
    ("linux/amd64 linux/arm64", "is not of the form os/arch[/variant]"),
    ("linux/arm64,linux/aarch64", "task: platform: the platform linux/arm64 is given twice"),
])
async def test_a_malformed_platform_list_is_refused_in_one_line(tmp_path, services, platform,
                                                                message):
    with pytest.raises(InvalidRequestError) as refused:
        await services.create_task({"name": "app", "context": str(app_folder(tmp_path)),
                                    "image": f"{REG}/app:1", "platform": platform})
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert await services.store.tasks.all() == []
