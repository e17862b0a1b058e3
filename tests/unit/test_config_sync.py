"""Config sync: the file's tasks registered, removed ones forgotten, SIGHUP's re-read (a real
store on disk; the registry's digests come from a stand-in)."""
from __future__ import annotations

from pathlib import Path

import pytest

from basewatch.config import Config, TaskSettings, load_config
from basewatch.config_sync import ConfigSync, context_in_config
from basewatch.watcher.registration import TaskRegistrar
from tests.support.fake_registry import SeenDigests


@pytest.fixture
def refreshes() -> list[int]:
    return []


@pytest.fixture
def sync(store, refreshes) -> ConfigSync:
    registrar = TaskRegistrar(store, SeenDigests(), "reg.example:5000")
    return ConfigSync(store, registrar, lambda: refreshes.append(1))


def task(tmp_path: Path, name: str, base: str = "reg.example:5000/base:1") -> TaskSettings:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    (folder / "Dockerfile").write_text(f"FROM {base}\n")
    return TaskSettings(name=name, context=folder, image=[f"reg.example:5000/{name}:latest"])


async def test_config_tasks_are_registered_and_removed_ones_forgotten(tmp_path, store, sync,
                                                                     refreshes):
    await sync.sync([task(tmp_path, "a"), task(tmp_path, "b")])
    assert {t.name for t in await store.tasks.all(source="config")} == {"a", "b"}
    await sync.sync([task(tmp_path, "a")])
    assert {t.name for t in await store.tasks.all()} == {"a"}
    assert refreshes == [1, 1]


async def test_an_api_task_is_not_forgotten_by_a_sync(tmp_path, store, sync):
    await sync.registrar.register(task(tmp_path, "api-task").to_task(), "api")
    await sync.sync([])
    assert [t.name for t in await store.tasks.all()] == ["api-task"]


async def test_a_task_that_does_not_register_leaves_the_others(tmp_path, store, sync):
    broken = task(tmp_path, "broken")
    (tmp_path / "broken" / "Dockerfile").write_text("RUN true\n")  # no FROM
    await sync.sync([broken, task(tmp_path, "fine")])
    assert [t.name for t in await store.tasks.all()] == ["fine"]
    assert list(sync.problems()) == ["broken"] and "FROM" in sync.problems()["broken"]
    # Kept, not dropped, until a sync registers it (or the file no longer names it).
    (tmp_path / "broken" / "Dockerfile").write_text("FROM reg.example:5000/base:1\n")
    await sync.sync([broken, task(tmp_path, "fine")])
    assert sync.problems() == {}
    await sync.sync([task(tmp_path, "gone-folder")])
    (tmp_path / "gone-folder" / "Dockerfile").unlink()
    (tmp_path / "gone-folder").rmdir()
    await sync.sync([task(tmp_path, "fine"), TaskSettings(
        name="gone-folder", context=tmp_path / "gone-folder", image=["reg.example:5000/g:1"])])
    assert sync.problems() == {"gone-folder": f"the context folder {tmp_path}/gone-folder does "
                                              "not exist (or is not a folder)"}


def write_config(path: Path, state: Path, tasks: list[str]) -> None:
    lines = [f"state_dir: {state}", "tasks:"] + [
        f"  - {{name: {name}, context: ./{name}, image: ['reg.example:5000/{name}:latest']}}"
        for name in tasks]
    path.write_text("\n".join(lines) + "\n")


async def test_reload_applies_the_files_tasks_and_keeps_the_running_settings(
        tmp_path, store, sync):
    for name in ("a", "b"):
        task(tmp_path, name)
    path = tmp_path / "basewatch.yaml"
    write_config(path, tmp_path / "state", ["a"])
    running = load_config(path)
    write_config(path, tmp_path / "elsewhere", ["a", "b"])
    reloaded = await sync.reload(running, path)
    assert [t.name for t in reloaded.tasks] == ["a", "b"]
    assert reloaded.state_dir == running.state_dir  # other settings take a restart
    assert {t.name for t in await store.tasks.all()} == {"a", "b"}


async def test_a_file_that_does_not_load_keeps_the_running_config(tmp_path, store, sync):
    path = tmp_path / "basewatch.yaml"
    path.write_text("tasks: [\n")
    running = Config(state_dir=tmp_path / "state")
    assert await sync.reload(running, path) is running


def test_a_context_the_config_names_is_trusted(tmp_path):
    config = Config(state_dir=tmp_path, tasks=[task(tmp_path, "a")])
    assert context_in_config(config, config.tasks[0].context)
    assert not context_in_config(config, "https://elsewhere.example/repo.git")
