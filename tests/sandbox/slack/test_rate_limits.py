"""Slack's rate limits and the latency and lost-answer faults, through the real slack_sdk over HTTP.

Every WebClient here has no retry handlers, so each 429 or 5xx is seen as Slack sends it.
Sandboxes of their own take a clock the test moves, so no assertion hangs on timing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from deployer_sandbox.common.faults import Faults
from deployer_sandbox.harness.http_server import SandboxHttp
from deployer_sandbox.harness.sandbox import Sandbox
from deployer_sandbox.slack.rate_limits import SlackRateLimits
from deployer_sandbox.slack.sink import METHODS
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import ServerErrorRetryHandler

from tests.conftest import SLACK_RATE_SCALE
from tests.slack_fixtures import channel_fixture, slack_fixture  # noqa: F401  (fixtures)

TOKEN = "xoxb-sandbox-limits"
GROUP = "S0LIMITS01"
USER = "U0LIMITS01"


class Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def own_slack(scale: float, clock: Callable[[], float] = time.monotonic) -> SandboxHttp:
    """A started Slack sink of its own, limited at `scale`, with channels A and B, a user, a group."""
    http = SandboxHttp(Faults(), rate_limits=SlackRateLimits(scale, clock=clock))
    http.sink.add_channel("C0LIMITS0A", "limits-a")
    http.sink.add_channel("C0LIMITS0B", "limits-b")
    http.sink.add_user(USER, "ada")
    http.sink.add_usergroup(GROUP, "oncall", [USER])
    http.start()
    return http


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def real(clock: Clock) -> Iterator[SandboxHttp]:
    """A sink limited as Slack limits (scale 1) on a clock the test moves."""
    http = own_slack(1.0, clock)
    yield http
    http.close()


def web(slack: SandboxHttp) -> WebClient:
    return WebClient(token=TOKEN, base_url=f"{slack.url}/api/", retry_handlers=[])


def refused(call: Callable[[], Any]) -> SlackApiError:
    """The error a call raised; fails the test if it succeeded."""
    with pytest.raises(SlackApiError) as raised:
        call()
    return raised.value


def limited(call: Callable[[], Any]) -> bool:
    """True when the call was refused for Slack's rate limit."""
    error = refused(call)
    return bool(error.response.status_code == 429 and error.response["error"] == "ratelimited")


