"""Deploy windows without a cloud: the range grammar, week wrap, DST, the config's errors,
and the `/deploy ... --break-glass` grammar."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from deployer import deploy_windows
from deployer.config import parse_config
from deployer.deploy_windows import Windows, check, describe, parse_range
from deployer.errors import ConfigError
from deployer.front import grammar

BERLIN = "Europe/Berlin"
WEEKEND = Windows(BERLIN, deny=(parse_range("Fri 16:00-Mon 09:00"),))


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --- open or closed ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "closed"),
    [
        ("2025-03-27T12:00:00+01:00", False),  # Thursday noon
        ("2025-03-28T15:59:00+01:00", False),  # Friday, a minute before
        ("2025-03-28T16:00:00+01:00", True),  # Friday 16:00: closed (half-open ranges)
        ("2025-03-30T12:00:00+02:00", True),  # Sunday
        ("2025-03-31T08:59:00+02:00", True),
        ("2025-03-31T09:00:00+02:00", False),  # Monday 09:00 opens
    ],
)
def test_a_range_across_the_week_end_is_judged_by_the_wall_clock(now: str, closed: bool) -> None:
    assert (check(WEEKEND, at(now)) is not None) is closed


def test_a_wrapping_range_from_sunday_to_monday() -> None:
    night = Windows("UTC", deny=(parse_range("Sun 22:00-Mon 02:00"),))

    assert check(night, at("2025-03-30T23:30:00+00:00")) is not None  # Sunday night
    assert check(night, at("2025-03-31T01:59:00+00:00")) is not None  # Monday early
    assert check(night, at("2025-03-31T02:00:00+00:00")) is None
    assert check(night, at("2025-03-29T23:30:00+00:00")) is None  # Saturday night


def test_daily_ranges_and_day_ranges_that_wrap() -> None:
    office = Windows("UTC", allow=(parse_range("Mon-Thu 08:00-18:00"),))
    assert check(office, at("2025-03-27T17:59:00+00:00")) is None  # Thursday
    closed = check(office, at("2025-03-28T10:00:00+00:00"))  # Friday
    assert closed is not None and closed.rule == "outside allow Mon-Thu 08:00-18:00"
    assert closed.opens_at == at("2025-03-31T08:00:00+00:00")

    nights = Windows("UTC", deny=(parse_range("Fri-Mon 22:00-06:00"),))  # four nights
    assert check(nights, at("2025-03-31T05:00:00+00:00")) is not None  # Monday 05:00 (Sun night)
    assert check(nights, at("2025-03-31T23:00:00+00:00")) is not None  # Monday night
    assert check(nights, at("2025-04-01T05:00:00+00:00")) is not None  # ... until Tue 06:00
    assert check(nights, at("2025-04-01T23:00:00+00:00")) is None  # Tuesday night is open


def test_deny_wins_over_allow() -> None:
    both = Windows(
        "UTC",
        allow=(parse_range("Mon-Fri 08:00-18:00"),),
        deny=(parse_range("Fri 12:00-Mon 00:00"),),
    )
    closed = check(both, at("2025-03-28T13:00:00+00:00"))  # Friday 13:00: allowed, but denied

    assert closed is not None and closed.rule == "deny Fri 12:00-Mon 00:00"
    assert closed.opens_at == at("2025-03-31T08:00:00+00:00")  # Monday's allow, not Sat 00:00


# --- next opening across daylight saving changes ----------------------------------------


def test_the_opening_after_spring_forward_is_local_nine_and_an_hour_sooner() -> None:
    # Europe/Berlin goes from +01:00 to +02:00 on Sunday 2025-03-30 at 02:00.
    now = at("2025-03-28T17:00:00+01:00")
    closed = check(WEEKEND, now)

    assert closed is not None and closed.opens_at is not None
    assert closed.opens_at.astimezone(UTC) == at("2025-03-31T07:00:00+00:00")
    assert describe("prod", closed, now) == (
        "deploys to prod are closed until Mon 2025-03-31 09:00 Europe/Berlin (07:00 UTC), "
        "2 days 15 hours from now (deny Fri 16:00-Mon 09:00)"
    )


def test_the_opening_after_fall_back_is_an_hour_later() -> None:
    # ... and back to +01:00 on Sunday 2025-10-26 at 03:00: the weekend lasts 66 hours.
    now = at("2025-10-24T16:00:00+02:00")
    closed = check(WEEKEND, now)

    assert closed is not None and closed.opens_at is not None
    assert closed.opens_at.astimezone(UTC) == at("2025-10-27T08:00:00+00:00")
    assert describe("prod", closed, now).endswith(
        "(08:00 UTC), 2 days 18 hours from now (deny Fri 16:00-Mon 09:00)"
    )


def test_a_range_starting_in_the_spring_forward_gap_opens_when_the_clock_jumps() -> None:
    # 02:30 never happens on 2025-03-30 in Berlin: the clock goes 01:59 -> 03:00.
    early = Windows(BERLIN, allow=(parse_range("Sun 02:30-Sun 04:00"),))
    closed = check(early, at("2025-03-30T01:00:00+01:00"))

    assert closed is not None and closed.opens_at is not None
    assert closed.opens_at.astimezone(UTC) == at("2025-03-30T01:00:00+00:00")  # 03:00 CEST


# --- the grammar of ranges and the config's errors -------------------------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("Friday 16:00-Mon 09:00", "is not a range; write it like"),
        ("Fri 16:00-Mon 25:00", "is not a range"),
        ("Fri 24:30-Mon 09:00", "a time after 24:00 does not exist"),
        ("Mon 09:00-Mon 09:00", "starts where it ends"),
        ("Mon-Fri 09:00-09:00", "is empty"),
    ],
)
def test_bad_ranges_say_how_to_write_them(text: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_range(text)


CONFIG = """
[services.backend]
project = "demo-project"
region = "europe-west1"
service = "backend"
image = "europe-west1-docker.pkg.dev/demo-project/deployer/backend"
source = {{ git = "https://example.com/repo.git" }}

