"""Registers a task: analyse its Dockerfile, record its bases and their current digests."""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from structlog.contextvars import bound_contextvars

from basewatch.builder.contexts.checkout import read_dockerfile
from basewatch.builder.contexts.task_files import read_for_registration, read_task_file
from basewatch.dockerfile.analysis import DockerfileBases, analyse_for_platforms
from basewatch.context_spec import ContextError
from basewatch.errors import BasewatchError, NotFoundError, RegistryAddressRefused
from basewatch.graph import TaskGraph, published_images
from basewatch.models import Dependency, DependencyKind
from basewatch.oci.platforms import Platform
from basewatch.oci.reference import ImageReference
from basewatch.store import Store
from basewatch.tasks import Task
from basewatch.watcher.digest_watch import DigestSource

if TYPE_CHECKING:
    from basewatch.builder.contexts.checkout import Checkouts

log = logging.getLogger(__name__)


async def analyse_task(task: Task, context: Path, run_registry: str | None,
                       image_aliases: dict[str, str]
                       ) -> tuple[list[tuple[str, DockerfileBases]], set[str]]:
    """(platform, bases) of each build: a Dockerfile's per platform, a task file's per
    build step (its Dockerfile's, for the step's platform); and what a task file's push
    steps publish (a Dockerfile task publishes its `images`). What registration reads of a
    task, and `basewatch check-config` too, so the two cannot disagree."""
    if not await asyncio.to_thread(context.is_dir):
        raise ContextError(f"the context folder {context} does not exist (or is not a folder)")
    if task.runs_task_file:
        text = await asyncio.to_thread(read_task_file, context, task.file)
        read = await asyncio.to_thread(read_for_registration, text, context, task.file,
                                       run_registry, image_aliases, task.platforms[0])
        return read.builds, read.published
    content = await asyncio.to_thread(read_dockerfile, context, task.file)
    analysed = await asyncio.to_thread(analyse_for_platforms, content, task.build_args,
                                       task.target, task.file, task.platforms)
    return list(analysed.items()), set()


