"""A task file's plan carried out on one Docker Engine: the run's networks and volumes made,
its context copied into the workspace volume (through the engine's API, so a remote engine
works too), its steps taken as a graph (builds from the workspace as it is then, pushes,
containers), and everything it made removed at the end, whatever happened."""
from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import posixpath
import re
import secrets
import tarfile
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, IO

from basewatch.builder.backend import OutcomeHook, RunLogSink
from basewatch.builder.backends.docker.docker_engine import engine_name
from basewatch.builder.backends.docker.engine import ContainerSpec, Engine
from basewatch.builder.masking import MaskedLog, Secrets
from basewatch.builder.step_graph import (
    DETACHED,
    FAILED,
    MAX_PARALLEL_STEPS,
    Attempt,
    StepFailed,
    StepGraph,
    describe_failure,
)
from basewatch.builder.step_summary import action_of
from basewatch.errors import BasewatchError, EngineError
from basewatch.oci.reference import ImageReference
from basewatch.run_plan import (
    BuildOutcome,
    BuildStep,
    CmdStep,
    PushOutcome,
    RunPlan,
    TaskStep,
    TaskStepOutcome,
)

if TYPE_CHECKING:
    from basewatch.builder.backends.docker.backend import DockerBackend

log = logging.getLogger(__name__)

RUN_LABEL = "io.basewatch.run"
RUN_KEY_LABEL = "io.basewatch.run-key"
KEEP_LABEL = "io.basewatch.keep"
HOLDER_WORKSPACE = "/workspace"  # where the holder container mounts the workspace volume
NO_NETWORK = "none"


def engine_safe(name: str) -> str:
    """A piece of an engine object's name: Docker allows [a-zA-Z0-9][a-zA-Z0-9_.-]*."""
    return re.sub(r"[^a-zA-Z0-9_.-]", "_", name)


