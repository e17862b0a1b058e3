"""A task file task publishes what its push steps push under a stable tag (read at
registration with the same stand-ins for run variables): a task built on it is its dependent in
the task graph (edges, cycles, `basewatch graph`), kept in the store across restarts; tags that
change every run (`$ID`, `{{.Run.ID}}`, `$Date`, `$Commit`, values) publish nothing."""
from __future__ import annotations

from pathlib import Path

import pytest

from basewatch.builder.contexts.task_files import read_for_registration
from basewatch.errors import GraphError
from basewatch.graph_view import build_graph_view
from basewatch.oci.platforms import Platform
from basewatch.tasks import Task
from basewatch.watcher.registration import TaskRegistrar
from tests.support.fake_registry import SeenDigests
from tests.support.stores import open_store

REGISTRY = "reg.example:5000"
PUSHES = """\
version: v1.1.0
steps:
  - build: -t $Registry/base:stable -t $Registry/base:$ID -t local-only:1 .
  - push:
    - $Registry/base:stable
    - base:{{.Run.RegistryName}}-mirror
    - $Registry/base:$ID
    - $Registry/base:{{.Run.ID}}
    - $Registry/base:$Date
    - $Registry/base:{{.Run.Date}}
    - $Registry/base:$Commit
    - $Registry/base:{{.Values.tag}}
    - $Registry/base
"""


def task_file_app(tmp_path: Path, name: str, text: str, base: str = "busybox:1.36") -> Task:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "Dockerfile").write_text(f"FROM {base}\n")
    (folder / "acr-task.yaml").write_text(text)
    return Task(name=name, context=str(folder), images=[], file="acr-task.yaml")


def dockerfile_app(tmp_path: Path, name: str, base: str) -> Task:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "Dockerfile").write_text(f"FROM {base}\nRUN true\n")
    return Task(name=name, context=str(folder), images=[f"{REGISTRY}/{name}:latest"])


@pytest.fixture
async def store(tmp_path):
    store = await open_store(tmp_path / "basewatch.db")
    yield store
    await store.close()


def test_only_pushes_under_a_tag_no_run_changes_are_published(tmp_path):
    app = task_file_app(tmp_path, "base", PUSHES)
    read = read_for_registration(PUSHES, Path(app.context), "acr-task.yaml", REGISTRY, {},
                                 Platform.parse("linux/amd64"))
    # Named without a registry: the run's in front; without a tag: latest. The build's own
    # tags are not published unless a push step pushes them.
    assert read.published == {f"{REGISTRY}/base:stable", f"{REGISTRY}/base:reg-mirror",
                              f"{REGISTRY}/base:latest"}


async def test_a_task_built_on_a_task_file_s_push_is_its_dependent(tmp_path, store):
    registrar = TaskRegistrar(store, SeenDigests(), REGISTRY)
    await registrar.register(task_file_app(tmp_path, "base", PUSHES), "api")
    await registrar.register(dockerfile_app(tmp_path, "web", f"{REGISTRY}/base:stable"), "api")
    graph = await registrar.graph()
    assert graph.downstream["base"] == {"web"} and graph.ancestors("web") == {"base"}
    assert f"{REGISTRY}/base:stable" in (await registrar.published())["base"]

    # `basewatch graph` shows the edge.
    view = build_graph_view(await store.graph.watched(), await store.graph.dependencies(),
                            await registrar.published())
    shown = {t["name"]: t for t in view["tasks"]}
    assert shown["base"]["downstream"] == ["web"] and shown["web"]["upstream"] == ["base"]
    (ref,) = [r for r in view["references"] if r["reference"] == f"{REGISTRY}/base:stable"]
    assert ref["published_by"] == ["base"]

    # Kept in the store: a daemon that starts again reads the same graph.
    again = TaskRegistrar(store, SeenDigests(), REGISTRY)
    assert (await again.graph()).downstream["base"] == {"web"}

    # A file that no longer pushes it, registered again: no edge; deleted: nothing kept.
    (tmp_path / "base" / "acr-task.yaml").write_text(
        "version: v1.1.0\nsteps:\n  - push: [$Registry/base:$ID]\n")
    await registrar.register(Task(name="base", context=str(tmp_path / "base"), images=[],
                                  file="acr-task.yaml"), "api")
    assert (await registrar.graph()).downstream["base"] == set()
    assert (await store.graph.published()).get("base") is None
    await registrar.unregister("base")
    assert "base" not in await store.graph.published()


async def test_a_cycle_through_a_task_file_s_push_is_refused(tmp_path, store):
    registrar = TaskRegistrar(store, SeenDigests(), REGISTRY)
    await registrar.register(dockerfile_app(tmp_path, "web", f"{REGISTRY}/base:stable"), "api")
    # The task file builds on web's image and pushes web's base: a cycle.
    cyclic = task_file_app(tmp_path, "base", "version: v1.1.0\nsteps:\n"
                           "  - build: -t $Registry/base:stable .\n"
                           "  - push: [$Registry/base:stable]\n", base=f"{REGISTRY}/web:latest")
    with pytest.raises(GraphError, match="cycle: .*base's image reg.example:5000/base:stable "
                                         "is web's base"):
        await registrar.register(cyclic, "api")
    assert await store.tasks.get("base") is None
    assert "base" not in await store.graph.published()


async def test_a_fetched_task_file_pushing_other_images_moves_the_registration(tmp_path,
                                                                               store):
    from basewatch.builder.contexts.checkout import Checkouts
    from basewatch.builder.planner import RunPlanner
    from basewatch.builder.quick_runs import QuickRuns

    app = task_file_app(tmp_path, "base", PUSHES)
    await TaskRegistrar(store, SeenDigests(), REGISTRY).register(app, "api")
    changed = []

    async def on_context_changed(task, context):
        changed.append(context)

    plans = RunPlanner(store, Checkouts(tmp_path / "state" / "contexts", 10_000_000),
                       QuickRuns(tmp_path / "state" / "contexts"), REGISTRY,
                       on_context_changed=on_context_changed)
    folder = Path(app.context)
    await plans._follow_task_file(app, PUSHES, folder)
    assert changed == [], "as registered"
    await plans._follow_task_file(app, PUSHES.replace("base:stable", "base:v2"), folder)
    assert changed == [folder]
