"""A task file's steps carried out as ACR does: as a graph. A step with no `when` waits for
the step before it, `when: ["-"]` starts at once, `when: [ids]` waits for those; steps that
wait on nothing unfinished run at the same time (at most `parallel` of them). Each step's
attempts run under its timeout, failed ones again after `retry_delay` up to `retries` times,
the whole again `repeat` times; a step that failed skips everything that waits on it, unless
it ignores errors. What a step does is the backend's (`take`); the graph only says when."""
from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Awaitable, Callable

from basewatch.builder.backend import RunLogSink
from basewatch.errors import BasewatchError
from basewatch.run_plan import BuildOutcome, PushOutcome, TaskStep, TaskStepOutcome

SUCCEEDED, FAILED, SKIPPED, DETACHED = "Succeeded", "Failed", "Skipped", "Detached"
MAX_PARALLEL_STEPS = 8


@dataclass(frozen=True)
class Attempt:
    """One attempt that succeeded: how it ended and what it built or pushed."""

    status: str = SUCCEEDED  # or DETACHED: started and left running
    exit_code: int | None = None
    outcomes: tuple[BuildOutcome | PushOutcome, ...] = ()


class StepFailed(BasewatchError):
    """An attempt failed (a container's exit code, a build's error)."""

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        self.exit_code = exit_code


TakeStep = Callable[[TaskStep], Awaitable[Attempt]]
ReportStep = Callable[[TaskStepOutcome], Awaitable[None]]


def dependencies(steps: list[TaskStep]) -> dict[str, tuple[str, ...]]:
    """Each step's id -> the ids it waits for. A task file's reader refuses bad `when`s with
    the line; this is the backend's own check, so a plan from elsewhere cannot hang a run."""
    waits: dict[str, tuple[str, ...]] = {}
    for index, step in enumerate(steps):
        control = step.control
        if control.id in waits:
            raise BasewatchError(f"step {control.id}: another step has the same id")
        if control.when is None:
            waits[control.id] = (steps[index - 1].control.id,) if index else ()
        elif control.when == ("-",):
            waits[control.id] = ()
        else:
            waits[control.id] = tuple(dict.fromkeys(control.when))
    for step_id, ids in waits.items():
        for other in ids:
            if other not in waits:
                raise BasewatchError(f"step {step_id}: when names {other!r}, which is no "
                                     "step's id")
    done: set[str] = set()
    while len(done) < len(waits):
        ready = [s for s, ids in waits.items() if s not in done and set(ids) <= done]
        if not ready:
            raise BasewatchError("the steps' when close a cycle: "
                                 + ", ".join(s for s in waits if s not in done))
        done.update(ready)
    return waits


def describe_failure(outcome: TaskStepOutcome) -> str:
    return f"step {outcome.step.control.id} failed: {outcome.error}"


class StepGraph:
    def __init__(self, steps: list[TaskStep], take: TakeStep, report: ReportStep,
                 log: RunLogSink, describe: Callable[[TaskStep], str] = lambda step: "",
                 parallel: int = MAX_PARALLEL_STEPS):
        self.steps = steps
        self.waits = dependencies(steps)
        self.take = take
        self.report = report
        self.log = log
        self.describe = describe
        self.slots = asyncio.Semaphore(parallel)
        self.outcomes: dict[str, TaskStepOutcome] = {}
        self._done = {step.control.id: asyncio.Event() for step in steps}

    async def run(self) -> list[TaskStepOutcome]:
        """Every step's outcome, in the plan's order. Cancelling it cancels every step in
        progress (each cleans up after itself) and starts no other."""
        async with asyncio.TaskGroup() as group:
            for step in self.steps:
                group.create_task(self._step(step), name=f"step {step.control.id}")
        return [self.outcomes[step.control.id] for step in self.steps]

    def blocks(self, step_id: str) -> bool:
        outcome = self.outcomes[step_id]
        return outcome.status == SKIPPED or (outcome.status == FAILED
                                             and not outcome.step.control.ignore_errors)

    async def _step(self, step: TaskStep) -> None:
        control = step.control
        for other in self.waits[control.id]:
            await self._done[other].wait()
        blocked = [other for other in self.waits[control.id] if self.blocks(other)]
        if blocked:
            outcome = TaskStepOutcome(step, SKIPPED, 0.0, attempts=0,
                                      error=f"skipped: {', '.join(blocked)} did not succeed")
            self.log.line(f"Step {control.id}: Skipped ({', '.join(blocked)} did not "
                          "succeed)")
        else:
            if control.start_delay > 0:
                self.log.line(f"Step {control.id}: starting in {control.start_delay:g}s "
                              "(startDelay)")
                await asyncio.sleep(control.start_delay)
            async with self.slots:
                outcome = await self._attempts(step)
        self.outcomes[control.id] = outcome
        await self.report(outcome)
        self._done[control.id].set()

    async def _attempts(self, step: TaskStep) -> TaskStepOutcome:
        control = step.control
        loop = asyncio.get_running_loop()
        started = loop.time()
        what = self.describe(step)
        self.log.line(f"Step {control.id}: starting{': ' + what if what else ''}")
        attempts, outcomes, attempt, error, exit_code = 0, [], None, None, None
        for round_ in range(1 + control.repeat):
            if round_:
                self.log.line(f"Step {control.id}: repeat {round_} of {control.repeat}")
            for tried in range(1 + control.retries):
                attempts += 1
                try:
                    async with asyncio.timeout(control.timeout):
                        attempt = await self.take(step)
                    error = None
                    break
                except TimeoutError:
                    error, exit_code = f"timed out after {control.timeout:g}s", None
                except StepFailed as exc:
                    error, exit_code = str(exc), exc.exit_code
                except BasewatchError as exc:
                    error, exit_code = str(exc), None
                if tried < control.retries:
                    self.log.line(f"Step {control.id}: attempt {attempts} failed: {error}; "
                                  f"retrying in {control.retry_delay:g}s")
                    await asyncio.sleep(control.retry_delay)
            if error is not None:
                break
            outcomes.extend(attempt.outcomes)
        seconds = loop.time() - started
        plural = "s" if attempts != 1 else ""
        if error is not None:
            outcome = TaskStepOutcome(step, FAILED, seconds, attempts, exit_code, error,
                                      tuple(outcomes))
            ignored = " (ignoreErrors: the run goes on)" if control.ignore_errors else ""
            self.log.line(f"Step {control.id}: Failed after {seconds:.1f}s, {attempts} "
                          f"attempt{plural}: {error}{ignored}")
        else:
            outcome = TaskStepOutcome(step, attempt.status, seconds, attempts,
                                      attempt.exit_code, None, tuple(outcomes))
            self.log.line(f"Step {control.id}: {attempt.status} after {seconds:.1f}s, "
                          f"{attempts} attempt{plural}")
        return outcome
