"""A run plan carried out on one Docker Engine: pull every base (checked against the registry),
build, push every tag, put multi-platform indexes together through the registry API. A task
file's plan goes to task_run.py, which takes its builds and pushes through the same session."""
from __future__ import annotations

import asyncio
import contextvars
import logging
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import IO, Callable

from basewatch.builder.backend import OutcomeHook, RunLogSink
from basewatch.builder.backends.docker.base_leases import BaseLeases
from basewatch.builder.backends.docker.docker_engine import engine_name
from basewatch.builder.backends.docker.engine import BuildRequest, Engine
from basewatch.builder.backends.docker.task_run import TaskRun
from basewatch.errors import BasewatchError, RegistryAddressRefused
from basewatch.oci.image_index import push_index
from basewatch.oci.image_sources import ImageSources
from basewatch.oci.platforms import Platform
from basewatch.oci.reference import ImageReference
from basewatch.oci.registry import RegistryClient
from basewatch.run_plan import (
    BuildOutcome,
    BuildStep,
    IndexOutcome,
    IndexStep,
    PushOutcome,
    PushStep,
    RunPlan,
    TaskStep,
)
from basewatch.watcher.digest_watch import PlatformDigestLike

log = logging.getLogger(__name__)


class DockerBackend:
    """One engine session per run, so cancel() can cut its build or push short. Blocking
    engine calls run in threads of its own; the loop never blocks."""

    def __init__(self, engine_factory: Callable[[], Engine], sources: ImageSources,
                 registry: RegistryClient, threads: int = 8, allow_privileged: bool = False,
                 allow_engine_access: bool = False):
        self.engine_factory = engine_factory
        self.allow_privileged = allow_privileged  # a task file's privileged containers
        self.allow_engine_access = allow_engine_access  # a task file's `docker` steps
        self.sources = sources
        self.registry = registry  # platform digests, address checks, index pushes
        self._leases = BaseLeases()
        self._engines: dict[str, Engine] = {}  # runs in progress, for cancel()
        self._task_runs: dict[str, TaskRun] = {}  # task files' runs in progress
        self._threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="engine")

    def close(self) -> None:
        # Builds still running in threads are cut short by cancel(); don't wait on them.
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def cancel(self, run_id: str) -> bool:
        if (task_run := self._task_runs.get(run_id)) is not None:
            await task_run.cancel()
            return True
        engine = self._engines.get(run_id)
        if engine is None:
            return False
        await asyncio.get_running_loop().run_in_executor(self._threads, engine.cancel)
        return True

    def session(self, engine: Engine, plan: RunPlan, run_log: RunLogSink,
                threads: Executor | None = None) -> "_Session":
        """Builds and pushes on `engine` (a task file's run has one per step)."""
        return _Session(self, engine, plan, run_log, threads or self._threads)

    async def run(self, plan: RunPlan, run_log: RunLogSink, report: OutcomeHook) -> None:
        # Refused before anything is built: the engine resolves names itself and follows no
        # rule of ours.
        for tag in _pushed_tags(plan):
            await self.registry.check_registry(ImageReference.parse(tag))
        if plan.workspace is not None:
            task_run = self._task_runs[plan.run_id] = TaskRun(self, plan, run_log, report)
            try:
                await task_run.run()
            finally:
                self._task_runs.pop(plan.run_id, None)
            return
        engine = self._engines[plan.run_id] = self.engine_factory()
        session = self.session(engine, plan, run_log)
        try:
            for step in plan.steps:
                await report(await session.take(step))
        finally:
            self._engines.pop(plan.run_id, None)


def _pushed_tags(plan: RunPlan) -> list[str]:
    """The tags pushed to a registry of their own name (a platform's image goes where its
    index goes)."""
    tags = []
    for step in plan.steps:
        if isinstance(step, IndexStep) or isinstance(step, PushStep) and step.platform is None:
            tags.append(step.tag)
        elif isinstance(step, TaskStep) and isinstance(step.action, tuple):
            tags.extend(push.tag for push in step.action)
    return tags


