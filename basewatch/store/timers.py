"""Where each task's timers stand: per (task, timer), the last scheduled fire handled and the
schedule it was counted on. The fire itself is recorded with its run (runs.record_fire_and_queue),
in one transaction; a task's marks go with the task (ON DELETE CASCADE)."""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone

from basewatch.models import TimerMark
from basewatch.store.database import Database


def mark_text(moment: datetime) -> str:
    """A scheduled time as stored: UTC, whole seconds, one form, so stored marks compare."""
    return moment.astimezone(timezone.utc).replace(microsecond=0).isoformat()


class SQLiteTimerStore:
    def __init__(self, database: Database):
        self.database = database

    async def marks(self) -> list[TimerMark]:
        rows = await self.database.fetchall(
            "SELECT task, timer, schedule, last_scheduled FROM timer_marks ORDER BY task, timer")
        return [TimerMark(row["task"], row["timer"], row["schedule"],
                          datetime.fromisoformat(row["last_scheduled"])) for row in rows]

    async def start(self, task: str, timer: str, schedule: str, at: datetime) -> None:
        """Count `timer` from `at` on `schedule` (a new timer, or one with a new schedule);
        nothing for a task that is gone."""
        async with self.database.transaction() as db:
            await db.execute(
                "INSERT INTO timer_marks (task, timer, schedule, last_scheduled)"
                " SELECT ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM tasks WHERE name = ?)"
                " ON CONFLICT (task, timer) DO UPDATE SET schedule = excluded.schedule,"
                " last_scheduled = excluded.last_scheduled",
                (task, timer, schedule, mark_text(at), task))

    async def forget(self, timers: Iterable[tuple[str, str]]) -> None:
        """Drop the marks of timers removed or disabled: enabled again, they start afresh."""
        async with self.database.transaction() as db:
            await db.executemany("DELETE FROM timer_marks WHERE task = ? AND timer = ?",
                                 list(timers))
