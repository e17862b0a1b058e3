"""What a run will do: its task, its context checked out, the bases each platform is built on,
its tags and build args rendered with the run's variables, as a run plan of steps."""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

from basewatch.builder.backend import RunLogSink
from basewatch.builder.contexts.checkout import (
    Checkouts,
    check_api_folder,
    dockerfile_in,
    read_dockerfile,
)
from basewatch.builder.contexts.task_files import (
    TaskFileInputs,
    read_for_registration,
    load_from_context,
    read_task_file,
    with_pinned,
)
from basewatch.builder.quick_runs import QuickRuns
from basewatch.builder.run_secrets import RunSecrets
from basewatch.context_spec import COMMIT, parse_context
from basewatch.dockerfile.analysis import analyse_for_platforms
from basewatch.errors import BasewatchError
from basewatch.models import Run
from basewatch.oci.image_index import platform_tag
from basewatch.oci.platforms import Platform
from basewatch.oci.reference import ImageReference
from basewatch.run_plan import BuildStep, IndexStep, PushStep, RunPlan, Step
from basewatch.store import Store
from basewatch.tasks import Task
from basewatch.templating import RunVariables, render

ContextChangedHook = Callable[[Task, Path], Awaitable[None]]
RevisionHook = Callable[[Run, str], Awaitable[None]]


class RunPlanner:
    def __init__(self, store: Store, checkouts: Checkouts, quick_runs: QuickRuns,
                 run_registry: str | None = None,
                 on_context_changed: ContextChangedHook | None = None,
                 on_revision: RevisionHook | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
                 image_aliases: dict[str, str] | None = None,
                 secrets: RunSecrets | None = None):
        self.store = store
        self.image_aliases = dict(image_aliases or {})  # the config's `aliases:`
        self.secrets = secrets if secrets is not None else RunSecrets()
        self.checkouts = checkouts
        self.quick_runs = quick_runs
        self.run_registry = run_registry
        self.on_context_changed = on_context_changed
        self.on_revision = on_revision  # the commit statuses: a run's commit is known now
        self.clock = clock

    async def task_of(self, run: Run) -> Task:
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

    @asynccontextmanager
    async def plan(self, run: Run, task: Task, run_log: RunLogSink
                   ) -> AsyncIterator[RunPlan]:
        """The run's plan, on its context checked out for as long as the plan is used."""
        # A commit or pull-request run builds the commit that fired it, whatever its branch
        # points at by now.
        async with self.checkouts.for_run(task.context, run.id, run_log.line,
                                          run.source_commit) as checkout:
            if checkout.revision is not None:
                await self.store.runs.record_git_revision(run.id, checkout.revision)
                if self.on_revision is not None:
                    await self.on_revision(run, checkout.revision)
            if task.runs_task_file or self.quick_runs.task_file_of(run) is not None:
                yield await self._task_file_plan(run, task, checkout.folder,
                                                 checkout.revision, run_log)
                return
            bases = await self._bases_of(run, task, checkout.folder)
            pinned = await self._pinned(run, bases, run_log)
            yield dockerfile_plan(run, task, checkout.folder, bases,
                                  self.variables(run, task, checkout.revision), pinned)

    async def _task_file_plan(self, run: Run, task: Task, context: Path,
                              revision: str | None, run_log: RunLogSink) -> RunPlan:
        """A task file's plan: read (from the context, or a quick run's own text), rendered
        with the run's variables, values and secrets, each build given its Dockerfile's bases.
        A file with an error fails the run here, before anything of it runs."""
        text = self.quick_runs.task_file_of(run)
        if text is None:
            text = await asyncio.to_thread(read_task_file, context, task.file)
        variables = replace(self.variables(run, task, revision), task_name=task.name)
        if (registry := self.quick_runs.registry_of(run)) is not None:
            variables = replace(variables, registry=registry)
        inputs = TaskFileInputs(variables, run.values, self.secrets.of(run), self.image_aliases)
        steps, workspace = await asyncio.to_thread(load_from_context, text, context, inputs,
                                                   task.file)
        if run.spec is None and not task.local_context:
            await self._follow_task_file(task, text, context)
        bases: dict[str, list[str]] = {}
        for step in steps:
            if isinstance(step.action, BuildStep):
                bases.setdefault(step.action.platform, []).extend(step.action.bases)
        for platform, digests in (await self._pinned(run, bases, run_log)).items():
            for reference, digest in digests.items():
                steps = with_pinned(steps, platform, reference, digest)
        images = list(dict.fromkeys(tag for step in steps if isinstance(step.action, BuildStep)
                                    for tag in step.action.tags))
        return RunPlan(run.id, task.name, context, images, list(steps), workspace)

    async def _follow_task_file(self, task: Task, text: str, context: Path) -> None:
        """A fetched task file (or a Dockerfile one of its builds reads) may name other bases,
        or push other images, than at registration: the task's registration follows it, read
        as registration reads it."""
        if self.on_context_changed is None:
            return
        try:
            found = await asyncio.to_thread(read_for_registration, text, context, task.file,
                                            self.run_registry, self.image_aliases,
                                            task.platforms[0])
        except BasewatchError:
            return  # read as a run reads it, it planned: the registration stays as it was
        now = {(str(base), platform) for platform, bases in found.builds
               for base in bases.images}
        recorded = {(d.base, d.platform) for d in await self.store.graph.dependencies(task.name)}
        published = (await self.store.graph.published()).get(task.name, set())
        if now != recorded or found.published != published:
            await self.on_context_changed(task, context)

    def variables(self, run: Run, task: Task | None = None, revision: str | None = None
                  ) -> RunVariables:
        """The run's variables: `Commit` and `Branch` are what fired a commit or pull-request
        run; another run of a git context has the commit it checked out and the context's
        branch (its #ref, unless that names a commit)."""
        first = Platform.parse(run.platform.split(",")[0])
        commit, branch = revision or "", ""
        if run.source_commit is not None:
            commit, branch = run.source_commit.commit, run.source_commit.branch or ""
        elif task is not None and (spec := parse_context(task.context)).kind == "git" \
                and spec.ref and not COMMIT.match(spec.ref):
            branch = spec.ref
        return RunVariables(id=run.id, date=self.clock(),
                            registry=run.registry or self.run_registry,
                            os=first.os, architecture=first.architecture, commit=commit,
                            branch=branch)

    async def _pinned(self, run: Run, bases: dict[str, list[str]], run_log: RunLogSink
                      ) -> dict[str, dict[str, str]]:
        """platform -> {base: digest} to build on: a base-image run builds on the digest
        that fired it, not on whatever the tag points to by the time it is pulled. When the
        watcher has seen the base move again since (the queued run took the newer change
        over, or the run was queued behind a settle window), it builds on the newest one
        the watcher saw, and says so."""
        change = run.base_change
        if change is None or change.reference not in bases.get(change.platform, ()):
            return {}
        digest = change.digest
        watched = await self.store.graph.get_watched(change.reference, change.platform)
        if watched is not None and watched.digest and watched.digest != digest:
            run_log.line(f"Base {change.reference} ({change.platform}) moved again since this "
                         f"run was queued, from {digest} to {watched.digest}: building on "
                         f"{watched.digest}")
            digest = watched.digest
        else:
            run_log.line(f"Building on {change.reference}@{digest} ({change.platform}), the "
                         "digest that triggered this run")
        return {change.platform: {change.reference: digest}}

    async def _bases_of(self, run: Run, task: Task, context: Path
                        ) -> dict[str, list[str]]:
        """The bases to pull for each platform built: what the Dockerfile names for it (a
        quick build of several platforms may name other bases per platform, through
        TARGETARCH). A registered task's recorded edges answer for a local folder; a fetched
        context may have changed since registration, so its task is registered again from it
        when its bases moved."""
        platforms = run.platform.split(",")
        if run.spec is None and task.local_context:
            # Checked for every run: the folder may have changed since registration (a fetched
            # context's Dockerfile is checked as it is read, below).
            await asyncio.to_thread(dockerfile_in, context, task.file)
            recorded = await self.store.graph.dependencies(task.name)
            return {platform: [d.base for d in recorded if d.platform == platform]
                    for platform in platforms}
        content = await asyncio.to_thread(read_dockerfile, context, task.file)
        analysed = await asyncio.to_thread(analyse_for_platforms, content, task.build_args,
                                           task.target, task.file, platforms)
        found = {platform: [str(ref) for ref in bases.images]
                 for platform, bases in analysed.items()}
        if run.spec is None and self.on_context_changed is not None:
            recorded = {(d.base, d.platform)
                        for d in await self.store.graph.dependencies(task.name)}
            if {(base, p) for p in platforms for base in found[p]} != recorded:
                await self.on_context_changed(task, context)
        return found


