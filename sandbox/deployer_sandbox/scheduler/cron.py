"""Cloud Scheduler's unix-cron schedules: parsing, and whether a minute is due.

Cloud Scheduler's own page ("Cron job format and time zone",
https://cloud.google.com/scheduler/docs/configuring/cron-job-schedules) is the source:

    field            values
    minute           0-59
    hour             0-23
    day of month     1-31   ("Cloud Scheduler does not support L")
    month            1-12   or JAN to DEC
    day of week      0-6    or SUN to SAT, 7 for Sunday

- five fields, separated by spaces;
- `*` "always stands for first-last"; `a-b` is inclusive; `/N` after a range (or
  `*`) "specifies skips of the number's value through the range"; a list is
  ranges and numbers separated by commas;
- day of month and day of week are ORed, unless either is `*` (unrestricted).

Anything else (six fields, `L`, `?`, `@daily`, the English-like "every 5 minutes"
form) is refused: the sandbox serves the unix-cron form only. The API's wording
for a refused schedule is "Schedule or time zone is invalid."
(googleapis/google-cloud-go#1352).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_TERM = re.compile(r"^(?P<range>\*|[0-9A-Z]+(?:-[0-9A-Z]+)?)(?:/(?P<step>[0-9]+))?$")


class CronError(ValueError):
    """A schedule that is not a unix-cron expression Cloud Scheduler accepts."""


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    names_from: int = 0  # the number of the first name (JAN is 1, SUN is 0)


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTHS, 1),
    # 7 is Sunday too; it is folded into 0 once parsed.
    _Field("day of week", 0, 7, _DAYS, 0),
)


@dataclass(frozen=True)
class CronSchedule:
    """A parsed schedule: the values each field allows."""

    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 is Sunday
    days_restricted: bool
    weekdays_restricted: bool

    def matches(self, moment: datetime) -> bool:
        """Whether the minute of `moment` (wall-clock time in the job's zone) is due."""
        return (
            moment.minute in self.minutes
            and moment.hour in self.hours
            and moment.month in self.months
            and self._day_matches(moment)
        )

    def next_after(self, moment: datetime, horizon_days: int = 366 * 5) -> datetime | None:
        """The first due minute strictly after `moment` (None if none within the horizon)."""
        candidate = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        end = moment + timedelta(days=horizon_days)
        while candidate <= end:
            if candidate.month not in self.months:
                # Skip to the first minute of the next month.
                year, month = candidate.year + candidate.month // 12, candidate.month % 12 + 1
                candidate = candidate.replace(year=year, month=month, day=1, hour=0, minute=0)
                continue
            if not self._day_matches(candidate) or candidate.hour not in self.hours:
                candidate = (candidate + timedelta(hours=1)).replace(minute=0)
                continue
            if candidate.minute in self.minutes:
                return candidate
            candidate += timedelta(minutes=1)
        return None

    def _day_matches(self, moment: datetime) -> bool:
        day_ok = moment.day in self.days
        weekday_ok = (moment.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return day_ok or weekday_ok  # "evaluated as an inclusive OR"
        return day_ok and weekday_ok


def parse(schedule: str) -> CronSchedule:
    """The schedule, or CronError saying which part is not understood."""
    parts = schedule.split()
    if len(parts) != len(_FIELDS):
        raise CronError(f"expected 5 fields, found {len(parts)}")
    values = [_parse_field(part.upper(), field) for part, field in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(0 if day == 7 else day for day in values[4])
    return CronSchedule(
        minutes=values[0],
        hours=values[1],
        days=values[2],
        months=values[3],
        weekdays=weekdays,
        days_restricted=parts[2] != "*",
        weekdays_restricted=parts[4] != "*",
    )


def _parse_field(text: str, field: _Field) -> frozenset[int]:
    allowed: set[int] = set()
    for term in text.split(","):
        match = _TERM.match(term)
        if match is None:
            raise CronError(f"cannot read {field.name} term {term!r}")
        if match["range"] == "*":
            low, high = field.low, field.high
        else:
            bounds = match["range"].split("-")
            low = _value(bounds[0], field)
            high = _value(bounds[-1], field)
            if low > high:
                raise CronError(f"{field.name} range {term!r} runs backwards")
            if match["step"] is not None and len(bounds) == 1:
                # "Following a range with /NUMBER": a single value has no range to skip through.
                raise CronError(f"{field.name} step {term!r} needs a range or *")
        step = int(match["step"]) if match["step"] is not None else 1
        if step < 1:
            raise CronError(f"{field.name} step in {term!r} must be at least 1")
        allowed.update(range(low, high + 1, step))
    return frozenset(allowed)


def _value(text: str, field: _Field) -> int:
    if text in field.names:
        return field.names.index(text) + field.names_from
    if not text.isdigit():
        raise CronError(f"{field.name} value {text!r} is not a number")
    value = int(text)
    if not field.low <= value <= field.high:
        raise CronError(f"{field.name} value {value} is outside {field.low}-{field.high}")
    return value