class TaskRegistrar:
    """Keeps the tasks and their edges in the store, and the task graph they form in memory
    (read from the store once, then kept in step with every change made through here)."""

    def __init__(self, store: Store, source: DigestSource, run_registry: str | None = None,
                 checkouts: Checkouts | None = None,
                 on_change: Callable[[], None] | None = None,
                 image_aliases: dict[str, str] | None = None):
        self.store = store
        self.image_aliases = dict(image_aliases or {})  # the config's, for task files
        self.source = source
        self.run_registry = run_registry
        self.checkouts = checkouts
        self.on_change = on_change  # told after every change to the tasks and their edges
        self._published: dict[str, set[str]] = {}
        self._edges: dict[str, list[Dependency]] = {}
        self._graph: TaskGraph | None = None
        # One change at a time: each builds on the graph the one before it left (two at once
        # would drop one's edges from the cache, or pass a cycle neither sees alone).
        self._changing = asyncio.Lock()

    async def register(self, task: Task, source: str,
                       context: Path | None = None) -> DockerfileBases:
        """Analyse and check first, store after: a bad Dockerfile or a cycle leaves the previous
        registration intact. `context` is the task's context already on disk; without it a
        git or tarball context is fetched to read the Dockerfile."""
        with bound_contextvars(task=task.name):  # its fetch's and analysis' lines too
            return await self._fetch_and_register(task, source, context)

    async def _fetch_and_register(self, task: Task, source: str,
                                  context: Path | None) -> DockerfileBases:
        if context is None and not task.local_context:
            if self.checkouts is None:
                raise BasewatchError(f"task {task.name}: remote contexts cannot be fetched here")
            async with self.checkouts.for_registration(task.context) as checkout:
                return await self.register(task, source, checkout.folder)
        async with self._changing:
            return await self._register(task, source, context or Path(task.context))

    async def _register(self, task: Task, source: str, context: Path) -> DockerfileBases:
        analysed, pushed = await self._analyse(task, context)
        edges: list[tuple[str, str, DependencyKind]] = []
        for platform, bases in analysed:
            if bases.runtime is not None:
                edges.append((str(bases.runtime), platform, DependencyKind.RUNTIME))
            edges += [(str(b), platform, DependencyKind.BUILDTIME) for b in bases.buildtime]
        # A task file's build steps may share a base: one edge each.
        edges = list(dict.fromkeys(edges))
        await self.graph()
        published = {**self._published,
                     task.name: published_images(task, self.run_registry) | pushed}
        dependencies = {**self._edges, task.name: [
            Dependency(task.name, base, platform, kind) for base, platform, kind in edges]}
        graph = _graph_of(published, dependencies)
        graph.check_acyclic()
        digests = dict(await asyncio.gather(
            *(self._current_digest(base, platform) for base, platform, _ in edges)))
        await self.store.tasks.upsert(task, source)
        await self.store.graph.replace_dependencies(task.name, edges, digests, pushed)
        self._published, self._edges, self._graph = published, dependencies, graph
        self._changed()
        # The first platform's (a task file's first build's; none: no bases at all)
        return analysed[0][1] if analysed else DockerfileBases(None, ())

    async def _analyse(self, task: Task, context: Path
                       ) -> tuple[list[tuple[str, DockerfileBases]], set[str]]:
        return await analyse_task(task, context, self.run_registry, self.image_aliases)

    async def change_triggers(self, name: str, change: Callable[[Task, str], Task]) -> Task:
        """Change what runs a task and not what it is built from (its timers): `change(task,
        source)` gives the new task or raises. Stored in turn with every other change, without
        reading the Dockerfile again; the task as stored now."""
        async with self._changing:
            found = await self.store.tasks.get_with_source(name)
            if found is None:
                raise NotFoundError(f"no task named {name}: `basewatch task list` shows them")
            task, source = found
            changed = change(task, source)
            await self.store.tasks.upsert(changed, source)
        self._changed()
        return changed

    async def unregister(self, name: str) -> bool:
        async with self._changing:
            await self.graph()
            deleted = await self.store.tasks.delete(name)
            self._published.pop(name, None)
            self._edges.pop(name, None)
            self._graph = _graph_of(self._published, self._edges)
        self._changed()
        return deleted

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    async def published(self) -> dict[str, set[str]]:
        """Each task's stable published images (what other tasks can be built on)."""
        await self.graph()
        return self._published

    async def graph(self) -> TaskGraph:
        """The task graph of what is registered now."""
        if self._graph is None:
            # A task file's pushes were read at its registration, from its context.
            pushes = await self.store.graph.published()
            self._published = {t.name: published_images(t, self.run_registry)
                               | pushes.get(t.name, set())
                               for t in await self.store.tasks.all()}
            self._edges = {}
            for dependency in await self.store.graph.dependencies():
                self._edges.setdefault(dependency.task, []).append(dependency)
            self._graph = _graph_of(self._published, self._edges)
        return self._graph

    async def _current_digest(self, base: str, platform: str
                              ) -> tuple[tuple[str, str], str | None]:
        """The digest the task counts as built on, so the first patch already triggers."""
        watched = await self.store.graph.get_watched(base, platform)
        if watched is not None and watched.digest is not None:
            return (base, platform), watched.digest
        try:
            seen = await self.source.platform_digest(ImageReference.parse(base),
                                                     Platform.parse(platform))
        except RegistryAddressRefused:
            raise  # not a registry that is down: one the daemon will never contact
        except BasewatchError as exc:
            log.warning("cannot read the digest of %s (%s) yet: %s", base, platform, exc)
            return (base, platform), None
        return (base, platform), seen.digest


def _graph_of(published: dict[str, set[str]], edges: dict[str, list[Dependency]]) -> TaskGraph:
    return TaskGraph(published, (d for dependencies in edges.values() for d in dependencies))