def messages(slack: SandboxHttp, channel: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{slack.url}/_sandbox/messages", params={"channel": channel})
    assert answer.status_code == 200
    result: list[dict[str, Any]] = answer.json()
    return result


def calls(slack: SandboxHttp) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = httpx.get(f"{slack.url}/_sandbox/calls").json()
    return result


def burst_of(call: Callable[[], Any], most: int = 200) -> int:
    """How many calls in a row succeed before the first 429 (the clock standing still)."""
    for done in range(most):
        try:
            call()
        except SlackApiError as error:
            assert error.response.status_code == 429, error.response
            return done
    raise AssertionError(f"no 429 within {most} calls")


# -- chat.postMessage: one a second per channel, short bursts -----------------


def test_a_channel_takes_a_short_burst_then_answers_429_with_retry_after(
    real: SandboxHttp,
) -> None:
    client = web(real)
    for n in range(3):
        client.chat_postMessage(channel="C0LIMITS0A", text=f"burst {n}")

    error = refused(lambda: client.chat_postMessage(channel="C0LIMITS0A", text="one too many"))

    assert error.response.status_code == 429
    assert error.response["error"] == "ratelimited"
    retry_after = error.response.headers["Retry-After"]
    assert retry_after.isdigit() and int(retry_after) >= 1
    assert [m["text"] for m in messages(real, "C0LIMITS0A")] == ["burst 0", "burst 1", "burst 2"]
    assert (calls(real)[-1]["status"], calls(real)[-1]["error"]) == (429, "ratelimited")


def test_another_channel_is_unaffected_and_a_name_shares_its_channels_limit(
    real: SandboxHttp,
) -> None:
    client = web(real)
    for n in range(3):
        client.chat_postMessage(channel="C0LIMITS0A", text=f"a{n}")

    # The same channel by name is the same channel.
    assert limited(lambda: client.chat_postMessage(channel="#limits-a", text="x"))
    assert client.chat_postMessage(channel="C0LIMITS0B", text="b0")["ok"]
    assert [m["text"] for m in messages(real, "C0LIMITS0B")] == ["b0"]


def test_the_channel_gets_one_post_back_a_second(real: SandboxHttp, clock: Clock) -> None:
    client = web(real)
    for n in range(3):
        client.chat_postMessage(channel="C0LIMITS0A", text=f"burst {n}")
    clock.advance(0.5)
    assert limited(lambda: client.chat_postMessage(channel="C0LIMITS0A", text="early"))

    clock.advance(0.5)

    assert client.chat_postMessage(channel="C0LIMITS0A", text="on time")["ok"]
    assert limited(lambda: client.chat_postMessage(channel="C0LIMITS0A", text="x"))


def test_a_scaled_sandbox_takes_scale_posts_a_second_per_channel(clock: Clock) -> None:
    slack = own_slack(20, clock)
    try:
        client = web(slack)
        for n in range(40):  # two seconds at twenty a second
            client.chat_postMessage(channel="C0LIMITS0A", text=str(n))
            clock.advance(1 / 20)
        for _ in range(3):  # the burst, refilled while posting at the rate
            client.chat_postMessage(channel="C0LIMITS0A", text="burst")

        error = refused(lambda: client.chat_postMessage(channel="C0LIMITS0A", text="over"))

        # Whole seconds, as Slack sends it, even when the wait is a twentieth of one.
        assert error.response.headers["Retry-After"] == "1"
        assert len(messages(slack, "C0LIMITS0A")) == 43
    finally:
        slack.close()


def test_the_bucket_refills_after_the_scaled_time_on_a_real_clock() -> None:
    slack = own_slack(10)
    try:
        client = web(slack)
        # The burst, and whatever refilled while it was spent (a post takes far less than 0.1 s).
        burst_of(lambda: client.chat_postMessage(channel="C0LIMITS0A", text="burst"), most=50)

        time.sleep(2 / 10)  # two posts' worth at ten a second

        assert client.chat_postMessage(channel="C0LIMITS0A", text="refilled")["ok"]
    finally:
        slack.close()


# -- tiers: per method, per workspace ---------------------------------------------


def test_tiers_differ_per_method(real: SandboxHttp) -> None:
    client = web(real)

    bursts = {
        "usergroups.users.list (Tier 2)": burst_of(
            lambda: client.usergroups_users_list(usergroup=GROUP)
        ),
        "conversations.info (Tier 3)": burst_of(
            lambda: client.conversations_info(channel="C0LIMITS0A")
        ),
        "users.info (Tier 4)": burst_of(lambda: client.users_info(user=USER)),
    }

    assert bursts == {
        "usergroups.users.list (Tier 2)": 20,
        "conversations.info (Tier 3)": 50,
        "users.info (Tier 4)": 100,
    }
    # Each method has its own bucket: posting is still allowed.
    assert client.chat_postMessage(channel="C0LIMITS0A", text="still fine")["ok"]


def test_retry_after_is_the_whole_seconds_until_a_call_is_back(
    real: SandboxHttp, clock: Clock
) -> None:
    client = web(real)
    assert burst_of(lambda: client.usergroups_users_list(usergroup=GROUP)) == 20

    # Tier 2 refills one call every 3 s.
    first = refused(lambda: client.usergroups_users_list(usergroup=GROUP))
    clock.advance(1.5)
    second = refused(lambda: client.usergroups_users_list(usergroup=GROUP))
    clock.advance(1.5)

    assert first.response.headers["Retry-After"] == "3"
    assert second.response.headers["Retry-After"] == "2"
    assert client.usergroups_users_list(usergroup=GROUP)["users"] == [USER]


def test_a_limited_update_changes_nothing(real: SandboxHttp) -> None:
    client = web(real)
    ts = client.chat_postMessage(channel="C0LIMITS0A", text="v1")["ts"]
    assert burst_of(lambda: client.chat_update(channel="C0LIMITS0A", ts=ts, text="v2")) == 50

    error = refused(lambda: client.chat_update(channel="C0LIMITS0A", ts=ts, text="v3"))

    assert error.response.status_code == 429
    [message] = messages(real, "C0LIMITS0A")
    assert message["text"] == "v2" and len(message["edits"]) == 50


def test_scale_zero_or_less_disables_every_limit() -> None:
    for scale in (0, -1):
        slack = own_slack(scale)
        try:
            client = web(slack)
            for n in range(25):
                client.chat_postMessage(channel="C0LIMITS0A", text=str(n))
                client.usergroups_users_list(usergroup=GROUP)

            assert len(messages(slack, "C0LIMITS0A")) == 25
            table = httpx.get(f"{slack.url}/_sandbox/rate_limits").json()
            assert (table["scale"], table["enforced"]) == (scale, False)
        finally:
            slack.close()


# -- GET /_sandbox/rate_limits ------------------------------------------------


def test_the_rate_limits_endpoint_shows_the_table_in_use(clock: Clock) -> None:
    slack = own_slack(20, clock)
    try:
        answer = httpx.get(f"{slack.url}/_sandbox/rate_limits")

        assert answer.status_code == 200
        table = answer.json()
        assert (table["scale"], table["enforced"]) == (20, True)
        assert set(table["methods"]) == set(METHODS)
        assert table["methods"]["chat.update"] == [
            {
                "tier": "Tier 3",
                "per": "workspace",
                "per_minute": 50,
                "burst": 50,
                "scaled_per_minute": 1000,
            }
        ]
        post = table["methods"]["chat.postMessage"]
        assert [(p["per"], p["per_minute"], p["burst"]) for p in post] == [
            ("channel", 60, 3),
            ("workspace", 300, 300),
        ]
        tiers = {name: t["per_minute"] for name, t in table["tiers"].items()}
        assert tiers == {"Tier 1": 1, "Tier 2": 20, "Tier 3": 50, "Tier 4": 100}
        assert httpx.post(f"{slack.url}/_sandbox/rate_limits").status_code == 405
    finally:
        slack.close()


def test_the_session_sandbox_runs_at_the_tests_scale(sandbox: Sandbox) -> None:
    table = httpx.get(f"{sandbox.http.url}/_sandbox/rate_limits").json()

    assert (table["scale"], table["enforced"]) == (SLACK_RATE_SCALE, True)


# -- faults: slack_latency and after_post -------------------------------------------


def arm(slack: SandboxHttp, **fault: Any) -> dict[str, Any]:
    answer = httpx.post(f"{slack.url}/_sandbox/faults", json=fault)
    assert answer.status_code == 201, answer.text
    armed: dict[str, Any] = answer.json()
    return armed


def timed(call: Callable[[], Any]) -> float:
    started = time.monotonic()
    call()
    return time.monotonic() - started


def test_latency_delays_exactly_the_next_k_calls(slack: SandboxHttp, channel: str) -> None:
    client = web(slack)
    arm(slack, kind="slack_latency", ms=800, times=2)

    durations = [
        timed(lambda n=n: client.chat_postMessage(channel=channel, text=f"slow {n}"))
        for n in range(3)
    ]

    assert durations[0] >= 0.8 and durations[1] >= 0.8
    assert durations[2] < 0.8  # the fault is used up: no delay (a call takes milliseconds)
    assert httpx.get(f"{slack.url}/_sandbox/faults").json() == []
    # Delayed calls then went on as usual.
    assert [m["text"] for m in messages(slack, channel)] == ["slow 0", "slow 1", "slow 2"]


@pytest.mark.parametrize("ms", [0, -5, 60_001, "500", 1.5, True, None])
def test_latency_needs_ms_from_1_to_60000(slack: SandboxHttp, ms: Any) -> None:
    fault = {"kind": "slack_latency"} if ms is None else {"kind": "slack_latency", "ms": ms}

    answer = httpx.post(f"{slack.url}/_sandbox/faults", json=fault)

    assert answer.status_code == 400
    assert "ms" in answer.json()["error"]


def test_latency_of_a_minute_is_accepted(slack: SandboxHttp) -> None:
    armed = arm(slack, kind="slack_latency", ms=60_000)

    assert (armed["kind"], armed["ms"], armed["times"]) == ("slack_latency", 60_000, 1)


def test_a_5xx_after_post_posts_and_still_answers_503(slack: SandboxHttp, channel: str) -> None:
    arm(slack, kind="slack_5xx", status=503, after_post=True)

    error = refused(lambda: web(slack).chat_postMessage(channel=channel, text="lost answer"))

    assert error.response.status_code == 503
    assert [m["text"] for m in messages(slack, channel)] == ["lost answer"]
    mine = [c for c in calls(slack) if c["params"].get("channel") == channel]
    assert [(c["status"], c["error"]) for c in mine] == [(503, "server_error")]


def test_a_client_retrying_a_lost_answer_posts_twice(slack: SandboxHttp, channel: str) -> None:
    arm(slack, kind="slack_5xx", status=503, after_post=True)
    client = WebClient(
        token=TOKEN,
        base_url=f"{slack.url}/api/",
        retry_handlers=[ServerErrorRetryHandler(max_retry_count=1)],
    )

    assert client.chat_postMessage(channel=channel, text="deploying")["ok"]

    assert [m["text"] for m in messages(slack, channel)] == ["deploying", "deploying"]


def test_a_429_after_post_updates_and_still_answers_429(slack: SandboxHttp, channel: str) -> None:
    client = web(slack)
    ts = client.chat_postMessage(channel=channel, text="v1")["ts"]
    arm(slack, kind="slack_429", retry_after=2, after_post=True)

    error = refused(lambda: client.chat_update(channel=channel, ts=ts, text="v2"))

    assert error.response.status_code == 429
    assert error.response.headers["Retry-After"] == "2"
    assert [m["text"] for m in messages(slack, channel)] == ["v2"]


def test_without_after_post_nothing_is_performed(slack: SandboxHttp, channel: str) -> None:
    armed = arm(slack, kind="slack_5xx")

    refused(lambda: web(slack).chat_postMessage(channel=channel, text="never"))

    assert armed["after_post"] is False
    assert messages(slack, channel) == []


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "slack_5xx", "after_post": "yes"},
        {"kind": "slack_429", "after_post": 1},
        {"kind": "build_fail", "after_post": True},
    ],
)
def test_after_post_is_a_boolean_for_slack_429_and_5xx_only(
    slack: SandboxHttp, fault: dict[str, Any]
) -> None:
    answer = httpx.post(f"{slack.url}/_sandbox/faults", json=fault)

    assert answer.status_code == 400
    assert "after_post" in answer.json()["error"]
