"""Registers a task: analyse its Dockerfile, record its bases and their current digests."""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

from structlog.contextvars import bound_contextvars

from basewatch.builder.contexts.checkout import read_dockerfile
from basewatch.builder.contexts.task_files import read_for_registration, read_task_file
from basewatch.dockerfile.analysis import DockerfileBases, analyse_for_platforms
from basewatch.context_spec import ContextError
from basewatch.errors import (BasewatchError, NotFoundError, RegistryAddressRefused,
                              StoreBusyError)
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

# Local tasks registered this many at a time (register_many): one thread hop reads them, one
# graph check and one store transaction take them in, and the loop is free between batches.
REGISTRATION_BATCH = 1000
# Base digests asked of registries at once while a batch is registered.
DIGESTS_AT_ONCE = 32
# Git and tarball contexts fetched at once while a batch is registered.
FETCHES_AT_ONCE = 4

Analysed = tuple[list[tuple[str, DockerfileBases]], set[str]]


def read_task_bases(task: Task, context: Path, run_registry: str | None,
                    image_aliases: dict[str, str]
                    ) -> tuple[list[tuple[str, DockerfileBases]], set[str]]:
    """(platform, bases) of each build: a Dockerfile's per platform, a task file's per
    build step (its Dockerfile's, for the step's platform); and what a task file's push
    steps publish (a Dockerfile task publishes its `images`). What registration reads of a
    task, and `basewatch check-config` too, so the two cannot disagree. Blocking: file reads
    and pure CPU."""
    if not context.is_dir():
        raise ContextError(f"the context folder {context} does not exist (or is not a folder)")
    if task.runs_task_file:
        text = read_task_file(context, task.file)
        read = read_for_registration(text, context, task.file, run_registry, image_aliases,
                                     task.platforms[0])
        return read.builds, read.published
    content = read_dockerfile(context, task.file)
    analysed = analyse_for_platforms(content, task.build_args, task.target, task.file,
                                     task.platforms)
    return list(analysed.items()), set()


async def analyse_task(task: Task, context: Path, run_registry: str | None,
                       image_aliases: dict[str, str]
                       ) -> tuple[list[tuple[str, DockerfileBases]], set[str]]:
    """`read_task_bases` in a thread."""
    return await asyncio.to_thread(read_task_bases, task, context, run_registry, image_aliases)


def _read_batch(tasks: list[Task], run_registry: str | None, image_aliases: dict[str, str]
                ) -> list[tuple[list[tuple[str, DockerfileBases]], set[str]] | BasewatchError]:
    """Each local task's bases, or why it cannot be read: one thread hop for many tasks."""
    read: list = []
    for task in tasks:
        try:
            read.append(read_task_bases(task, Path(task.context), run_registry, image_aliases))
        except BasewatchError as exc:
            read.append(exc)
    return read


