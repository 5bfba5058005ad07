"""Deploy windows: when deploys to an environment may start, in a named time zone.

    [environments.prod.windows]
    timezone = "Europe/Berlin"              # an IANA zone name (zoneinfo)
    allow = ["Mon-Thu 08:00-18:00"]         # only inside these ranges (none: any time)
    deny = ["Fri 16:00-Mon 09:00", "Sat"]   # never inside these; deny wins over allow

A range is one of:
    `Fri 16:00-Mon 09:00`   from a weekday and time to another (wraps the week: Sun < Mon)
    `Mon-Thu 08:00-18:00`   each of those days, that time of day (`22:00-06:00` runs past
                            midnight into the next day; `Fri-Mon` wraps the week)
    `Sat`, `Sat-Sun`        whole days
Times are wall-clock times in the zone, so a range keeps its local hours across daylight
saving changes; `24:00` ends a day. Ranges are half-open: `08:00-18:00` is open at 08:00,
closed at 18:00.

Only deploys are gated; rollbacks never are. The next opening is found by walking real
instants minute by minute (a week holds 10,080 of them), each read in the zone: so a
range whose start falls in a spring-forward gap opens when the clock jumps past it,
and an autumn's repeated hour is judged by the wall clock each time it passes.
"""

from __future__ import annotations

import os
import re
import zoneinfo
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DAY = 24 * 60
WEEK = 7 * DAY
# How far ahead an opening is looked for: a week and a day covers every weekly pattern,
# even across a daylight saving change.
HORIZON = WEEK + DAY

# Tests stand on a chosen instant with this variable; it is honoured only against the
# sandbox (DEPLOYER_GCP_EMULATOR_HOST set), so production always reads the real clock.
NOW_ENV = "DEPLOYER_WINDOW_NOW"
SANDBOX_ENV = "DEPLOYER_GCP_EMULATOR_HOST"

_DAY = "(Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_TIME = r"([01][0-9]|2[0-4]):([0-5][0-9])"
_SPAN = re.compile(rf"^{_DAY} {_TIME}\s*-\s*{_DAY} {_TIME}$")
_DAILY = re.compile(rf"^{_DAY}(?:-{_DAY})? {_TIME}\s*-\s*{_TIME}$")
_DAYS = re.compile(rf"^{_DAY}(?:-{_DAY})?$")
_FORMS = "`Fri 16:00-Mon 09:00`, `Mon-Thu 08:00-18:00` or `Sat-Sun`"


@dataclass(frozen=True)
class Span:
    """Minutes of the week, Monday 00:00 local = 0, half-open; `end` < `start` wraps the week."""

    start: int
    end: int

    def contains(self, minute: int) -> bool:
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end


@dataclass(frozen=True)
class Range:
    """One range as written, and the spans of the week it covers."""

    text: str
    spans: tuple[Span, ...]

    def contains(self, minute: int) -> bool:
        return any(span.contains(minute) for span in self.spans)


@dataclass(frozen=True)
class Windows:
    """An environment's windows: deploys start only where some allow range (if any) holds
    and no deny range does."""

    zone: str
    allow: tuple[Range, ...] = ()
    deny: tuple[Range, ...] = ()

    def closed_by(self, minute: int) -> str | None:
        """Why a deploy may not start at `minute` of the local week ("deny ..." /
        "outside allow ..."), or None when it may."""
        for rule in self.deny:
            if rule.contains(minute):
                return f"deny {rule.text}"
        if self.allow and not any(rule.contains(minute) for rule in self.allow):
            return "outside allow " + ", ".join(rule.text for rule in self.allow)
        return None

    def never_open(self) -> bool:
        """Whether no minute of the week lets a deploy start (a config mistake)."""
        return all(self.closed_by(minute) is not None for minute in range(WEEK))


@dataclass(frozen=True)
class Closed:
    """A deploy may not start now: the rule that says so, and when it next may (None: not
    within a week)."""

    rule: str
    zone: str
    opens_at: datetime | None


def zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA zone `name`; ValueError naming the fix otherwise."""
    try:
        return _zone(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        pass
    if not zoneinfo.available_timezones():
        raise ValueError(
            f"time zone {name!r} cannot be read: this system has no time zone database "
            "(install the `tzdata` package)"
        )
    raise ValueError(
        f"unknown time zone {name!r}; use an IANA name such as Europe/Berlin, "
        "America/New_York or UTC"
    )


@cache
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def _minute(day: str, hour: str, minute: str) -> int:
    return WEEKDAYS.index(day) * DAY + int(hour) * 60 + int(minute)


def _check_time(hour: str, minute: str, text: str) -> None:
    if hour == "24" and minute != "00":
        raise ValueError(f"{text!r}: a time after 24:00 does not exist")


def _days(first: str, last: str | None) -> list[int]:
    """Day indexes from `first` to `last` (wrapping the week: Fri-Mon is four days)."""
    start = WEEKDAYS.index(first)
    count = (WEEKDAYS.index(last) - start) % 7 + 1 if last else 1
    return [(start + n) % 7 for n in range(count)]


def parse_range(text: str) -> Range:
    """One range as written in the config; ValueError saying the accepted forms otherwise."""
    text = " ".join(text.split())
    if match := _SPAN.match(text):
        day1, h1, m1, day2, h2, m2 = match.groups()
        _check_time(h1, m1, text)
        _check_time(h2, m2, text)
        start, end = _minute(day1, h1, m1) % WEEK, _minute(day2, h2, m2) % WEEK
        if start == end:
            raise ValueError(f"{text!r} starts where it ends; write `Mon-Sun` for the whole week")
        return Range(text, (Span(start, end),))
    if match := _DAILY.match(text):
        first, last, h1, m1, h2, m2 = match.groups()
        _check_time(h1, m1, text)
        _check_time(h2, m2, text)
        begin, finish = int(h1) * 60 + int(m1), int(h2) * 60 + int(m2)
        if begin == finish or (begin == DAY and finish == 0):
            raise ValueError(f"{text!r} is empty: its times are the same")
        # 22:00-06:00 ends the next morning.
        length = (finish - begin) % DAY or DAY
        spans = tuple(
            Span((day * DAY + begin) % WEEK, (day * DAY + begin + length) % WEEK)
            for day in _days(first, last)
        )
        return Range(text, spans)
    if match := _DAYS.match(text):
        first, last = match.groups()
        days = _days(first, last)
        if len(days) == 7:
            return Range(text, (Span(0, WEEK),))
        return Range(text, tuple(Span(day * DAY, (day + 1) * DAY % WEEK) for day in days))
    raise ValueError(f"{text!r} is not a range; write it like {_FORMS}")


def week_minute(local: datetime) -> int:
    """Minutes since Monday 00:00 of `local`'s own wall clock."""
    return local.weekday() * DAY + local.hour * 60 + local.minute


def check(windows: Windows, now: datetime) -> Closed | None:
    """None when a deploy may start at `now` (aware); else what closes it and when it opens."""
    tz = zone(windows.zone)
    rule = windows.closed_by(week_minute(now.astimezone(tz)))
    if rule is None:
        return None
    # Offsets of every zone in use today are whole minutes, so whole UTC minutes are the
    # instants where the wall clock (and so the answer) can change.
    instant = now.astimezone(UTC).replace(second=0, microsecond=0)
    for _ in range(HORIZON):
        instant += timedelta(minutes=1)
        local = instant.astimezone(tz)
        if windows.closed_by(week_minute(local)) is None:
            return Closed(rule, windows.zone, local)
    return Closed(rule, windows.zone, None)


def now() -> datetime:
    """The time windows are judged at: the real clock, or `DEPLOYER_WINDOW_NOW` (an ISO 8601
    instant with its offset) against the sandbox only."""
    fixed = os.environ.get(NOW_ENV, "")
    if fixed and os.environ.get(SANDBOX_ENV):
        parsed = datetime.fromisoformat(fixed)
        if parsed.tzinfo is None:
            raise ValueError(f"{NOW_ENV}={fixed!r} needs an offset, e.g. 2025-03-28T17:00:00+01:00")
        return parsed
    return datetime.now(UTC)


def _span_of_time(delta: timedelta) -> str:
    minutes = max(1, -(-int(delta.total_seconds()) // 60))  # rounded up: never "0 minutes"
    days, rest = divmod(minutes, DAY)
    hours, minutes = divmod(rest, 60)

    def unit(n: int, word: str) -> str:
        return f"{n} {word}" + ("" if n == 1 else "s")

    if days:
        return unit(days, "day") + (f" {unit(hours, 'hour')}" if hours else "")
    if hours:
        return unit(hours, "hour") + (f" {unit(minutes, 'minute')}" if minutes else "")
    return unit(minutes, "minute")


def describe(environment: str, closed: Closed, at: datetime) -> str:
    """'deploys to prod are closed until Mon 2025-03-31 09:00 Europe/Berlin (07:00 UTC),
    2 days 15 hours from now (deny Fri 16:00-Mon 09:00)'."""
    if closed.opens_at is None:
        return f"deploys to {environment} are closed, and no window opens within a week ({closed.rule})"
    local = closed.opens_at
    utc = local.astimezone(UTC)
    utc_text = (
        utc.strftime("%H:%M UTC") if utc.date() == local.date() else utc.strftime("%a %H:%M UTC")
    )
    return (
        f"deploys to {environment} are closed until {local:%a %Y-%m-%d %H:%M} {closed.zone} "
        f"({utc_text}), {_span_of_time(local - at)} from now ({closed.rule})"
    )
