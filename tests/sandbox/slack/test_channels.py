"""Channels the bot has not joined, the app's scopes, conversations.history with message
metadata, and the Slack faults aimed at one method: through the real slack_sdk over HTTP.

Every sink here is the test's own (no rate limits unless a test says so, no retries), so
each answer is seen exactly as Slack would send it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from deployer_sandbox.common.faults import Faults
from deployer_sandbox.harness.http_server import SandboxHttp
from deployer_sandbox.slack.rate_limits import SlackRateLimits
from deployer_sandbox.slack.sink import DEFAULT_SCOPES, SlackSink
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

TOKEN = "xoxb-sandbox-channels"
JOINED = "C0JOINED01"  # public, the bot is in it
PRIVATE = "G0PRIVATE1"  # private, the bot is in it
PUBLIC_OUT = "C0OUTSIDE1"  # public, the bot is not in it
PRIVATE_OUT = "G0OUTSIDE1"  # private, the bot is not in it
USER = "U0CHANNEL1"
GROUP = "S0CHANNEL1"


def own_slack(scopes: set[str] | None = None, rate_scale: float = 0) -> SandboxHttp:
    """A started sink with the four kinds of channel, a user and a group; `scopes` for its token."""
    http = SandboxHttp(
        Faults(), sink=SlackSink(scopes=scopes), rate_limits=SlackRateLimits(rate_scale)
    )
    http.sink.add_channel(JOINED, "deploys")
    http.sink.add_channel(PRIVATE, "ops", is_private=True)
    http.sink.add_channel(PUBLIC_OUT, "general", is_member=False)
    http.sink.add_channel(PRIVATE_OUT, "leads", is_private=True, is_member=False)
    http.sink.add_user(USER, "ada")
    http.sink.add_usergroup(GROUP, "oncall", [USER])
    http.start()
    return http


@pytest.fixture
def slack() -> Iterator[SandboxHttp]:
    http = own_slack()
    yield http
    http.close()


@pytest.fixture
def web(slack: SandboxHttp) -> WebClient:
    return client(slack)


def client(slack: SandboxHttp) -> WebClient:
    return WebClient(token=TOKEN, base_url=f"{slack.url}/api/", retry_handlers=[])


def refused(call: Callable[[], Any]) -> Any:
    """The answer of a call Slack refused (HTTP 200, ok false)."""
    with pytest.raises(SlackApiError) as raised:
        call()
    assert raised.value.response.status_code == 200
    assert raised.value.response["ok"] is False
    return raised.value.response


def posted(slack: SandboxHttp, channel: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = httpx.get(
        f"{slack.url}/_sandbox/messages", params={"channel": channel}
    ).json()
    return result


def arm(slack: SandboxHttp, **fault: Any) -> httpx.Response:
    return httpx.post(f"{slack.url}/_sandbox/faults", json=fault)


# -- channels the bot has not joined -------------------------------------------------


def test_the_default_scopes_are_the_deployers(slack: SandboxHttp) -> None:
    assert (
        slack.sink.scopes()
        == DEFAULT_SCOPES
        == {
            "commands",
            "chat:write",
            "chat:write.public",
            "usergroups:read",
            "channels:read",
            "groups:read",
            "channels:history",
            "groups:history",
            "files:write",
        }
    )


def test_every_answer_to_a_valid_token_names_its_scopes(slack: SandboxHttp) -> None:
    # As Slack does, ok or not: x-oauth-scopes is how a client learns its token's scopes.
    ok = httpx.post(f"{slack.url}/api/auth.test", headers={"Authorization": f"Bearer {TOKEN}"})
    assert set(ok.headers["x-oauth-scopes"].split(",")) == DEFAULT_SCOPES
    refused = httpx.post(
        f"{slack.url}/api/conversations.info",
        headers={"Authorization": f"Bearer {TOKEN}"},
        data={"channel": "CNOSUCHCHANNEL"},
    )
    assert refused.json()["ok"] is False and "x-oauth-scopes" in refused.headers
    unknown = httpx.post(
        f"{slack.url}/api/auth.test", headers={"Authorization": "Bearer not-a-token"}
    )
    assert "x-oauth-scopes" not in unknown.headers


def test_with_chat_write_public_the_bot_posts_in_a_public_channel_without_joining_it(
    slack: SandboxHttp, web: WebClient
) -> None:
    answer = web.chat_postMessage(channel=PUBLIC_OUT, text="prod is deploying")

    assert answer["channel"] == PUBLIC_OUT
    assert [m["text"] for m in posted(slack, PUBLIC_OUT)] == ["prod is deploying"]
    assert web.conversations_info(channel=PUBLIC_OUT)["channel"]["is_member"] is False


def test_without_chat_write_public_a_public_channel_not_joined_is_not_in_channel() -> None:
    slack = own_slack(scopes=set(DEFAULT_SCOPES) - {"chat:write.public"})
    try:
        web = client(slack)

        assert refused(lambda: web.chat_postMessage(channel=PUBLIC_OUT, text="x"))["error"] == (
            "not_in_channel"
        )
        # By name too, and a channel it is in still takes posts.
        assert refused(lambda: web.chat_postMessage(channel="#general", text="x"))["error"] == (
            "not_in_channel"
        )
        assert web.chat_postMessage(channel=JOINED, text="fine")["ok"]
        assert posted(slack, PUBLIC_OUT) == []
    finally:
        slack.close()


def test_a_private_channel_the_bot_is_not_in_is_channel_not_found(
    slack: SandboxHttp, web: WebClient
) -> None:
    for call in (
        lambda: web.chat_postMessage(channel=PRIVATE_OUT, text="x"),
        lambda: web.chat_postMessage(channel="leads", text="x"),
        lambda: web.conversations_info(channel=PRIVATE_OUT),
        lambda: web.conversations_history(channel=PRIVATE_OUT),
    ):
        assert refused(call)["error"] == "channel_not_found"
    assert posted(slack, PRIVATE_OUT) == []
    # A private channel it is in is a channel like any other.
    assert web.chat_postMessage(channel=PRIVATE, text="ops only")["ok"]


def test_the_bot_updates_its_own_message_where_it_posted_without_joining(
    slack: SandboxHttp, web: WebClient
) -> None:
    ts = web.chat_postMessage(channel=PUBLIC_OUT, text="v1")["ts"]

    answer = web.chat_update(channel=PUBLIC_OUT, ts=ts, text="v2")

    assert answer["text"] == "v2"
    assert [m["text"] for m in posted(slack, PUBLIC_OUT)] == ["v2"]


def test_once_the_bot_left_a_private_channel_it_cannot_update_its_message_there(
    slack: SandboxHttp, web: WebClient
) -> None:
    ts = web.chat_postMessage(channel=PRIVATE, text="v1")["ts"]
    slack.sink.add_channel(PRIVATE, "ops", is_private=True, is_member=False)  # removed

    assert refused(lambda: web.chat_update(channel=PRIVATE, ts=ts, text="v2"))["error"] == (
        "channel_not_found"
    )
    assert [m["text"] for m in posted(slack, PRIVATE)] == ["v1"]


def test_conversations_info_says_whether_the_bot_is_a_member(web: WebClient) -> None:
    joined = web.conversations_info(channel=JOINED)["channel"]
    outside = web.conversations_info(channel=PUBLIC_OUT)["channel"]
    private = web.conversations_info(channel=PRIVATE)["channel"]

    assert (joined["id"], joined["is_member"], joined["is_private"]) == (JOINED, True, False)
    assert (outside["name"], outside["is_member"], outside["is_channel"]) == (
        "general",
        False,
        True,
    )
    assert (private["is_member"], private["is_private"], private["is_group"]) == (True, True, True)


def test_conversations_info_needs_the_read_scope_of_the_channels_kind() -> None:
    slack = own_slack(scopes={"chat:write", "channels:read"})
    try:
        web = client(slack)

        assert web.conversations_info(channel=JOINED)["ok"]
        answer = refused(lambda: web.conversations_info(channel=PRIVATE))
        assert (answer["error"], answer["needed"], answer["provided"]) == (
            "missing_scope",
            "groups:read",
            "channels:read,chat:write",
        )
        slack.sink.set_scopes({"chat:write", "groups:read"})
        assert refused(lambda: web.conversations_info(channel=JOINED))["needed"] == "channels:read"
        assert web.conversations_info(channel=PRIVATE)["ok"]
    finally:
        slack.close()


def test_posting_needs_chat_write_and_group_members_usergroups_read() -> None:
    slack = own_slack(scopes={"channels:read"})
    try:
        web = client(slack)

        assert refused(lambda: web.chat_postMessage(channel=JOINED, text="x"))["needed"] == (
            "chat:write"
        )
        assert refused(lambda: web.usergroups_users_list(usergroup=GROUP))["needed"] == (
            "usergroups:read"
        )
    finally:
        slack.close()


# -- chat.postMessage metadata ---------------------------------------------------------


DEPLOYED = {"event_type": "deploy_started", "event_payload": {"deploy": "d-7", "env": "prod"}}


def test_metadata_is_kept_as_an_object_or_a_form_string(slack: SandboxHttp, web: WebClient) -> None:
    web.chat_postMessage(channel=JOINED, text="as JSON", metadata=DEPLOYED)
    form = {"channel": JOINED, "text": "as a form", "metadata": '{"event_type": "x_done", '
            '"event_payload": {"n": 1}}'}  # fmt: skip
    web.api_call("chat.postMessage", data=form)

    recorded = posted(slack, JOINED)

    assert [m["metadata"] for m in recorded] == [
        DEPLOYED,
        {"event_type": "x_done", "event_payload": {"n": 1}},
    ]


@pytest.mark.parametrize(
    ("metadata", "error"),
    [
        ("not json", "invalid_metadata_format"),
        ('["deploy_started"]', "invalid_metadata_format"),
        ('{"event_type": "deploy_started"}', "invalid_metadata_schema"),
        ('{"event_type": "", "event_payload": {}}', "invalid_metadata_schema"),
        ('{"event_type": "deploy_started", "event_payload": "d-7"}', "invalid_metadata_schema"),
    ],
)
def test_malformed_metadata_is_refused_and_nothing_is_posted(
    slack: SandboxHttp, web: WebClient, metadata: str, error: str
) -> None:
    form = {"channel": JOINED, "text": "x", "metadata": metadata}

    assert refused(lambda: web.api_call("chat.postMessage", data=form))["error"] == error
    assert posted(slack, JOINED) == []


def test_chat_update_keeps_replaces_or_removes_metadata(web: WebClient) -> None:
    ts = web.chat_postMessage(channel=JOINED, text="v1", metadata=DEPLOYED)["ts"]

    def shown() -> Any:
        [message] = web.conversations_history(channel=JOINED, include_all_metadata=True)["messages"]
        return message.get("metadata")

    web.chat_update(channel=JOINED, ts=ts, text="v2")
    assert shown() == DEPLOYED
    done = {"event_type": "deploy_done", "event_payload": {"deploy": "d-7"}}
    web.chat_update(channel=JOINED, ts=ts, text="v3", metadata=done)
    assert shown() == done
    web.api_call("chat.update", json={"channel": JOINED, "ts": ts, "text": "v4", "metadata": {}})
    assert shown() is None


# -- conversations.history ----------------------------------------------------------------


def test_history_lists_the_channels_timeline_newest_first(
    slack: SandboxHttp, web: WebClient
) -> None:
    parent = web.chat_postMessage(channel=JOINED, text="Deploy d-7")["ts"]
    web.chat_postMessage(channel=JOINED, text="build started", thread_ts=parent)
    web.chat_postMessage(
        channel=JOINED, text="prod is live", thread_ts=parent, reply_broadcast=True
    )
    slack.sink.post_as_user(JOINED, USER, "nice")
    web.chat_postEphemeral(channel=JOINED, user=USER, text="only you")
    gone = web.chat_postMessage(channel=JOINED, text="oops")["ts"]
    web.chat_delete(channel=JOINED, ts=gone)
    web.chat_postMessage(channel=PRIVATE, text="elsewhere")

    answer = web.conversations_history(channel=JOINED)

    assert [m["text"] for m in answer["messages"]] == ["nice", "prod is live", "Deploy d-7"]
    person, broadcast, root = answer["messages"]
    assert (person["user"], "bot_id" in person) == (USER, False)
    assert (broadcast["subtype"], broadcast["thread_ts"]) == ("thread_broadcast", parent)
    assert (root["ts"], root["thread_ts"], root["reply_count"]) == (parent, parent, 2)
    assert answer["has_more"] is False and "response_metadata" not in answer


def test_metadata_shows_only_with_include_all_metadata(web: WebClient) -> None:
    web.chat_postMessage(channel=JOINED, text="started", metadata=DEPLOYED)

    [plain] = web.conversations_history(channel=JOINED)["messages"]
    [full] = web.conversations_history(channel=JOINED, include_all_metadata=True)["messages"]

    assert "metadata" not in plain
    assert full["metadata"] == DEPLOYED


def test_history_pages_with_a_cursor_until_has_more_is_false(
    slack: SandboxHttp, web: WebClient
) -> None:
    posts = [slack.sink.post_as_user(JOINED, USER, f"m{n}") for n in range(5)]

    first = web.conversations_history(channel=JOINED, limit=2)
    assert first["has_more"] is True and first["response_metadata"]["next_cursor"]
    # Iterating a SlackResponse is slack_sdk following next_cursor, page by page.
    pages = [([m["ts"] for m in page["messages"]], page["has_more"]) for page in first]

    assert pages == [(posts[4:2:-1], True), (posts[2:0:-1], True), (posts[:1], False)]
    assert (
        refused(lambda: web.conversations_history(channel=JOINED, cursor="bm9wZQ=="))["error"]
        == "invalid_cursor"
    )


def test_history_keeps_to_oldest_latest_and_inclusive(slack: SandboxHttp, web: WebClient) -> None:
    ts = [slack.sink.post_as_user(JOINED, USER, f"m{n}") for n in range(5)]

    def texts(**bounds: Any) -> list[str]:
        return [m["text"] for m in web.conversations_history(channel=JOINED, **bounds)["messages"]]

    assert texts(oldest=ts[1], latest=ts[3]) == ["m2"]
    assert texts(oldest=ts[1], latest=ts[3], inclusive=True) == ["m3", "m2", "m1"]
    assert texts(oldest=ts[3]) == ["m4"]
    assert texts(latest=ts[1]) == ["m0"]
    assert (
        refused(lambda: web.conversations_history(channel=JOINED, oldest="yesterday"))["error"]
        == "invalid_ts_oldest"
    )
    assert (
        refused(lambda: web.conversations_history(channel=JOINED, latest="now"))["error"]
        == "invalid_ts_latest"
    )


def test_history_pages_hold_100_by_default_and_999_at_most(
    slack: SandboxHttp, web: WebClient
) -> None:
    for n in range(1000):
        slack.sink.post_as_user(JOINED, USER, f"m{n}")

    default = web.conversations_history(channel=JOINED)
    largest = web.conversations_history(channel=JOINED, limit=5000)

    assert (len(default["messages"]), default["has_more"]) == (100, True)
    assert (len(largest["messages"]), largest["has_more"]) == (999, True)
    assert largest["messages"][-1]["text"] == "m1"


def test_history_needs_the_history_scope_and_membership() -> None:
    slack = own_slack(scopes=set(DEFAULT_SCOPES) - {"channels:history"})
    try:
        web = client(slack)

        answer = refused(lambda: web.conversations_history(channel=JOINED))
        assert (answer["error"], answer["needed"]) == ("missing_scope", "channels:history")
        assert web.conversations_history(channel=PRIVATE)["ok"]  # groups:history
        slack.sink.set_scopes(DEFAULT_SCOPES)
        # Reading needs membership even where chat:write.public lets the bot post.
        assert refused(lambda: web.conversations_history(channel=PUBLIC_OUT))["error"] == (
            "not_in_channel"
        )
    finally:
        slack.close()


def test_history_is_limited_as_tier_3() -> None:
    slack = own_slack(rate_scale=1)
    try:
        web = client(slack)
        for _ in range(50):
            web.conversations_history(channel=JOINED)

        with pytest.raises(SlackApiError) as raised:
            web.conversations_history(channel=JOINED)

        assert raised.value.response.status_code == 429
        tier = httpx.get(f"{slack.url}/_sandbox/rate_limits").json()["methods"]
        assert tier["conversations.history"][0]["tier"] == "Tier 3"
    finally:
        slack.close()


# -- faults aimed at one method ----------------------------------------------------------


def test_a_5xx_for_one_method_leaves_the_others_untouched(
    slack: SandboxHttp, web: WebClient
) -> None:
    assert arm(slack, kind="slack_5xx", status=503, method="chat.update").status_code == 201
    ts = web.chat_postMessage(channel=JOINED, text="v1")["ts"]  # passes

    with pytest.raises(SlackApiError) as raised:
        web.chat_update(channel=JOINED, ts=ts, text="v2")

    assert raised.value.response.status_code == 503
    assert web.chat_update(channel=JOINED, ts=ts, text="v2")["ok"]  # used up
    assert [m["text"] for m in posted(slack, JOINED)] == ["v2"]


def test_a_429_for_one_method_leaves_the_others_untouched(
    slack: SandboxHttp, web: WebClient
) -> None:
    arm(slack, kind="slack_429", retry_after=0, method="usergroups.users.list", times=2)

    assert web.chat_postMessage(channel=JOINED, text="fine")["ok"]
    for _ in range(2):
        with pytest.raises(SlackApiError) as raised:
            web.usergroups_users_list(usergroup=GROUP)
        assert raised.value.response.status_code == 429
        assert raised.value.response["error"] == "ratelimited"
    assert web.usergroups_users_list(usergroup=GROUP)["users"] == [USER]


def test_slack_error_answers_the_named_method_with_slacks_refusal(
    slack: SandboxHttp, web: WebClient
) -> None:
    fault = arm(
        slack,
        kind="slack_error",
        method="usergroups.users.list",
        error="plan_upgrade_required",
        times=2,
    )
    assert fault.status_code == 201
    assert (fault.json()["method"], fault.json()["error"]) == (
        "usergroups.users.list",
        "plan_upgrade_required",
    )

    assert web.conversations_info(channel=JOINED)["ok"]  # another method: untouched
    for _ in range(2):
        answer = refused(lambda: web.usergroups_users_list(usergroup=GROUP))
        assert answer["error"] == "plan_upgrade_required"
    assert web.usergroups_users_list(usergroup=GROUP)["users"] == [USER]
    logged = [
        c for c in httpx.get(f"{slack.url}/_sandbox/calls").json() if "usergroup" in c["params"]
    ]
    assert [(c["status"], c["error"]) for c in logged] == [
        (200, "plan_upgrade_required"),
        (200, "plan_upgrade_required"),
        (200, None),
    ]


@pytest.mark.parametrize(
    ("fault", "complaint"),
    [
        ({"kind": "slack_error", "error": "plan_upgrade_required"}, "method must be"),
        ({"kind": "slack_error", "method": "usergroups.users.list"}, "slack_error needs error"),
        (
            {"kind": "slack_error", "method": "chat.postMessage", "error": "Bad Thing"},
            "needs error",
        ),
        ({"kind": "slack_5xx", "method": "chat.postMesage"}, "chat.postMessage"),
        ({"kind": "slack_latency", "ms": 5, "method": "chat.update"}, "method applies only"),
        ({"kind": "slack_429", "error": "x"}, "error applies only to slack_error"),
    ],
)
def test_bad_method_faults_are_400_saying_why(
    slack: SandboxHttp, fault: dict[str, Any], complaint: str
) -> None:
    answer = arm(slack, **fault)

    assert answer.status_code == 400
    assert complaint in answer.json()["error"]
    assert httpx.get(f"{slack.url}/_sandbox/faults").json() == []