[environments.prod]
service = "backend"

[environments.prod.windows]
{windows}
"""


def config_error(windows: str) -> str:
    with pytest.raises(ConfigError) as raised:
        parse_config(CONFIG.format(windows=windows), Path("deployer.toml"), None)
    return str(raised.value)


def test_an_unknown_time_zone_is_refused_at_load() -> None:
    error = config_error('timezone = "Europe/Berlim"\ndeny = ["Sat-Sun"]')
    assert "environments.prod.windows.timezone" in error
    assert "unknown time zone 'Europe/Berlim'; use an IANA name such as Europe/Berlin" in error


def test_a_bad_range_is_refused_at_load_with_its_field() -> None:
    error = config_error('timezone = "UTC"\ndeny = ["Fri 16:00 to Mon 09:00"]')
    assert "environments.prod.windows.deny" in error
    assert "'Fri 16:00 to Mon 09:00' is not a range" in error


def test_windows_that_never_open_or_say_nothing_are_refused() -> None:
    assert "never open" in config_error('timezone = "UTC"\ndeny = ["Mon-Sun"]')
    assert "give `allow` or `deny`" in config_error('timezone = "UTC"')


def test_a_good_windows_table_loads() -> None:
    text = CONFIG.format(
        windows='timezone = "Europe/Berlin"\n'
        'allow = ["Mon-Thu 08:00-18:00"]\ndeny = ["Fri 16:00-Mon 09:00"]'
    )
    windows = parse_config(text, Path("deployer.toml"), None).environments["prod"].windows
    assert windows is not None and windows.rules().zone == BERLIN


def test_the_clock_is_only_fixed_against_the_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(deploy_windows.NOW_ENV, "2025-03-28T17:00:00+01:00")
    monkeypatch.delenv(deploy_windows.SANDBOX_ENV, raising=False)
    assert deploy_windows.now() != at("2025-03-28T17:00:00+01:00")  # production: real time
    monkeypatch.setenv(deploy_windows.SANDBOX_ENV, "127.0.0.1:1")
    assert deploy_windows.now() == at("2025-03-28T17:00:00+01:00")


# --- /deploy ... --break-glass ------------------------------------------------------------


@pytest.fixture(name="config")
def config_fixture() -> object:
    return parse_config(
        CONFIG.format(windows='timezone = "UTC"\ndeny = ["Sat-Sun"]'), Path("deployer.toml"), None
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'prod main --break-glass "hotfix for outage"',
            grammar.Deploy("prod", "main", queue=False, break_glass="hotfix for outage"),
        ),
        (
            "prod --break-glass “outage, again”",
            grammar.Deploy("prod", None, queue=False, break_glass="outage, again"),
        ),
        (
            "prod main --break-glass hotfix now --queue",
            grammar.Deploy("prod", "main", queue=True, break_glass="hotfix now"),
        ),
        (
            "prod --break-glass 'db down' main",
            grammar.Deploy("prod", "main", queue=False, break_glass="db down"),
        ),
    ],
)
def test_break_glass_takes_a_quoted_or_plain_reason(
    config: object, text: str, expected: grammar.Deploy
) -> None:
    assert grammar.parse(text, config) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("prod --break-glass", "Say why"),
        ('prod --break-glass "never closed', "has no closing"),
        ("rollback prod --break-glass why", "for deploys only"),
        ("prod --break-glass " + "x" * 201, "under 200 characters"),
    ],
)
def test_break_glass_without_a_usable_reason_is_refused(
    config: object, text: str, says: str
) -> None:
    parsed = grammar.parse(text, config)  # type: ignore[arg-type]
    assert isinstance(parsed, grammar.Reply) and says in parsed.text
