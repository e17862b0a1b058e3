"""The closing summary of a task file's run: a table of its steps, then the digests pushed."""
from __future__ import annotations

from basewatch.run_plan import BuildStep, CmdStep, PushOutcome, TaskStep, TaskStepOutcome


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
