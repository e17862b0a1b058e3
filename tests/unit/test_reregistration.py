"""Re-registration: a run's Dockerfile with other bases moves the task's watched bases."""
from __future__ import annotations


from basewatch.config import TaskSettings
from basewatch.watcher.registration import TaskRegistrar
from basewatch.watcher.reregistration import Reregistration
from tests.support.fake_registry import SeenDigests


async def test_a_changed_dockerfile_moves_the_watched_base(tmp_path, store):
    registrar = TaskRegistrar(store, SeenDigests(), "reg.example:5000")
    (tmp_path / "Dockerfile").write_text("FROM reg.example:5000/base:1\n")
    task = TaskSettings(name="app", context=tmp_path,
                        image=["reg.example:5000/app:latest"]).to_task()
    await registrar.register(task, "api")
    fetched = tmp_path / "fetched"
    fetched.mkdir()
    (fetched / "Dockerfile").write_text("FROM reg.example:5000/base:2\n")
    await Reregistration(store, registrar).on_context_changed(task, fetched)
    assert [d.base for d in await store.graph.dependencies("app")] == \
        ["reg.example:5000/base:2"]
    assert (await store.tasks.get_with_source("app"))[1] == "api"


async def test_a_task_deleted_meanwhile_is_not_registered_again(tmp_path, store):
    registrar = TaskRegistrar(store, SeenDigests(), "reg.example:5000")
    (tmp_path / "Dockerfile").write_text("FROM reg.example:5000/base:1\n")
    task = TaskSettings(name="gone", context=tmp_path,
                        image=["reg.example:5000/gone:latest"]).to_task()
    await Reregistration(store, registrar).on_context_changed(task, tmp_path)
    assert await store.tasks.all() == []
