"""Executes one queued run: claims it, waits for its upstream runs, has it planned and its plan
carried out by the backend under its timeout, and records how it ended, whatever happens."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Awaitable, Callable

from structlog.contextvars import bound_contextvars

from basewatch.builder.backend import Backend
from basewatch.builder.planner import RunPlanner
from basewatch.builder.quick_runs import QUICK_TASK_NAME
from basewatch.builder.step_summary import step_record, summary
from basewatch.builder.run_log import (
    DEFAULT_MAX_LOG_BYTES,
    LogUpdates,
    RunLog,
    log_path,
)
from basewatch.errors import BasewatchError, EngineLost
from basewatch.metrics import Metrics
from basewatch.models import PushedImage, Run, RunStatus
from basewatch.run_plan import (
    BuildOutcome,
    BuildStep,
    IndexOutcome,
    PushOutcome,
    PushStep,
    RunPlan,
    StepOutcome,
    TaskStep,
    TaskStepOutcome,
)
from basewatch.store import Store
from basewatch.tasks import Task

log = logging.getLogger(__name__)

FinishedHook = Callable[[Run], Awaitable[None]]
StartedHook = Callable[[Run], Awaitable[None]]
UpstreamOf = Callable[[str], Awaitable[set[str]]]
# How often a run waiting on an upstream build asks again.
UPSTREAM_RECHECK_SECONDS = 0.5
# How often a run that no build engine has room for asks again (holding no worker meanwhile,
# so a run another engine could take is not kept waiting behind it).
ENGINE_RECHECK_SECONDS = 1.0
# Whether the backend has room for a run of these platforms (a comma list) now.
HasRoom = Callable[[str], bool]
# A run's error is one line: an unexpected exception's message is cut to this.
MAX_ERROR_CHARS = 500


def unexpected_error(exc: BaseException) -> str:
    """One line for the run's record; the traceback goes to the daemon's log only."""
    # An OSError's text names the daemon's own paths; its strerror says what went wrong.
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    text = " ".join(f"unexpected error: {type(exc).__name__}: {detail}".split())
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 1] + "…"


def _log_context(run: Run) -> dict[str, str]:
    """The task a run builds and, for a base-image run, the base change that fired it."""
    context = {"task": run.task or QUICK_TASK_NAME}
    if run.base_change is not None:
        context.update(base=run.base_change.reference, platform=run.base_change.platform,
                       digest=run.base_change.digest)
    return context


def _say(run_log: RunLog | None, text: str) -> None:
    """A last line in the run's log, when the log can still take it (a full disk cannot)."""
    if run_log is None:
        return
    try:
        run_log.line(text)
    except Exception as exc:
        log.warning("cannot write the last line of a run's log (%s: %s)", type(exc).__name__,
                    exc.strerror if isinstance(exc, OSError) else exc)


class _Results:
    """What a run's steps reported, recorded as they come: the bases once every platform is
    built (and, for several platforms, pushed under its own tag), the images pushed (a
    multi-platform tag by its index)."""

    def __init__(self, store: Store, plan: RunPlan):
        self.store = store
        self.plan = plan
        task_builds = {s.action.platform for s in plan.steps
                       if isinstance(s, TaskStep) and isinstance(s.action, BuildStep)}
        self.several = len(set(plan.platforms) | task_builds) > 1
        platform_steps = [s for s in plan.steps if isinstance(s, BuildStep)
                          or isinstance(s, PushStep) and s.platform is not None]
        self.bases_known_after = platform_steps[-1] if platform_steps else None
        self.base_digests: dict[str, str] = {}
        self.built_on: dict[str, dict[str, str]] = {}  # by platform, for the graph
        self.outputs: list[PushedImage] = []
        self.steps: dict[str, TaskStepOutcome] = {}  # a task file's, by id, as they end
        self.positions = {s.control.id: n for n, s in enumerate(plan.steps)
                          if isinstance(s, TaskStep)}
        self.started = asyncio.get_running_loop().time()
        if plan.workspace is not None:
            # Its bases are known once the run ends: a step may build at any time.
            self.bases_known_after = None

    async def report(self, outcome: StepOutcome) -> None:
        if isinstance(outcome, TaskStepOutcome):
            # A task file's step: what it built and pushed counts as a Dockerfile task's does.
            self.steps[outcome.step.control.id] = outcome
            # Kept as they end, so a run that dies half-way still shows the steps it did.
            ended_after = asyncio.get_running_loop().time() - self.started
            await self.store.runs.record_step(
                self.plan.run_id, self.positions.get(outcome.step.control.id, len(self.positions)),
                step_record(outcome, None if outcome.status == "Skipped"
                            else ended_after - outcome.seconds, self.plan.workspace.secrets
                            if self.plan.workspace is not None else ()))
            for inner in outcome.outcomes:
                await self.report(inner)
            return
        if isinstance(outcome, BuildOutcome):
            # A task file may build several images for one platform: their bases together.
            self.built_on.setdefault(outcome.step.platform, {}).update(outcome.base_digests)
            for base, digest in outcome.base_digests.items():
                key = f"{base} ({outcome.step.platform})" if self.several else base
                self.base_digests[key] = digest
        elif isinstance(outcome, PushOutcome) and outcome.step.platform is None:
            self.outputs.append(PushedImage(outcome.step.tag, outcome.digest))
        elif isinstance(outcome, IndexOutcome):
            self.outputs.append(PushedImage(outcome.step.tag, outcome.digest))
        if outcome.step is self.bases_known_after:
            await self.store.runs.record_base_digests(self.plan.run_id, self.base_digests)