class _Session:
    """One run's steps on its engine."""

    def __init__(self, backend: DockerBackend, engine: Engine, plan: RunPlan,
                 run_log: RunLogSink, threads: Executor):
        self.backend = backend
        self.threads = threads
        self.engine = engine
        self.plan = plan
        self.run_log = run_log
        self.pushed: dict[str, str] = {}  # tag -> digest, for the indexes

    async def take(self, step):
        if isinstance(step, BuildStep):
            return BuildOutcome(step, await self.build(step))
        if isinstance(step, PushStep):
            return PushOutcome(step, await self.push(step.tag))
        if isinstance(step, IndexStep):
            return IndexOutcome(step, await self.push_index(step))
        raise BasewatchError(f"the Docker backend cannot take a step of kind "
                             f"{type(step).__name__}")

    async def in_thread(self, function, *args):
        # In the run's context, as asyncio.to_thread would: the engine's and the docker SDK's
        # log lines carry the run's id.
        future = asyncio.get_running_loop().run_in_executor(
            self.threads, contextvars.copy_context().run, function, *args)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            self.engine.cancel()
            # Wait for the thread to notice, so nothing is left building behind our back.
            await asyncio.wait([future], timeout=10)
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: the cancellation is what gets reported
            raise

    async def build(self, step: BuildStep, archive: IO[bytes] | None = None
                    ) -> dict[str, str]:
        """Pull the step's bases for its platform, build (from the plan's context, or from
        `archive`, a tar of it), tag; the base digests built on."""
        sources, run_log, platform = self.backend.sources, self.run_log, step.platform
        request = BuildRequest(context=self.plan.context, dockerfile=step.dockerfile,
                               tags=step.tags, platform=platform, build_args=step.build_args,
                               target=step.target, no_cache=step.no_cache, archive=archive)
        # From the pulls to the end of the build, no other platform may re-pull these bases:
        # the engine keeps one local image per name.
        async with self.backend._leases.hold(map(engine_name, step.bases), platform):
            built_on = {}
            for base in step.bases:
                if base in step.pinned:
                    built_on[base] = await self._pull_pinned(base, step.pinned[base], platform)
                    continue
                # Always checked against the registry, so a rebuild really uses the base's new
                # digest; pulled unless the engine holds exactly that image already.
                source = sources.pull_source(base)
                run_log.line(f"Pulling {source} ({platform})")
                seen = await self._registry_digest(base, platform)
                pulled = await self.in_thread(
                    self.engine.pull, source, engine_name(base), platform, sources.auth(base),
                    run_log.write, seen and (seen.index_digest or seen.digest))
                built_on[base] = await self._platform_digest(base, pulled, seen, platform)
            await self.in_thread(self.engine.build, request, run_log.write)
        return built_on

    async def _pull_pinned(self, base: str, digest: str, platform: str) -> str:
        """Pull `base` at `digest` (no question to the registry about its tag) and name it as
        the Dockerfile does; the digest built on."""
        ref = ImageReference.parse(base)
        await self.backend.registry.check_registry(ref)  # the engine follows no rule of ours
        sources = self.backend.sources
        source = sources.pull_source(str(ImageReference(ref.registry, ref.repository, None,
                                                        digest)))
        self.run_log.line(f"Pulling {source} ({platform})")
        await self.in_thread(self.engine.pull, source, engine_name(base), platform,
                             sources.auth(base), self.run_log.write, digest)
        return digest

    async def push(self, tag: str) -> str:
        self.run_log.line(f"Pushing {tag}")
        digest = await self.in_thread(self.engine.push, tag, self.backend.sources.auth(tag),
                                      self.run_log.write)
        self.run_log.line(f"Pushed {tag}: digest: {digest}")
        self.pushed[tag] = digest
        return digest

    async def push_index(self, step: IndexStep) -> str:
        images = [(platform, self.pushed[tag]) for platform, tag in step.images]
        digest = await push_index(self.backend.registry, step.tag, images)
        self.run_log.line(f"Pushed the index {step.tag} "
                          f"({', '.join(platform for platform, _ in step.images)}): "
                          f"digest: {digest}")
        return digest

    async def _registry_digest(self, base: str, platform: str) -> PlatformDigestLike | None:
        """What the registry holds for `base` on `platform` now (index and platform digests)."""
        try:
            return await self.backend.registry.platform_digest(ImageReference.parse(base),
                                                               Platform.parse(platform))
        except RegistryAddressRefused:
            raise  # nor may the engine pull from it
        except BasewatchError:
            return None  # the engine's own pull will say what is wrong

    async def _platform_digest(self, base: str, pulled: str, seen: PlatformDigestLike | None,
                               platform: str) -> str:
        """The engine reports an index digest for a multi-arch base; the watcher compares
        platform digests, so that is what a run records."""
        if seen is not None and pulled in (seen.index_digest, seen.digest):
            return seen.digest
        # The tag moved between the look and the pull: ask the registry by digest (immutable,
        # so cached).
        ref = ImageReference.parse(base)
        try:
            return (await self.backend.registry.platform_digest(
                ImageReference(ref.registry, ref.repository, None, pulled),
                Platform.parse(platform))).digest
        except BasewatchError as exc:
            log.warning("cannot resolve %s@%s for %s: %s", base, pulled, platform, exc)
            return pulled
