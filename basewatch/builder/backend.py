"""What the executor asks of a build backend: carry out a run plan's steps, report each one.

Where images are built and kept is the backend's business (one local engine, a pool of remote
engines, a cluster): the executor knows the plan, the outcomes and the run's log, nothing more.
"""
from __future__ import annotations

from typing import Awaitable, Callable, Protocol

from basewatch.run_plan import RunPlan, StepOutcome

OutcomeHook = Callable[[StepOutcome], Awaitable[None]]


class RunLogSink(Protocol):
    """The run's log: whole lines of the backend's own, and the engine's output as it comes."""

    def line(self, text: str) -> None: ...

    def write(self, text: str) -> None: ...


class Backend(Protocol):
    async def run(self, plan: RunPlan, log: RunLogSink, report: OutcomeHook) -> None:
        """Carry out the plan's steps, awaiting `report` after each one. A Dockerfile task's
        steps go in order, and one that fails raises a BasewatchError: the steps after it are
        not taken. A task file's (`plan.workspace` set) go as their graph says, each reported
        as a TaskStepOutcome; the run raises once they are done if one failed that does not
        ignore errors. Cancelling the calling task stops the work in progress, and removes
        what the run made on the engine, before it returns."""
        ...

    async def cancel(self, run_id: str) -> bool:
        """Cut the run's work in progress short (its `run` then raises); False when this
        backend is not running it."""
        ...

    def close(self) -> None:
        """Let go of what the backend holds; work still in progress is cut by cancel()."""
        ...