class RunExecutor:
    def __init__(self, store: Store, planner: RunPlanner, backend: Backend, logs_dir: Path,
                 on_finished: FinishedHook | None = None, upstream_of: UpstreamOf | None = None,
                 metrics: Metrics | None = None, max_log_bytes: int = DEFAULT_MAX_LOG_BYTES,
                 on_started: StartedHook | None = None,
                 requeue: Callable[[str], None] | None = None,
                 has_room: HasRoom | None = None, daemon_id: str | None = None):
        self.store = store
        self.daemon_id = daemon_id  # recorded as the run's claimant
        self.has_room = has_room
        self.requeue = requeue  # hands a re-run the store queued to the run queue
        self.on_started = on_started
        self.planner = planner
        self.backend = backend
        self.logs_dir = logs_dir
        self.on_finished = on_finished
        self.upstream_of = upstream_of
        self.metrics = metrics
        self._canceled: set[str] = set()
        self.quick_runs = planner.quick_runs
        self.log_updates = LogUpdates()
        self.max_log_bytes = max_log_bytes

    def close(self) -> None:
        self.backend.close()

    async def execute(self, run_id: str) -> float | None:
        """Run it; or, when it must wait, how many seconds until it should be asked again."""
        # Every line logged for this run, by basewatch or a library, in this task or the
        # tasks and threads it starts, carries which run it is about.
        with bound_contextvars(run_id=run_id):
            run = await self.store.runs.get(run_id)
            if run is None or run.status is not RunStatus.QUEUED:
                return None  # canceled or already handled while it waited
            with bound_contextvars(**_log_context(run)):
                if wait := await self._must_wait(run):
                    return wait
                await self._execute(run)
        return None

    async def _must_wait(self, run: Run) -> float | None:
        now = datetime.now(timezone.utc)
        if run.not_before is not None and run.not_before > now:
            return (run.not_before - now).total_seconds()  # still settling
        if self.has_room is not None and not self.has_room(run.platform):
            return ENGINE_RECHECK_SECONDS  # every engine that builds its platforms is busy
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
        self._canceled.add(run_id)
        if await self.backend.cancel(run_id):
            return True
        self._canceled.discard(run_id)
        return False

    async def _execute(self, run: Run) -> None:
        # Raising here leaves the run Queued: the queue tries it again later.
        if not await self.store.runs.mark_started(run.id, self.daemon_id):
            return  # another daemon claimed it first, or it was canceled meanwhile
        await self._call(self.on_started, run, "what follows its start")
        run_log = None
        keep_upload = False
        lost: EngineLost | None = None
        # From here on, every way out records a final state: nothing is left Running.
        try:
            run_log = RunLog(log_path(self.logs_dir, run.id),
                             on_write=functools.partial(self.log_updates.changed, run.id),
                             max_bytes=self.max_log_bytes)
            task = await self.planner.task_of(run)
            status, outputs, error = await self._plan_and_run(run, task, run_log)
        except EngineLost as exc:
            # No fault of the run's: queued again once, as a run the daemon's stop cut short.
            lost, keep_upload = exc, run.retry_of is None
            status, outputs, error = RunStatus.FAILED, [], str(exc)
            _say(run_log, f"Run ID: {run.id} failed: {error}; "
                 + ("it is queued again" if run.retry_of is None
                    else "it was a re-run already, so it is not queued again"))
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
            if run.spec is not None and not keep_upload:
                self.quick_runs.clean_up(run)
        if run.id in self._canceled:
            self._canceled.discard(run.id)
            if lost is not None and run.spec is not None:
                self.quick_runs.clean_up(run)  # kept for a re-run that is not coming now
            status, error, lost = RunStatus.CANCELED, "canceled by request", None
        if lost is not None:
            rerun = await self.store.runs.finish_and_requeue(
                run, status, outputs, error, f"its build engine {lost.engine} going down")
            if rerun is not None:
                log.warning("run %s: its build engine %s went down; re-queued as %s", run.id,
                            lost.engine, rerun)
                if self.requeue is not None:
                    self.requeue(rerun)
            elif run.spec is not None:
                self.quick_runs.clean_up(run)
        else:
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
        await self._call(self.on_finished, finished, "what follows its end")

    @staticmethod
    async def _call(hook, run: Run, what: str) -> None:
        """A hook's failure is logged: it never changes how the run goes or ends."""
        if hook is not None:
            try:
                await hook(run)
            except Exception:
                log.exception("run %s: %s failed", run.id, what)

    async def _plan_and_run(self, run: Run, task: Task, run_log: RunLog
                            ) -> tuple[RunStatus, list[PushedImage], str | None]:
        """The whole run under its timeout: fetching its context counts too."""
        try:
            async with asyncio.timeout(task.timeout):
                async with self.planner.plan(run, task, run_log) as plan:
                    return await self._carry_out(run, plan, run_log)
        except TimeoutError:
            message = f"the run exceeded its timeout of {task.timeout:.0f}s"
            run_log.line(f"Run ID: {run.id} timed out: {message}")
            return RunStatus.TIMEOUT, [], message

    async def _carry_out(self, run: Run, plan: RunPlan, run_log: RunLog
                         ) -> tuple[RunStatus, list[PushedImage], str | None]:
        if plan.workspace is not None:
            log.info("run %s (%s) started: %d steps", run.id, plan.task, len(plan.steps))
        else:
            log.info("run %s (%s) started: building %s", run.id, plan.task,
                     ", ".join(plan.images))
        run_log.line(f"Run ID: {run.id} started: task {plan.task}, trigger {run.trigger.value}"
                     + (f" ({run.reason})" if run.reason else ""))
        started = asyncio.get_running_loop().time()
        results = _Results(self.store, plan)
        # A task file's run may have pushed images before a step failed: they are out.
        pushed = results.outputs if plan.workspace is not None else []
        try:
            try:
                await self.backend.run(plan, run_log, results.report)
            finally:
                if plan.workspace is not None:  # also when it timed out or was canceled
                    for line in summary([s for s in plan.steps if isinstance(s, TaskStep)],
                                        results.steps):
                        run_log.line(line)
        except EngineLost:
            await self._record_task_bases(plan, results)
            raise
        except BasewatchError as exc:
            await self._record_task_bases(plan, results)
            if run.id in self._canceled:
                run_log.line(f"Run ID: {run.id} was canceled")
                return RunStatus.CANCELED, pushed, "canceled by request"
            run_log.line(f"Run ID: {run.id} failed: {exc}")
            return RunStatus.FAILED, pushed, str(exc)
        await self._record_task_bases(plan, results)
        if run.spec is None:
            for platform, base_digests in results.built_on.items():
                await self.store.graph.record_build(plan.task, platform, base_digests)
        run_log.line(f"Run ID: {run.id} was successful after "
                     f"{asyncio.get_running_loop().time() - started:.0f}s")
        return RunStatus.SUCCEEDED, results.outputs, None

    async def _record_task_bases(self, plan: RunPlan, results: _Results) -> None:
        """A task file's builds' bases, once its steps are done, whether or not it failed."""
        if plan.workspace is not None and results.base_digests:
            await self.store.runs.record_base_digests(plan.run_id, results.base_digests)
