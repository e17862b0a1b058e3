"""A build backend that builds nothing: it records the plans and steps it was given and reports
an outcome for each, so the executor, the planner and what follows a run can be tested without
an engine."""
from __future__ import annotations

import asyncio
import hashlib
from typing import Callable

from basewatch.errors import EngineError
from basewatch.run_plan import (
    BuildOutcome,
    BuildStep,
    IndexOutcome,
    IndexStep,
    PushOutcome,
    PushStep,
    RunPlan,
    TaskStep,
    TaskStepOutcome,
)


def digest_of(text: str) -> str:
    """A made-up digest, the same for the same text."""
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


class FakeBackend:
    """`fail_on`: a step kind (BuildStep...), or a test of a step, whose first step raises
    `failure`; `hold_on`: a step kind whose steps wait until `release` is set (or the run is
    canceled)."""

    def __init__(self, fail_on: type | Callable[[object], bool] | None = None,
                 failure: BaseException = EngineError("build failed: the fake said so"),
                 hold_on: type | None = None):
        self.plans: list[RunPlan] = []
        self.steps: list = []
        self.fail_on = fail_on
        self.failure = failure
        self.hold_on = hold_on
        self.holding = asyncio.Event()  # set once a step is held
        self.release = asyncio.Event()
        self.running: dict[str, asyncio.Event] = {}  # run id -> canceled
        self.closed = False

    async def run(self, plan, log, report) -> None:
        self.plans.append(plan)
        canceled = self.running[plan.run_id] = asyncio.Event()
        try:
            for step in plan.steps:
                self.steps.append(step)
                log.line(f"fake: {type(step).__name__}")
                if self.hold_on is not None and isinstance(step, self.hold_on):
                    self.holding.set()
                    await _first(self.release.wait(), canceled.wait())
                if canceled.is_set():
                    raise EngineError("build was canceled")
                if self._fails(step):
                    raise self.failure
                await report(self.outcome(step))
        finally:
            del self.running[plan.run_id]

    def _fails(self, step) -> bool:
        if self.fail_on is None:
            return False
        if isinstance(self.fail_on, type):
            return isinstance(step, self.fail_on)
        return self.fail_on(step)

    @staticmethod
    def outcome(step):
        if isinstance(step, BuildStep):
            return BuildOutcome(step, {base: digest_of(f"{base} {step.platform}")
                                       for base in step.bases})
        if isinstance(step, PushStep):
            return PushOutcome(step, digest_of(step.tag))
        if isinstance(step, IndexStep):
            return IndexOutcome(step, digest_of(f"index {step.tag}"))
        if isinstance(step, TaskStep):  # a task file's step: its build's or pushes' outcomes
            action = step.action
            inner = (FakeBackend.outcome(action),) if isinstance(action, BuildStep) else \
                tuple(FakeBackend.outcome(push) for push in action) \
                if isinstance(action, tuple) else ()
            return TaskStepOutcome(step, "Succeeded", 0.0, outcomes=inner)
        raise AssertionError(f"unknown step {step!r}")

    async def cancel(self, run_id: str) -> bool:
        if run_id not in self.running:
            return False
        self.running[run_id].set()
        return True

    def close(self) -> None:
        self.closed = True


async def _first(*waits) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