class TaskRun:
    """One task file's run. `cancel()` stops every step in progress; the run then raises."""

    def __init__(self, backend: DockerBackend, plan: RunPlan, run_log: RunLogSink,
                 report: OutcomeHook):
        assert plan.workspace is not None
        self.backend = backend
        self.plan = plan
        self.workspace = plan.workspace
        self.steps = [s for s in plan.steps if isinstance(s, TaskStep)]
        self.secrets = Secrets(self.workspace.secrets)
        self.log = MaskedLog(run_log, self.secrets)
        self._report = report
        # Setting up, tearing down and removing containers: never cut by a cancel.
        self.engine: Engine = backend.engine_factory()
        self._step_engines: set[Engine] = set()
        # A container's output holds a thread for as long as it runs, and cutting it short
        # takes another: room for every step that may run at once.
        self.threads = ThreadPoolExecutor(max_workers=2 * MAX_PARALLEL_STEPS + 4,
                                          thread_name_prefix=f"run-{plan.run_id}")
        # Run ids are a daemon's own: two daemons (or one whose database was reset) may share
        # an engine, so what a run makes there is named and found by a key of its own.
        key = f"{engine_safe(plan.run_id)}-{secrets.token_hex(3)}"
        self.prefix = f"bw-{key}"
        self.labels = {RUN_LABEL: plan.run_id, RUN_KEY_LABEL: key}
        self._own = {RUN_KEY_LABEL: key}
        self.networks: dict[str, str] = {}  # the task file's name -> the engine's
        self.made_networks: list[str] = []
        self.default_network: str | None = None
        self.workspace_volume = f"{self.prefix}-workspace"
        self.volumes: dict[str, str] = {}  # the task file's name -> the engine's
        self.made_volumes: list[str] = []
        self.holder: str | None = None
        self.detached: dict[str, tuple[str, bool]] = {}  # step id -> (container, keep)
        self._containers = 0
        self._work: asyncio.Task | None = None
        self._canceled = False

    async def in_thread(self, function, *args):
        future = asyncio.get_running_loop().run_in_executor(self.threads, function, *args)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            # What the thread makes meanwhile (a network, a volume) must exist before the
            # teardown looks for it.
            await asyncio.wait([future], timeout=30)
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: the cancellation is what gets reported
            raise

    # ---------------------------------------------------------------- the run

    async def run(self) -> None:
        try:
            # Refused before anything is made: what basewatch forbids, a graph that cannot run.
            self.check()
            graph = StepGraph(self.steps, self.take, self.report, self.log,
                              describe=self.describe)
            # One task for all the work, so that cancel() stops it wherever it is.
            self._work = asyncio.create_task(self._set_up_and_take(graph),
                                             name=f"{self.plan.run_id} steps")
            try:
                outcomes = await self._work
            finally:
                teardown = asyncio.ensure_future(self.tear_down())
                try:
                    await asyncio.shield(teardown)
                except asyncio.CancelledError:
                    # Cut short again (the daemon stopping): the engine is still cleaned up
                    # before the run lets go, so nothing of it is left running.
                    await asyncio.wait([teardown], timeout=60)
                    raise
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if self._canceled and not (current and current.cancelling()):
                raise EngineError("the run was canceled") from None
            raise
        finally:
            self.threads.shutdown(wait=False)
        failed = [o for o in outcomes if o.status == FAILED and not o.step.control.ignore_errors]
        if failed:
            raise EngineError(self.secrets.mask("; ".join(describe_failure(o) for o in failed)))

    async def _set_up_and_take(self, graph: StepGraph) -> list[TaskStepOutcome]:
        await self.set_up()
        return await graph.run()

    async def cancel(self) -> None:
        self._canceled = True
        if self._work is not None:
            self._work.cancel()
        for engine in list(self._step_engines):
            engine.cancel()  # cuts its streams: quick, and no thread is needed for it

    async def report(self, outcome: TaskStepOutcome) -> None:
        if outcome.error:
            outcome = dataclasses.replace(outcome, error=self.secrets.mask(outcome.error))
        await self._report(outcome)

    def describe(self, step: TaskStep) -> str:
        action = step.action
        text = action_of(step)
        if isinstance(action, CmdStep) and action.container.args:
            text += " " + " ".join(action.container.args)
        return self.secrets.mask(text)

    def check(self) -> None:
        """What the engine would do but basewatch must not, refused before anything runs."""
        known = {network.name for network in self.workspace.networks}
        for step in self.steps:
            if not isinstance(step.action, CmdStep):
                continue
            container, step_id = step.action.container, step.control.id
            if container.privileged and not self.backend.allow_privileged:
                raise EngineError(f"step {step_id}: privileged containers are refused "
                                  "(allow_privileged_steps: false); see docs/security.md")
            if container.engine_access and not self.backend.allow_engine_access:
                raise EngineError(f"step {step_id}: the `docker` alias hands the step the "
                                  "engine, which is root on the engine's host: refused "
                                  "(allow_engine_access: false); see docs/security.md")
            if container.network == "host":
                raise EngineError(f"step {step_id}: network host is refused: the step would "
                                  "reach every service on the engine host's loopback")
            if container.network not in (None, NO_NETWORK) and container.network not in known:
                raise EngineError(f"step {step_id}: network {container.network!r} is not one "
                                  "of the task file's networks")
            for mount in container.mounts:
                if mount.volume not in self.workspace.volumes:
                    raise EngineError(f"step {step_id}: volume {mount.volume!r} is not one "
                                      "of the task file's volumes")

    # ---------------------------------------------------------------- the workspace

    async def set_up(self) -> None:
        engine, labels = self.engine, self.labels
        for network in self.workspace.networks:
            if network.skip_creation:
                name = network.name
            else:
                name = f"{self.prefix}-{engine_safe(network.name)}"
                # Listed first: a cancel may come while the engine makes it.
                self.made_networks.append(name)
                await self.in_thread(engine.create_network, name, network.driver,
                                     network.ipv6, labels)
            self.networks[network.name] = name
        defaults = [n.name for n in self.workspace.networks if n.is_default] \
            or [n.name for n in self.workspace.networks]
        self.default_network = self.networks[defaults[0]] if defaults else None
        self.made_volumes.append(self.workspace_volume)
        await self.in_thread(engine.create_volume, self.workspace_volume, labels)
        mounts = [(self.workspace_volume, HOLDER_WORKSPACE)]
        for name in self.workspace.volumes:
            volume = self.volumes[name] = f"{self.prefix}-volume-{engine_safe(name)}"
            self.made_volumes.append(volume)
            await self.in_thread(engine.create_volume, volume, labels)
            mounts.append((volume, f"/volumes/{engine_safe(name)}"))
        self.holder = await self.in_thread(engine.create_holder, f"{self.prefix}-holder",
                                           tuple(mounts), labels)
        with tempfile.TemporaryFile() as archive:
            await self.in_thread(_pack_folder, self.plan.context, archive)
            await self.in_thread(engine.put_files, self.holder, HOLDER_WORKSPACE, archive)
        for name, files in self.workspace.volumes.items():
            archive = io.BytesIO(_pack_files(name, files))
            await self.in_thread(engine.put_files, self.holder,
                                 f"/volumes/{engine_safe(name)}", archive)
        self.log.line(f"Workspace: {self.workspace.working_directory} (volume "
                      f"{self.workspace_volume}); networks: "
                      + (", ".join(f"{n} ({e})" for n, e in self.networks.items()) or "none"))

    async def tear_down(self) -> None:
        """Detached containers stopped and removed (unless kept), with their output logged;
        then every container, network and volume of the run's. Each removal on its own: one
        that fails is logged and the others still happen."""
        engine = self.engine

        async def attempt(what: str, function, *args):
            try:
                return await self.in_thread(function, *args)
            except BasewatchError as exc:
                self.log.line(f"Could not remove {what}: {exc}")
                log.warning("run %s: could not remove %s: %s", self.plan.run_id, what, exc)
                return None

        for step_id, (container, keep) in self.detached.items():
            output = await attempt(f"the output of {step_id}", engine.container_output,
                                   container)
            if output:
                step_log = self.log.step(step_id)
                step_log.write(output)
                step_log.flush()
            if keep:
                self.log.line(f"Step {step_id}: its container {container[:12]} is kept "
                              "running (keep)")
        kept = []
        for container, labels in await attempt("the run's containers", engine.containers,
                                               self._own) or ():
            if labels.get(KEEP_LABEL) == "1":
                kept.append(container)
            else:
                await attempt(f"the container {container[:12]}", engine.remove_container,
                              container)
        for container in kept:  # its networks go; it keeps running without them
            for network in self.made_networks:
                await attempt(f"{container[:12]} from {network}", engine.disconnect, network,
                              container)
        for network in self.made_networks:
            await attempt(f"the network {network}", engine.remove_network, network)
        for volume in self.made_volumes:
            if kept:
                # A kept container still holds the run's volumes: they stay with it.
                self.log.line(f"The volume {volume} stays: a kept container uses it")
                continue
            await attempt(f"the volume {volume}", engine.remove_volume, volume)

    # ---------------------------------------------------------------- the steps

    async def take(self, step: TaskStep) -> Attempt:
        engine = self.backend.engine_factory()
        self._step_engines.add(engine)
        step_log = self.log.step(step.control.id)
        try:
            action = step.action
            if isinstance(action, CmdStep):
                return await self.run_container(step, engine, step_log)
            session = self.backend.session(engine, self.plan, step_log, self.threads)
            if isinstance(action, BuildStep):
                return Attempt(outcomes=(await self.build(session, action),))
            return Attempt(outcomes=tuple([PushOutcome(push, await session.push(push.tag))
                                           for push in action]))
        finally:
            step_log.flush()
            self._step_engines.discard(engine)

    async def build(self, session, step: BuildStep) -> BuildOutcome:
        """Built from the workspace as the steps before left it."""
        context = posixpath.normpath(posixpath.join(HOLDER_WORKSPACE, step.context or "."))
        if context != HOLDER_WORKSPACE and not context.startswith(HOLDER_WORKSPACE + "/"):
            raise StepFailed(f"the build context {step.context!r} is outside the workspace")
        with tempfile.TemporaryFile() as archive:
            await self.in_thread(self.engine.get_files, self.holder, context, archive)
            archive.seek(0)
            return BuildOutcome(step, await session.build(step, archive))

    async def run_container(self, step: TaskStep, engine: Engine,
                            step_log: MaskedLog) -> Attempt:
        container = step.action.container
        image = engine_name(container.image)
        if container.pull or not await self.in_thread(self.engine.has_image, image):
            await self.pull(container.image, image, engine, step_log)
        spec = self.spec(step)
        if container.detach:
            created = await self.in_thread(engine.start_container, spec)
            self.detached[step.control.id] = (created, container.keep)
            return Attempt(DETACHED)
        ids: list[str] = []
        future = asyncio.get_running_loop().run_in_executor(
            self.threads, engine.run_container, spec, step_log.write, ids.append)
        try:
            code = await asyncio.shield(future)
        finally:
            await asyncio.shield(asyncio.ensure_future(self._remove(ids, future)))
        if code != 0:
            raise StepFailed(f"the container exited with code {code}", code)
        return Attempt(exit_code=code)

    async def _remove(self, ids: list[str], future: asyncio.Future) -> None:
        """The container removed; when it still runs (a timeout, a cancel), killed, which
        ends its output stream and frees the thread following it."""
        for _ in range(2):
            if ids:
                try:
                    await self.in_thread(self.engine.remove_container, ids[0])
                except BasewatchError as exc:
                    self.log.line(f"Could not remove the container {ids[0][:12]}: {exc}")
            if future.done():
                break
            await asyncio.wait([future], timeout=10)  # created meanwhile: removed next round
        if future.done() and not future.cancelled():
            future.exception()  # retrieved: what the step reports is its timeout or cancel

    async def pull(self, reference: str, name: str, engine: Engine,
                   step_log: MaskedLog) -> None:
        sources = self.backend.sources
        # The engine resolves names itself and follows no rule of ours.
        await self.backend.registry.check_registry(ImageReference.parse(reference))
        source = sources.pull_source(reference)
        step_log.line(f"Pulling {source}")
        await self.in_thread(engine.pull, source, name, None, sources.auth(reference),
                             step_log.write)

    def spec(self, step: TaskStep) -> ContainerSpec:
        container, step_id = step.action.container, step.control.id
        workspace = self.workspace.working_directory
        if container.disable_working_directory_override:
            working_dir = container.working_directory
        else:
            working_dir = posixpath.join(workspace, container.working_directory or "")
            working_dir = posixpath.normpath(working_dir)
        if container.network == NO_NETWORK:
            network = None
        elif container.network is not None:
            network = self.networks[container.network]
        else:
            network = self.default_network
        self._containers += 1
        labels = dict(self.labels)
        if container.detach and container.keep:
            labels[KEEP_LABEL] = "1"
        return ContainerSpec(
            name=f"{self.prefix}-{engine_safe(step_id)}-{self._containers}",
            image=engine_name(container.image), command=container.args,
            entrypoint=container.entrypoint, env=container.env, working_dir=working_dir,
            user=container.user, network=network,
            aliases=(step_id,) if network else (), ports=container.ports,
            expose=container.expose, privileged=container.privileged,
            mounts=((self.workspace_volume, workspace),
                    *((self.volumes[m.volume], m.path) for m in container.mounts)),
            engine_access=container.engine_access, labels=labels)


def _pack_folder(folder: Path, into: IO[bytes]) -> None:
    """The context as a tar, owned by root in the workspace (nothing of this host's users)."""
    def owned_by_root(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    with tarfile.open(fileobj=into, mode="w") as archive:
        if folder.is_dir():
            for entry in sorted(folder.iterdir()):
                archive.add(entry, arcname=entry.name, filter=owned_by_root)
    into.seek(0)


def _pack_files(volume: str, files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, content in sorted(files.items()):
            path = posixpath.normpath(name)
            if path.startswith(("/", "..")) or path == ".":
                raise EngineError(f"volume {volume}: {name!r} is not a file name inside it")
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(content), 0o444
            archive.addfile(info, io.BytesIO(content))
    buffer.seek(0)
    return buffer.getvalue()
