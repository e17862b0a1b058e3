"""Registers a task: analyse its Dockerfile, record its bases and their current digests."""
from __future__ import annotations

import asyncio
import logging

from basewatch.config import TaskSettings
from basewatch.errors import BasewatchError
from basewatch.models import DependencyKind
from basewatch.platforms import Platform
from basewatch.store import Store
from basewatch.watcher.digest_watch import DigestSource
from basewatch.watcher.dockerfile import DockerfileBases, analyse_dockerfile_path
from basewatch.watcher.reference import ImageReference

log = logging.getLogger(__name__)


class TaskRegistrar:
    def __init__(self, store: Store, source: DigestSource):
        self.store = store
        self.source = source

    async def register(self, task: TaskSettings, source: str) -> DockerfileBases:
        """Analyse first, store after: a bad Dockerfile leaves the previous registration intact."""
        bases = await asyncio.to_thread(analyse_dockerfile_path, task.context / task.file,
                                        task.build_args, task.target)
        edges = [(str(b), DependencyKind.BUILDTIME) for b in bases.buildtime]
        if bases.runtime is not None:
            edges.insert(0, (str(bases.runtime), DependencyKind.RUNTIME))
        digests = dict(await asyncio.gather(
            *(self._current_digest(base, task.platform) for base, _ in edges)))
        await self.store.tasks.upsert(task, source)
        await self.store.graph.replace_dependencies(task.name, task.platform, edges, digests)
        return bases

    async def _current_digest(self, base: str, platform: str) -> tuple[str, str | None]:
        """The digest the task counts as built on, so the first patch already triggers."""
        watched = await self.store.graph.get_watched(base, platform)
        if watched is not None and watched.digest is not None:
            return base, watched.digest
        try:
            seen = await self.source.platform_digest(ImageReference.parse(base),
                                                     Platform.parse(platform))
        except BasewatchError as exc:
            log.warning("cannot read the digest of %s yet: %s", base, exc)
            return base, None
        return base, seen.digest
