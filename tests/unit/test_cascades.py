"""Cascades: a run that pushed a watched base has that base checked at once."""
from __future__ import annotations

from datetime import datetime, timezone

from basewatch.cascades import Cascades
from basewatch.graph import TaskGraph
from basewatch.models import (
    Dependency,
    DependencyKind,
    PushedImage,
    Run,
    RunStatus,
    RunType,
    Trigger,
)


class Registrar:
    def __init__(self, published: dict[str, set[str]], graph: TaskGraph | None = None):
        self._published = published
        self._graph = graph

    async def published(self):
        return self._published

    async def graph(self):
        return self._graph


class Watcher:
    def __init__(self, watched: list[str]):
        self.watched = watched
        self.checked: list[str] = []

    async def check_references(self, wanted, notified=None) -> int:
        found = [base for base in self.watched if wanted(base)]
        self.checked += found
        return len(found)


def run(status: RunStatus, outputs: list[PushedImage]) -> Run:
    return Run("ca1", "base", Trigger.MANUAL, RunType.AUTO_BUILD, status, "linux/amd64",
               datetime.now(timezone.utc), outputs=outputs)


PUSHED = [PushedImage("reg/base:1", "sha256:" + "c" * 64)]


async def test_a_run_that_pushed_a_watched_base_has_it_checked():
    watcher = Watcher(["reg/base:1", "reg/other:1"])
    cascades = Cascades(Registrar({"base": {"reg/base:1"}}), lambda: watcher)
    await cascades.on_finished(run(RunStatus.SUCCEEDED, PUSHED))
    assert watcher.checked == ["reg/base:1"]


async def test_a_failed_run_or_one_that_pushed_nothing_checks_nothing():
    watcher = Watcher(["reg/base:1"])
    cascades = Cascades(Registrar({"base": {"reg/base:1"}}), lambda: watcher)
    await cascades.on_finished(run(RunStatus.FAILED, PUSHED))
    await cascades.on_finished(run(RunStatus.SUCCEEDED, []))
    assert watcher.checked == []


async def test_upstream_is_every_task_a_task_is_built_on():
    deps = [Dependency("mid", "reg/base:1", "linux/amd64", DependencyKind.RUNTIME),
            Dependency("app", "reg/mid:1", "linux/amd64", DependencyKind.RUNTIME)]
    graph = TaskGraph({"base": {"reg/base:1"}, "mid": {"reg/mid:1"}, "app": set()}, deps)
    cascades = Cascades(Registrar({}, graph), lambda: Watcher([]))
    assert await cascades.upstream_of("app") == {"base", "mid"}
    assert await cascades.upstream_of("base") == set()
