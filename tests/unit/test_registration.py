"""Registering tasks: concurrent changes each build on the one before (real store on disk;
the registry's digests come from a stand-in, slow on purpose to widen the window)."""
from __future__ import annotations

import asyncio

import pytest

from basewatch.errors import GraphError
from basewatch.tasks import Task
from basewatch.watcher.registration import TaskRegistrar
from tests.support.stores import open_store


class SlowDigests:
    async def platform_digest(self, ref, platform):
        await asyncio.sleep(0.05)  # a registry round trip: another registration runs meanwhile
        return type("Seen", (), {"digest": "sha256:" + "a" * 64, "index_digest": None})()


@pytest.fixture
async def registrar(tmp_path):
    store = await open_store(tmp_path / "basewatch.db")
    yield TaskRegistrar(store, SlowDigests(), "reg.example:5000")
    await store.close()


def task(tmp_path, name: str, base: str) -> Task:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "Dockerfile").write_text(f"FROM {base}\n")
    return Task(name=name, context=str(folder), images=[f"reg.example:5000/{name}:latest"])


async def test_concurrent_registrations_all_land_in_the_graph(tmp_path, registrar):
    tasks = [task(tmp_path, f"app{n}", "reg.example:5000/base:1") for n in range(5)]
    await asyncio.gather(*(registrar.register(t, "api") for t in tasks))
    assert set(await registrar.published()) == {f"app{n}" for n in range(5)}
    stored = await registrar.store.graph.dependencies()
    assert {d.task for d in stored} == {f"app{n}" for n in range(5)}


async def test_two_registrations_that_close_a_cycle_together_are_not_both_accepted(
        tmp_path, registrar):
    first = task(tmp_path, "a", "reg.example:5000/b:latest")
    second = task(tmp_path, "b", "reg.example:5000/a:latest")
    results = await asyncio.gather(registrar.register(first, "api"),
                                   registrar.register(second, "api"), return_exceptions=True)
    failures = [r for r in results if isinstance(r, Exception)]
    assert len(failures) == 1 and isinstance(failures[0], GraphError)
    assert "cycle" in str(failures[0])
    assert len(await registrar.store.tasks.all()) == 1
