"""Executes one queued run: build on the engine, push every tag, record what was built on what."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Awaitable, Callable

from basewatch.builder.base_leases import BaseLeases
from basewatch.builder.contexts.checkout import (Checkouts, check_api_folder, dockerfile_in,
                                                 read_dockerfile)
from basewatch.builder.docker_engine import engine_name
from basewatch.builder.engine import BuildRequest, Engine
from basewatch.oci.image_sources import ImageSources
from basewatch.oci.image_index import platform_tag, push_index
from basewatch.builder.quick_runs import QUICK_TASK_NAME, QuickRuns
from basewatch.builder.run_log import DEFAULT_MAX_LOG_BYTES, LogUpdates, RunLog, log_path
from basewatch.errors import BasewatchError, RegistryAddressRefused
from basewatch.metrics import Metrics
from basewatch.models import PushedImage, Run, RunStatus
from basewatch.oci.platforms import Platform
from basewatch.store import Store
from basewatch.tasks import Task
from basewatch.templating import RunVariables, render
from basewatch.watcher.digest_watch import DigestSource, PlatformDigestLike
from basewatch.dockerfile.analysis import analyse_dockerfile
from basewatch.oci.reference import ImageReference

log = logging.getLogger(__name__)

FinishedHook = Callable[[Run], Awaitable[None]]
ContextChangedHook = Callable[[Task, Path], Awaitable[None]]
UpstreamOf = Callable[[str], Awaitable[set[str]]]
# How often a run waiting on an upstream build asks again.
UPSTREAM_RECHECK_SECONDS = 0.5
# A run's error is one line: an unexpected exception's message is cut to this.
MAX_ERROR_CHARS = 500


def unexpected_error(exc: BaseException) -> str:
    """One line for the run's record; the traceback goes to the daemon's log only."""
    # An OSError's text names the daemon's own paths; its strerror says what went wrong.
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    text = " ".join(f"unexpected error: {type(exc).__name__}: {detail}".split())
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 1] + "…"


def _say(run_log: RunLog | None, text: str) -> None:
    """A last line in the run's log, when the log can still take it (a full disk cannot)."""
    if run_log is None:
        return
    try:
        run_log.line(text)
    except Exception as exc:
        log.warning("cannot write the last line of a run's log (%s: %s)", type(exc).__name__,
                    exc.strerror if isinstance(exc, OSError) else exc)