def dockerfile_plan(run: Run, task: Task, context: Path,
                    bases_by_platform: dict[str, list[str]], variables: RunVariables,
                    pinned: dict[str, dict[str, str]] | None = None) -> RunPlan:
    """A Dockerfile task's plan: one build per platform and its pushes. Several platforms are
    each pushed under a tag of their own, then put together as one index per tag."""
    platforms = run.platform.split(",")
    values = {k: v for k, v in run.values.items() if isinstance(v, str)}
    tags = [render(image, variables, values) for image in task.images]
    build_args = {k: render(v, variables, values) for k, v in task.build_args.items()}

    def build(platform: str, platform_tags: list[str]) -> BuildStep:
        return BuildStep(platform=platform, tags=platform_tags,
                         bases=bases_by_platform[platform], dockerfile=task.file,
                         build_args=build_args, target=task.target,
                         pinned=dict((pinned or {}).get(platform, {})))

    steps: list[Step] = []
    if len(platforms) == 1:
        steps.append(build(platforms[0], tags))
        steps += [PushStep(tag) for tag in tags if task.push]
        return RunPlan(run.id, task.name, context, tags, steps)
    # An index can only point at manifests in its own repository: one image per platform in
    # each repository the tags name.
    first_tags = {ImageReference.parse(tag).name: tag for tag in reversed(tags)}
    for platform in platforms:
        platform_tags = {name: platform_tag(tag, platform) for name, tag in first_tags.items()}
        steps.append(build(platform, list(platform_tags.values())))
        steps += [PushStep(tag, platform) for tag in platform_tags.values() if task.push]
    for tag in tags if task.push else ():
        name = ImageReference.parse(tag).name
        steps.append(IndexStep(tag, [(platform, platform_tag(first_tags[name], platform))
                                     for platform in platforms]))
    return RunPlan(run.id, task.name, context, tags, steps)
