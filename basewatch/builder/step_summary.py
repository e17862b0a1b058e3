"""The closing summary of a task file's run: a table of its steps, then the digests pushed."""
from __future__ import annotations

from collections.abc import Iterable

from basewatch.models import StepRecord
from basewatch.run_plan import BuildStep, CmdStep, PushOutcome, TaskStep, TaskStepOutcome
from basewatch.taskfile.values import mask

# A recorded step's action and error are one line of at most this many characters.
MAX_RECORD_CHARS = 500


def action_of(step: TaskStep) -> str:
    """What a step does, in a few words: its image, its build's tags, its pushes."""
    action = step.action
    if isinstance(action, CmdStep):
        return f"cmd {action.container.image}" + (" (detached)" if action.container.detach
                                                   else "")
    if isinstance(action, BuildStep):
        return "build" + (f" -t {' -t '.join(action.tags)}" if action.tags else "") \
            + ("" if action.context in ("", ".") else f" {action.context}")
    return "push " + " ".join(push.tag for push in action)


def kind_of(step: TaskStep) -> str:
    if isinstance(step.action, CmdStep):
        return "cmd"
    return "build" if isinstance(step.action, BuildStep) else "push"


def one_line(text: str, secrets: Iterable[str] = ()) -> str:
    text = " ".join(mask(text, secrets).split())
    return text if len(text) <= MAX_RECORD_CHARS else text[:MAX_RECORD_CHARS - 1] + "…"


def step_record(outcome: TaskStepOutcome, started_after: float | None,
                secrets: Iterable[str] = ()) -> StepRecord:
    """A step's outcome as the run's record keeps it: one line each, no secret in it."""
    secrets = tuple(secrets)
    return StepRecord(
        id=outcome.step.control.id, kind=kind_of(outcome.step),
        action=one_line(action_of(outcome.step), secrets), status=outcome.status,
        started_after=None if started_after is None else round(max(started_after, 0.0), 3),
        seconds=round(outcome.seconds, 3), attempts=outcome.attempts,
        exit_code=outcome.exit_code,
        error=None if outcome.error is None else one_line(outcome.error, secrets))


def summary(steps: list[TaskStep], outcomes: dict[str, TaskStepOutcome]) -> list[str]:
    rows = [("STEP", "ACTION", "STATUS", "SECONDS", "ATTEMPTS", "EXIT")]
    for step in steps:
        outcome = outcomes.get(step.control.id)
        if outcome is None:
            rows.append((step.control.id, action_of(step), "Not run", "", "", ""))
            continue
        rows.append((step.control.id, action_of(step), outcome.status,
                     f"{outcome.seconds:.1f}" if outcome.status != "Skipped" else "",
                     str(outcome.attempts) if outcome.attempts else "",
                     "" if outcome.exit_code is None else str(outcome.exit_code)))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    lines = ["Steps:"] + ["  " + "  ".join(cell.ljust(width) for cell, width
                                           in zip(row, widths)).rstrip() for row in rows]
    pushed = [(o.step.tag, o.digest) for outcome in outcomes.values()
              for o in outcome.outcomes if isinstance(o, PushOutcome)]
    if pushed:
        lines.append("Pushed:")
        width = max(len(tag) for tag, _ in pushed)
        lines += [f"  {tag.ljust(width)}  {digest}" for tag, digest in pushed]
    return lines