class RunExecutor:
    def __init__(self, store: Store, engine_factory: Callable[[], Engine], logs_dir: Path,
                 sources: ImageSources, digests: DigestSource, checkouts: Checkouts,
                 run_registry: str | None = None, threads: int = 8,
                 on_finished: FinishedHook | None = None, upstream_of: UpstreamOf | None = None,
                 metrics: Metrics | None = None,
                 on_context_changed: ContextChangedHook | None = None,
                 max_log_bytes: int = DEFAULT_MAX_LOG_BYTES):
        self.store = store
        self.engine_factory = engine_factory
        self.sources = sources
        self.digests = digests
        self.logs_dir = logs_dir
        self.run_registry = run_registry
        self.on_finished = on_finished
        self.on_context_changed = on_context_changed
        self.upstream_of = upstream_of
        self.metrics = metrics
        self._leases = BaseLeases()
        self._engines: dict[str, Engine] = {}  # runs in progress, for cancel()
        self._canceled: set[str] = set()
        self.quick_runs = QuickRuns(logs_dir.parent / "contexts")
        self.checkouts = checkouts
        self.log_updates = LogUpdates()
        self.max_log_bytes = max_log_bytes
        self._threads = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="engine")

    def close(self) -> None:
        # Builds still running in threads are cut short by cancel(); don't wait on them.
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def execute(self, run_id: str) -> float | None:
        """Run it; or, when it must wait, how many seconds until it should be asked again."""
        run = await self.store.runs.get(run_id)
        if run is None or run.status is not RunStatus.QUEUED:
            return None  # canceled or already handled while it waited
        if wait := await self._must_wait(run):
            return wait
        await self._execute(run)
        return None

    async def _must_wait(self, run: Run) -> float | None:
        now = datetime.now(timezone.utc)
        if run.not_before is not None and run.not_before > now:
            return (run.not_before - now).total_seconds()  # still settling
        if self.upstream_of is not None:
            # Built in topological order: not while a task it is built on is being rebuilt.
            upstream = await self.upstream_of(run.task)
            if upstream and upstream & await self.store.runs.pending_tasks():
                return UPSTREAM_RECHECK_SECONDS
        return None

    async def cancel(self, run_id: str) -> bool:
        """Cancel a queued or running run; False when it has already finished."""
        if await self.store.runs.cancel_queued(run_id, "canceled by request"):
            run = await self.store.runs.get(run_id)
            if run.spec is not None:
                self.quick_runs.clean_up(run)  # no run will need its upload now
            return True
        engine = self._engines.get(run_id)
        if engine is None:
            return False
        self._canceled.add(run_id)
        await asyncio.get_running_loop().run_in_executor(self._threads, engine.cancel)
        return True

    async def _task_of(self, run: Run) -> Task:
        """The task a run builds: a registered task, or a quick run's own spec."""
        if run.spec is not None:
            return self.quick_runs.task_of(run)
        found = await self.store.tasks.get_with_source(run.task)
        if found is None:
            raise BasewatchError(f"task {run.task} no longer exists")
        task, source = found
        if source == "api" and task.local_context:
            # Checked at creation too; this catches a task stored by an older version.
            await asyncio.to_thread(check_api_folder, task.context,
                                    self.checkouts.local_contexts_root)
        return task

    async def _bases_of(self, run: Run, task: Task, context: Path
                        ) -> dict[str, list[str]]:
        """The bases to pull for each platform built: what the Dockerfile names for it (a
        quick build of several platforms may name other bases per platform, through
        TARGETARCH). A registered task's recorded edges answer for a local folder; a fetched
        context may have changed since registration, so its task is registered again from it
        when its bases moved."""
        # Checked for every run: the folder may have changed since registration.
        await asyncio.to_thread(dockerfile_in, context, task.file)
        platforms = run.platform.split(",")
        if run.spec is None and task.local_context:
            recorded = await self.store.graph.dependencies(task.name)
            return {platform: [d.base for d in recorded if d.platform == platform]
                    for platform in platforms}
        content = await asyncio.to_thread(read_dockerfile, context, task.file)
        found = {}
        for platform in platforms:
            bases = await asyncio.to_thread(analyse_dockerfile, content, task.build_args,
                                            task.target, task.file, platform)
            found[platform] = [str(b) for b in (bases.runtime, *bases.buildtime)
                               if b is not None]
        if run.spec is None and self.on_context_changed is not None:
            recorded = {(d.base, d.platform)
                        for d in await self.store.graph.dependencies(task.name)}
            if {(base, p) for p in platforms for base in found[p]} != recorded:
                await self.on_context_changed(task, context)
        return found

    async def _execute(self, run: Run) -> None:
        # Raising here leaves the run Queued: the queue tries it again later.
        await self.store.runs.mark_started(run.id)
        run_log = None
        keep_upload = False
        # From here on, every way out records a final state: nothing is left Running.
        try:
            run_log = RunLog(log_path(self.logs_dir, run.id),
                             on_write=functools.partial(self.log_updates.changed, run.id),
                             max_bytes=self.max_log_bytes)
            task = await self._task_of(run)
            status, outputs, error = await self._fetch_build_and_push(run, task, run_log)
        except BasewatchError as exc:
            status, outputs, error = RunStatus.ERROR, [], str(exc)
            _say(run_log, f"Run ID: {run.id} errored: {error}")
        except asyncio.CancelledError:
            keep_upload = True  # the re-run builds it (a restart re-queues it if this fails)
            rerun = await asyncio.shield(self.store.runs.cancel_and_requeue(
                run, "the daemon shut down during the run"))
            keep_upload = rerun is not None
            _say(run_log, f"Run ID: {run.id} was canceled: the daemon is shutting down"
                 + (f"; it will run again as {rerun}" if rerun else ""))
            raise
        except Exception as exc:  # a bug, or an input nobody foresaw: the run still ends
            status, outputs, error = RunStatus.FAILED, [], unexpected_error(exc)
            log.exception("run %s (%s) failed on an unexpected error", run.id,
                          run.task or QUICK_TASK_NAME)
            _say(run_log, f"Run ID: {run.id} failed: {error}")
        finally:
            if run_log is not None:
                with contextlib.suppress(Exception):
                    run_log.close()
            self._engines.pop(run.id, None)
            if run.spec is not None and not keep_upload:
                self.quick_runs.clean_up(run)
        if run.id in self._canceled:
            self._canceled.discard(run.id)
            status, error = RunStatus.CANCELED, "canceled by request"
        await self.store.runs.finish(run.id, status, outputs, error)
        self.log_updates.changed(run.id)
        finished = await self.store.runs.get(run.id)
        if self.metrics is not None:
            self.metrics.runs.labels(run.trigger.value, status.value).inc()
            if finished.duration_seconds is not None:
                self.metrics.run_duration.labels(run.trigger.value).observe(
                    finished.duration_seconds)
        pushed = ", ".join(f"{o.image}@{o.digest}" for o in outputs)
        log.info("run %s (%s) %s%s", run.id, run.task or QUICK_TASK_NAME, status.value,
                 f": {error}" if error else (f": pushed {pushed}" if pushed else ""))
        if self.on_finished is not None:
            try:
                await self.on_finished(finished)
            except Exception:
                log.exception("run %s: what follows its end failed", run.id)

    async def _fetch_build_and_push(self, run: Run, task: Task, run_log: RunLog
                                    ) -> tuple[RunStatus, list[PushedImage], str | None]:
        """The whole run under its timeout: fetching its context counts too."""
        try:
            async with asyncio.timeout(task.timeout):
                async with self.checkouts.for_run(task.context, run.id,
                                                  run_log.line) as checkout:
                    if checkout.revision is not None:
                        await self.store.runs.record_git_revision(run.id, checkout.revision)
                    bases = await self._bases_of(run, task, checkout.folder)
                    return await self._build_and_push(run, task, checkout.folder, bases,
                                                      run_log)
        except TimeoutError:
            message = f"the run exceeded its timeout of {task.timeout:.0f}s"
            run_log.line(f"Run ID: {run.id} timed out: {message}")
            return RunStatus.TIMEOUT, [], message

    async def _build_and_push(self, run: Run, task: Task, context: Path,
                              bases_by_platform: dict[str, list[str]], run_log: RunLog
                              ) -> tuple[RunStatus, list[PushedImage], str | None]:
        platforms = run.platform.split(",")
        first = Platform.parse(platforms[0])
        variables = RunVariables(id=run.id, date=datetime.now(timezone.utc),
                                 registry=self.run_registry, os=first.os,
                                 architecture=first.architecture)
        tags = [render(image, variables, run.values) for image in task.images]
        build_args = {k: render(v, variables, run.values) for k, v in task.build_args.items()}
        engine = self._engines[run.id] = self.engine_factory()
        log.info("run %s (%s) started: building %s", run.id, task.name, ", ".join(tags))
        run_log.line(f"Run ID: {run.id} started: task {task.name}, trigger {run.trigger.value}"
                     + (f" ({run.reason})" if run.reason else ""))
        loop = asyncio.get_running_loop()

        async def in_thread(function, *args):
            future = loop.run_in_executor(self._threads, function, *args)
            try:
                return await asyncio.shield(future)
            except asyncio.CancelledError:
                engine.cancel()
                # Wait for the thread to notice, so nothing is left building behind our back.
                await asyncio.wait([future], timeout=10)
                if future.done() and not future.cancelled():
                    future.exception()  # retrieved: the cancellation is what gets reported
                raise

        async def build(platform: str, platform_tags: list[str]) -> dict[str, str]:
            """Pull the bases for `platform`, build, tag; the base digests built on."""
            bases = bases_by_platform[platform]
            request = BuildRequest(context=context, dockerfile=task.file, tags=platform_tags,
                                   platform=platform, build_args=build_args, target=task.target)
            # From the pulls to the end of the build, no other platform may re-pull these
            # bases: the engine keeps one local image per name.
            async with self._leases.hold(map(engine_name, bases), platform):
                built_on = {}
                for base in bases:
                    # Always checked against the registry, so a rebuild really uses the base's
                    # new digest; pulled unless the engine holds exactly that image already.
                    source = self.sources.pull_source(base)
                    run_log.line(f"Pulling {source} ({platform})")
                    seen = await self._registry_digest(base, platform)
                    pulled = await in_thread(
                        engine.pull, source, engine_name(base), platform,
                        self.sources.auth(base), run_log.write,
                        seen and (seen.index_digest or seen.digest))
                    built_on[base] = await self._platform_digest(base, pulled, seen, platform)
                await in_thread(engine.build, request, run_log.write)
            return built_on

        async def push(tag: str) -> str:
            run_log.line(f"Pushing {tag}")
            digest = await in_thread(engine.push, tag, self.sources.auth(tag), run_log.write)
            run_log.line(f"Pushed {tag}: digest: {digest}")
            return digest

        started = loop.time()
        outputs = []
        try:
            for tag in tags if task.push else ():
                await self.digests.check_registry(ImageReference.parse(tag))
            if len(platforms) == 1:
                built_on = {platforms[0]: await build(platforms[0], tags)}
                await self.store.runs.record_base_digests(run.id, built_on[platforms[0]])
                if task.push:
                    outputs = [PushedImage(tag, await push(tag)) for tag in tags]
            else:
                built_on, outputs = await self._build_platforms(
                    run, task, tags, platforms, build, push, run_log)
        except BasewatchError as exc:
            if run.id in self._canceled:
                run_log.line(f"Run ID: {run.id} was canceled")
                return RunStatus.CANCELED, [], "canceled by request"
            run_log.line(f"Run ID: {run.id} failed: {exc}")
            return RunStatus.FAILED, [], str(exc)
        if run.spec is None:
            for platform, base_digests in built_on.items():
                await self.store.graph.record_build(task.name, platform, base_digests)
        run_log.line(f"Run ID: {run.id} was successful after {loop.time() - started:.0f}s")
        return RunStatus.SUCCEEDED, outputs, None

    async def _build_platforms(self, run: Run, task: Task, tags: list[str],
                               platforms: list[str], build, push, run_log: RunLog
                               ) -> tuple[dict[str, dict[str, str]], list[PushedImage]]:
        """Each platform built and pushed under a tag of its own, then one index per tag; the
        base digests built on, by platform."""
        base_digests: dict[str, str] = {}
        built_on: dict[str, dict[str, str]] = {}
        # An index can only point at manifests in its own repository: one image per platform
        # in each repository the tags name.
        first_tags = {ImageReference.parse(tag).name: tag for tag in reversed(tags)}
        images: dict[str, list[tuple[str, str]]] = {name: [] for name in first_tags}
        for platform in platforms:
            platform_tags = {name: platform_tag(tag, platform) for name, tag in first_tags.items()}
            built_on[platform] = await build(platform, list(platform_tags.values()))
            for base, digest in built_on[platform].items():
                base_digests[f"{base} ({platform})"] = digest
            for name, tag in platform_tags.items() if task.push else ():
                images[name].append((platform, await push(tag)))
        await self.store.runs.record_base_digests(run.id, base_digests)
        outputs = []
        for tag in tags if task.push else []:
            digest = await push_index(self.digests, tag, images[ImageReference.parse(tag).name])
            run_log.line(f"Pushed the index {tag} ({', '.join(platforms)}): digest: {digest}")
            outputs.append(PushedImage(tag, digest))
        return built_on, outputs

    async def _registry_digest(self, base: str, platform: str) -> PlatformDigestLike | None:
        """What the registry holds for `base` on `platform` now (index and platform digests)."""
        try:
            return await self.digests.platform_digest(ImageReference.parse(base),
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
            return (await self.digests.platform_digest(
                ImageReference(ref.registry, ref.repository, None, pulled),
                Platform.parse(platform))).digest
        except BasewatchError as exc:
            log.warning("cannot resolve %s@%s for %s: %s", base, pulled, platform, exc)
            return pulled