def _edges_of(analysed: list[tuple[str, DockerfileBases]]) -> list[tuple[str, str, DependencyKind]]:
    edges: list[tuple[str, str, DependencyKind]] = []
    for platform, bases in analysed:
        if bases.runtime is not None:
            edges.append((str(bases.runtime), platform, DependencyKind.RUNTIME))
        edges += [(str(b), platform, DependencyKind.BUILDTIME) for b in bases.buildtime]
    # A task file's build steps may share a base: one edge each.
    return list(dict.fromkeys(edges))


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
        edges = _edges_of(analysed)
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

    async def register_many(self, tasks: Sequence[Task], source: str,
                            on_batch: Callable[[list[str], dict[str, str]], None] | None = None
                            ) -> dict[str, str]:
        """Register tasks, in order, as `register` would one at a time (a bad Dockerfile leaves
        that task's previous registration; a cycle is refused to the task that closes it), but
        a batch at a time: one read (remote contexts fetched side by side), one graph check
        and one store transaction each. Why each task that was not registered was not, by name;
        `on_batch(registered, failed)` after each batch."""
        failed: dict[str, str] = {}
        batches = [list(tasks[start:start + REGISTRATION_BATCH])
                   for start in range(0, len(tasks), REGISTRATION_BATCH)]
        reading: asyncio.Future | None = None
        try:
            for index, batch in enumerate(batches):
                # Pure CPU and small file reads (~0.1 ms a task, measured): one thread, not
                # a pool. The next batch is read while this one is stored.
                read = await (reading or self._read(batch))
                reading = self._read(batches[index + 1]) if index + 1 < len(batches) else None
                await self._take_batch(batch, read, source, failed, on_batch)
        finally:
            if reading is not None:
                reading.cancel()
        return failed

    def _read(self, batch: list[Task]) -> asyncio.Future:
        return asyncio.ensure_future(self._read_tasks(batch))

    async def _read_tasks(self, batch: list[Task]) -> list[Analysed | BasewatchError]:
        """Each task's bases, or why they cannot be read, in order: local contexts in one
        thread hop, git and tarball ones fetched FETCHES_AT_ONCE at a time."""
        local = [task for task in batch if task.local_context]
        read = dict(zip((task.name for task in local),
                        await asyncio.to_thread(_read_batch, local, self.run_registry,
                                                self.image_aliases)))
        fetches = asyncio.Semaphore(FETCHES_AT_ONCE)

        async def fetch_and_read(task: Task) -> None:
            async with fetches:
                try:
                    if self.checkouts is None:
                        raise BasewatchError(f"task {task.name}: remote contexts cannot be "
                                             "fetched here")
                    async with self.checkouts.for_registration(task.context) as checkout:
                        read[task.name] = await self._analyse(task, checkout.folder)
                except BasewatchError as exc:
                    read[task.name] = exc

        await asyncio.gather(*(fetch_and_read(task) for task in batch
                               if not task.local_context))
        return [read[task.name] for task in batch]

    async def _take_batch(self, batch: list[Task], read: list, source: str,
                          failed: dict[str, str],
                          on_batch: Callable[[list[str], dict[str, str]], None] | None
                          ) -> None:
        """Store one batch as read; its failures added to `failed`, `on_batch` told."""
        refused = {task.name: str(result) for task, result in zip(batch, read)
                   if isinstance(result, BasewatchError)}
        readable = [(task, result) for task, result in zip(batch, read)
                    if not isinstance(result, BasewatchError)]
        async with self._changing:
            registered, refused_now = await self._store_batch(readable, source)
        refused.update(refused_now)
        failed.update(refused)
        if registered:
            self._changed()
        if on_batch is not None:
            on_batch(registered, refused)

    async def _store_batch(self, batch: list[tuple[Task, Analysed]], source: str
                           ) -> tuple[list[str], dict[str, str]]:
        """Take analysed tasks into the graph and the store: (names registered, why each
        other was not)."""
        refused: dict[str, str] = {}
        edges = {task.name: _edges_of(analysed) for task, (analysed, _) in batch}
        digests, unreachable = await self._current_digests(
            {(base, platform) for task_edges in edges.values()
             for base, platform, _ in task_edges})
        for task, _ in batch:
            bad = next((unreachable[(b, p)] for b, p, _ in edges[task.name]
                        if (b, p) in unreachable), None)
            if bad is not None:
                refused[task.name] = bad
        await self.graph()
        published, dependencies = dict(self._published), dict(self._edges)
        positions: dict[str, int] = {}
        for position, (task, (_, pushed)) in enumerate(batch):
            if task.name in refused:
                continue
            positions[task.name] = position
            published[task.name] = published_images(task, self.run_registry) | pushed
            dependencies[task.name] = [Dependency(task.name, base, platform, kind)
                                       for base, platform, kind in edges[task.name]]
        # A restart with the same config changes no task's place in the graph: no rebuild.
        changed = any(published[name] != self._published.get(name)
                      or _links(dependencies[name]) != _links(self._edges.get(name, ()))
                      for name in positions)
        graph = await asyncio.to_thread(_graph_of, published, dependencies) if changed \
            else self._graph
        while changed and (cycle := await asyncio.to_thread(graph.find_cycle)) is not None:
            # One at a time, the last of the cycle's tasks in order would have closed it.
            closer = max((name for name in cycle if name in positions), key=positions.get)
            refused[closer] = str(graph.cycle_error(cycle))
            del positions[closer]
            for now, before in ((published, self._published), (dependencies, self._edges)):
                if closer in before:
                    now[closer] = before[closer]
                else:
                    now.pop(closer, None)
            graph = _graph_of(published, dependencies)
        accepted = [(task, pushed) for task, (_, pushed) in batch if task.name in positions]
        try:
            await self.store.tasks.upsert_many([(task, source) for task, _ in accepted])
            await self.store.graph.replace_many(
                [(task.name, edges[task.name], pushed) for task, pushed in accepted], digests)
        except StoreBusyError as exc:
            # Not kept in memory either: the next sync (a SIGHUP, a restart) tries them again.
            self._graph = None
            return [], {**refused, **{task.name: str(exc) for task, _ in accepted}}
        self._published, self._edges, self._graph = published, dependencies, graph
        return [task.name for task, _ in accepted], refused

    async def _current_digests(self, keys: set[tuple[str, str]]
                               ) -> tuple[dict[tuple[str, str], str | None],
                                          dict[tuple[str, str], str]]:
        """`_current_digest` of many (base, platform) at once, with one read of the store:
        (digests, why each base the daemon may not contact is refused)."""
        known = {(w.base, w.platform): w.digest for w in await self.store.graph.watched()
                 if w.digest is not None}
        limit = asyncio.Semaphore(DIGESTS_AT_ONCE)
        unreachable: dict[tuple[str, str], str] = {}

        async def read(key: tuple[str, str]) -> tuple[tuple[str, str], str | None]:
            async with limit:
                try:
                    return await self._current_digest(*key)
                except RegistryAddressRefused as exc:
                    unreachable[key] = str(exc)
                    return key, None

        digests = dict(known)
        digests.update(await asyncio.gather(*(read(key) for key in keys - known.keys())))
        return digests, unreachable

    async def unregister_many(self, names: Sequence[str]) -> None:
        """Forget several tasks, the graph rebuilt once."""
        if not names:
            return
        async with self._changing:
            await self.graph()
            for name in names:
                await self.store.tasks.delete(name)
                self._published.pop(name, None)
                self._edges.pop(name, None)
            self._graph = _graph_of(self._published, self._edges)
        self._changed()

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
            tasks = await self.store.tasks.all()
            dependencies = await self.store.graph.dependencies()

            def build() -> tuple[dict, dict, TaskGraph]:
                published = {t.name: published_images(t, self.run_registry)
                             | pushes.get(t.name, set()) for t in tasks}
                edges: dict[str, list[Dependency]] = {}
                for dependency in dependencies:
                    edges.setdefault(dependency.task, []).append(dependency)
                return published, edges, _graph_of(published, edges)

            # A restart's 10,000 tasks take a fraction of a second: not on the loop.
            self._published, self._edges, self._graph = await asyncio.to_thread(build)
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


def _links(dependencies: Iterable[Dependency]) -> set[tuple[str, str, DependencyKind]]:
    """What of a task's edges shapes the graph (not the digests it was built on)."""
    return {(d.base, d.platform, d.kind) for d in dependencies}


def _graph_of(published: dict[str, set[str]], edges: dict[str, list[Dependency]]) -> TaskGraph:
    return TaskGraph(published, (d for dependencies in edges.values() for d in dependencies))
