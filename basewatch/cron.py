"""Timer schedules: standard five-field cron, in UTC, Sunday as 0 (and 7), as ACR Tasks reads
them. croniter does the arithmetic; this module decides what is accepted. APScheduler 3's
`CronTrigger.from_crontab` counts day 0 as Monday, so it is not used for timers."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from croniter import croniter

from basewatch.errors import BasewatchError

EXPECTED_FORM = ("five fields, minute hour day-of-month month day-of-week, in UTC with Sunday "
                 "as 0, e.g. \"0 2 * * *\" for 02:00 every day")


class ScheduleError(BasewatchError):
    """A timer's schedule is not a five-field cron expression."""


@dataclass(frozen=True)
class CronSchedule:
    expression: str

    @classmethod
    def parse(cls, text: str) -> "CronSchedule":
        fields = text.split()
        if len(fields) != 5:
            raise ScheduleError(f"schedule {text!r} has {len(fields)} field"
                                f"{'' if len(fields) == 1 else 's'}: expected {EXPECTED_FORM}")
        expression = " ".join(fields)
        # croniter also takes @-nicknames and a sixth (seconds) field; both are refused above
        # or here, so a schedule means the same thing to every cron reader.
        if any(f.startswith("@") for f in fields) or not croniter.is_valid(expression):
            raise ScheduleError(f"schedule {text!r} is not valid: expected {EXPECTED_FORM}")
        return cls(expression)

    def next_after(self, moment: datetime) -> datetime:
        """The first fire strictly after `moment` (UTC)."""
        return croniter(self.expression, _utc(moment)).get_next(datetime)

    def last_at_or_before(self, moment: datetime) -> datetime:
        """The latest fire at or before `moment` (UTC)."""
        moment = _utc(moment)
        if croniter.match(self.expression, moment.replace(second=0, microsecond=0)) \
                and moment.second == 0 and moment.microsecond == 0:
            return moment
        return croniter(self.expression, moment).get_prev(datetime)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("timer moments are timezone-aware")
    return moment.astimezone(timezone.utc)
