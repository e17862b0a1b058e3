"""Where each task's timers stand: per (task, timer), the last scheduled fire handled and the
schedule it was counted on. The fire itself is recorded with its run (runs.record_fire_and_queue),
in one transaction; a task's marks go with the task (ON DELETE CASCADE)."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

from sqlalchemy import bindparam, delete, exists, literal, select

from basewatch.models import TimerMark
from basewatch.store.database import Database
from basewatch.store.schema import tasks, timer_marks


def mark_text(moment: datetime) -> str:
    """A scheduled time as stored: UTC, whole seconds, one form, so stored marks compare."""
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat()


class SQLiteTimerStore:
    def __init__(self, database: Database):
        self.database = database

    async def marks(self) -> list[TimerMark]:
        rows = await self.database.fetchall(
            select(timer_marks).order_by(timer_marks.c.task, timer_marks.c.timer))
        return [TimerMark(row["task"], row["timer"], row["schedule"],
                          datetime.fromisoformat(row["last_scheduled"])) for row in rows]

    async def start(self, task: str, timer: str, schedule: str, at: datetime) -> None:
        """Count `timer` from `at` on `schedule` (a new timer, or one with a new schedule);
        nothing for a task that is gone."""
        insert = self.database.insert(timer_marks)
        values = select(literal(task), literal(timer), literal(schedule),
                        literal(mark_text(at))).where(exists().where(tasks.c.name == task))
        async with self.database.transaction() as db:
            await db.execute(
                insert.from_select(["task", "timer", "schedule", "last_scheduled"], values)
                .on_conflict_do_update(
                    index_elements=[timer_marks.c.task, timer_marks.c.timer],
                    set_={"schedule": insert.excluded.schedule,
                          "last_scheduled": insert.excluded.last_scheduled}))

    async def forget(self, timers: Iterable[tuple[str, str]]) -> None:
        """Drop the marks of timers removed or disabled: enabled again, they start afresh."""
        timers = [{"b_task": task, "b_timer": timer} for task, timer in timers]
        if not timers:
            return
        async with self.database.transaction() as db:
            await db.execute(delete(timer_marks).where(
                timer_marks.c.task == bindparam("b_task"),
                timer_marks.c.timer == bindparam("b_timer")), timers)
