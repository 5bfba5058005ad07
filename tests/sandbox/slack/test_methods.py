"""The Slack sink, through the real slack_sdk clients over HTTP."""

from __future__ import annotations

import re
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from deployer_sandbox.common.faults import Faults
from deployer_sandbox.harness.http_server import SandboxHttp
from deployer_sandbox.slack.sink import BOT_USER_ID, TEAM_ID, SlackSink
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.webhook import WebhookClient

from tests.slack_fixtures import channel_fixture, slack_fixture  # noqa: F401  (fixtures)

TOKEN = "xoxb-sandbox-test"
TS = re.compile(r"^\d{10}\.\d{6}$")


def client(slack: SandboxHttp, token: str | None = TOKEN, **kwargs: Any) -> WebClient:
    return WebClient(token=token, base_url=f"{slack.url}/api/", **kwargs)


def messages(slack: SandboxHttp, **query: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{slack.url}/_sandbox/messages", params=query)
    assert answer.status_code == 200
    result: list[dict[str, Any]] = answer.json()
    return result


def calls(slack: SandboxHttp, channel: str) -> list[dict[str, Any]]:
    every: list[dict[str, Any]] = httpx.get(f"{slack.url}/_sandbox/calls").json()
    return [call for call in every if call["params"].get("channel") == channel]


def arm(slack: SandboxHttp, **fault: Any) -> None:
    assert httpx.post(f"{slack.url}/_sandbox/faults", json=fault).status_code == 201


def response_url(slack: SandboxHttp, **binding: str) -> str:
    answer = httpx.post(f"{slack.url}/_sandbox/response_urls", json=binding)
    assert answer.status_code == 201
    url: str = answer.json()["response_url"]
    return url


def test_post_message_answers_like_slack_and_is_recorded(slack: SandboxHttp, channel: str) -> None:
    web = client(slack)
    first = web.chat_postMessage(channel=channel, text="Deploying *v1.4.2* to prod")
    second = web.chat_postMessage(channel=channel, text="second", blocks=[{"type": "divider"}])

    assert first["channel"] == channel
    assert TS.match(first["ts"]) and float(second["ts"]) > float(first["ts"])
    assert first["message"]["user"] == BOT_USER_ID
    assert first["message"]["team"] == TEAM_ID
    assert first["message"]["text"] == "Deploying *v1.4.2* to prod"
    recorded = messages(slack, channel=channel)
    assert [(m["ts"], m["text"], m["blocks"]) for m in recorded] == [
        (first["ts"], "Deploying *v1.4.2* to prod", None),
        (second["ts"], "second", [{"type": "divider"}]),
    ]
    assert all(m["user"] == BOT_USER_ID and not m["ephemeral"] for m in recorded)


def test_form_encoded_blocks_are_stored_as_a_list(slack: SandboxHttp, channel: str) -> None:
    params = {"channel": channel, "text": "form", "blocks": '[{"type": "divider"}]'}
    client(slack).api_call("chat.postMessage", params=params)

    assert messages(slack, channel=channel)[0]["blocks"] == [{"type": "divider"}]


def test_post_to_unknown_channel_is_channel_not_found(slack: SandboxHttp) -> None:
    with pytest.raises(SlackApiError) as raised:
        client(slack).chat_postMessage(channel="C0NOSUCH00", text="hello")

    assert raised.value.response.status_code == 200
    assert raised.value.response["error"] == "channel_not_found"


def test_post_without_text_or_blocks_is_no_text(slack: SandboxHttp, channel: str) -> None:
    with pytest.raises(SlackApiError) as raised:
        client(slack).api_call("chat.postMessage", json={"channel": channel})

    assert raised.value.response["error"] == "no_text"
    assert messages(slack, channel=channel) == []


def test_thread_replies_are_recorded_in_their_thread(slack: SandboxHttp, channel: str) -> None:
    web = client(slack)
    parent = web.chat_postMessage(channel=channel, text="Deploy #7")["ts"]
    reply = web.chat_postMessage(channel=channel, text="Build started", thread_ts=parent)
    web.chat_postMessage(channel=channel, text="Done", thread_ts=parent, reply_broadcast=True)
    web.chat_postMessage(channel=channel, text="unrelated")

    assert reply["message"]["thread_ts"] == parent
    thread = messages(slack, channel=channel, thread_ts=parent)
    assert [(m["text"], m["reply_broadcast"]) for m in thread] == [
        ("Deploy #7", False),
        ("Build started", False),
        ("Done", True),
    ]
    assert thread[0]["reply_count"] == 2


def test_malformed_thread_ts_is_invalid_thread_ts(slack: SandboxHttp, channel: str) -> None:
    with pytest.raises(SlackApiError) as raised:
        client(slack).chat_postMessage(channel=channel, text="reply", thread_ts="0")

    assert raised.value.response["error"] == "invalid_thread_ts"


def test_update_keeps_the_edit_history(slack: SandboxHttp, channel: str) -> None:
    web = client(slack)
    ts = web.chat_postMessage(channel=channel, text="Building…")["ts"]
    web.chat_update(channel=channel, ts=ts, text="Deploying…")
    answer = web.chat_update(channel=channel, ts=ts, text="Live", blocks=[{"type": "divider"}])

    assert (answer["channel"], answer["ts"], answer["text"]) == (channel, ts, "Live")
    assert answer["message"]["edited"]["user"] == BOT_USER_ID
    [message] = messages(slack, channel=channel)
    assert (message["text"], message["blocks"]) == ("Live", [{"type": "divider"}])
    assert message["original"] == {"text": "Building…", "blocks": None}
    assert [(e["text"], e["blocks"]) for e in message["edits"]] == [
        ("Deploying…", None),
        ("Live", [{"type": "divider"}]),
    ]
    assert float(message["edits"][0]["ts_edited"]) > float(ts)


def test_update_of_unknown_ts_is_message_not_found(slack: SandboxHttp, channel: str) -> None:
    with pytest.raises(SlackApiError) as raised:
        client(slack).chat_update(channel=channel, ts="1700000000.000100", text="x")

    assert raised.value.response["error"] == "message_not_found"


def test_update_of_a_persons_message_is_cant_update_message(
    slack: SandboxHttp, channel: str
) -> None:
    ts = slack.sink.post_as_user(channel, "U0PERSON01", "/deploy prod")

    with pytest.raises(SlackApiError) as raised:
        client(slack).chat_update(channel=channel, ts=ts, text="hijacked")

    assert raised.value.response["error"] == "cant_update_message"


def test_ephemeral_is_recorded_for_its_user_only(slack: SandboxHttp, channel: str) -> None:
    user = "U" + uuid.uuid4().hex[:10].upper()
    slack.sink.add_user(user, "ada")

    answer = client(slack).chat_postEphemeral(channel=channel, user=user, text="Only you")

    assert TS.match(answer["message_ts"])
    [message] = messages(slack, channel=channel)
    assert message["ephemeral"] is True
    assert (message["user_target"], message["ts"]) == (user, answer["message_ts"])


def test_users_info_answers_for_registered_users(slack: SandboxHttp) -> None:
    user = "U" + uuid.uuid4().hex[:10].upper()
    slack.sink.add_user(user, "grace", real_name="Grace Hopper", email="grace@example.com")

    answer = client(slack).users_info(user=user)["user"]

    assert (answer["id"], answer["name"], answer["team_id"]) == (user, "grace", TEAM_ID)
    assert answer["profile"]["email"] == "grace@example.com"
    assert answer["is_bot"] is False


def test_users_info_of_unknown_user_is_user_not_found(slack: SandboxHttp) -> None:
    with pytest.raises(SlackApiError) as raised:
        client(slack).users_info(user="U0NOBODY00")

    assert raised.value.response["error"] == "user_not_found"


def test_auth_test_names_the_bot(slack: SandboxHttp) -> None:
    answer = client(slack).auth_test()

    assert (answer["user_id"], answer["team_id"]) == (BOT_USER_ID, TEAM_ID)


def test_missing_token_is_not_authed(slack: SandboxHttp, channel: str) -> None:
    with pytest.raises(SlackApiError) as raised:
        client(slack, token=None).chat_postMessage(channel=channel, text="hi")

    assert raised.value.response["error"] == "not_authed"


def test_wrong_token_is_invalid_auth_and_never_logged(slack: SandboxHttp, channel: str) -> None:
    with pytest.raises(SlackApiError) as raised:
        client(slack, token="xoxp-user-token").chat_postMessage(channel=channel, text="hi")

    assert raised.value.response["error"] == "invalid_auth"
    log = httpx.get(f"{slack.url}/_sandbox/calls").text
    assert "xoxp-user-token" not in log and TOKEN not in log
    assert calls(slack, channel)[-1]["error"] == "invalid_auth"


def test_configured_tokens_replace_the_default() -> None:
    own = SandboxHttp(Faults(), sink=SlackSink(tokens=["xoxb-the-one"]))
    own.start()
    try:
        assert client(own, token="xoxb-the-one").auth_test()["ok"]
        with pytest.raises(SlackApiError) as raised:
            client(own, token="xoxb-another").auth_test()
        assert raised.value.response["error"] == "invalid_auth"
    finally:
        own.close()


def test_unknown_method_is_unknown_method(slack: SandboxHttp) -> None:
    with pytest.raises(SlackApiError) as raised:
        client(slack).api_call("chat.teleport")

    assert raised.value.response["error"] == "unknown_method"


def test_429_carries_retry_after_without_a_retry_handler(slack: SandboxHttp, channel: str) -> None:
    arm(slack, kind="slack_429", retry_after=7)

    with pytest.raises(SlackApiError) as raised:
        client(slack, retry_handlers=[]).chat_postMessage(channel=channel, text="hi")

    assert raised.value.response.status_code == 429
    assert raised.value.response.headers["Retry-After"] == "7"
    assert raised.value.response["error"] == "ratelimited"
    assert messages(slack, channel=channel) == []


def test_429_is_honoured_by_the_rate_limit_retry_handler(slack: SandboxHttp, channel: str) -> None:
    arm(slack, kind="slack_429", retry_after=0)
    web = client(slack, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)])

    answer = web.chat_postMessage(channel=channel, text="after the wait")

    assert answer["ok"]
    assert [(c["method"], c["status"]) for c in calls(slack, channel)] == [
        ("chat.postMessage", 429),
        ("chat.postMessage", 200),
    ]
    assert [m["text"] for m in messages(slack, channel=channel)] == ["after the wait"]


def test_5xx_is_retried_by_the_server_error_retry_handler(slack: SandboxHttp, channel: str) -> None:
    arm(slack, kind="slack_5xx", status=503)
    web = client(slack, retry_handlers=[ServerErrorRetryHandler(max_retry_count=1)])

    answer = web.chat_postMessage(channel=channel, text="second time lucky")

    assert answer["ok"]
    assert [c["status"] for c in calls(slack, channel)] == [503, 200]


def test_5xx_without_retry_handler_fails_the_call(slack: SandboxHttp, channel: str) -> None:
    arm(slack, kind="slack_5xx", status=500)

    with pytest.raises(SlackApiError) as raised:
        client(slack, retry_handlers=[]).chat_postMessage(channel=channel, text="hi")

    assert raised.value.response.status_code == 500


def test_response_url_posts_are_recorded(slack: SandboxHttp, channel: str) -> None:
    url = response_url(slack, channel=channel, user="U0ASKER001")
    hook = WebhookClient(url)

    private = hook.send(text="Deploy queued")
    public = hook.send(text="Deploying to prod", response_type="in_channel")

    assert (private.status_code, private.body) == (200, "ok")
    assert (public.status_code, public.body) == (200, "ok")
    first, second = messages(slack, channel=channel)
    assert (first["ephemeral"], first["user_target"], first["response_url"]) == (
        True,
        "U0ASKER001",
        url,
    )
    assert (second["ephemeral"], second["response_type"]) == (False, "in_channel")


def test_response_url_replace_original_edits_the_message(slack: SandboxHttp, channel: str) -> None:
    ts = client(slack).chat_postMessage(channel=channel, text="Approve?")["ts"]
    hook = WebhookClient(response_url(slack, channel=channel, message_ts=ts))

    assert hook.send(text="Approved by ada", replace_original=True).status_code == 200

    [message] = messages(slack, channel=channel)
    assert message["text"] == "Approved by ada"
    assert [e["text"] for e in message["edits"]] == ["Approved by ada"]


def test_response_url_accepts_five_posts_only(slack: SandboxHttp, channel: str) -> None:
    hook = WebhookClient(response_url(slack, channel=channel, user="U0ASKER001"))

    answers = [hook.send(text=f"update {n}") for n in range(6)]

    assert [a.status_code for a in answers] == [200] * 5 + [404]
    assert answers[-1].body == "used_url"
    assert len(messages(slack, channel=channel)) == 5


def test_response_url_expires_after_thirty_minutes() -> None:
    now = [1_700_000_000.0]
    own = SandboxHttp(Faults(), sink=SlackSink(clock=lambda: now[0]))
    own.start()
    try:
        hook = WebhookClient(own.mint_response_url(channel="C0EXPIRE01", user="U0ASKER001"))
        assert hook.send(text="in time").status_code == 200
        now[0] += 30 * 60 + 1

        late = hook.send(text="too late")

        assert (late.status_code, late.body) == (404, "expired_url")
    finally:
        own.close()


def test_response_url_without_text_is_no_text(slack: SandboxHttp, channel: str) -> None:
    hook = WebhookClient(response_url(slack, channel=channel))

    answer = hook.send_dict({"response_type": "ephemeral"})

    assert (answer.status_code, answer.body) == (400, "no_text")


def test_clearing_messages_empties_the_record() -> None:
    own = SandboxHttp(Faults())
    own.sink.add_channel("C0CLEAR001", "clear")
    own.start()
    try:
        client(own).chat_postMessage(channel="C0CLEAR001", text="soon gone")
        assert httpx.delete(f"{own.url}/_sandbox/messages").status_code == 204

        assert messages(own) == []
        assert httpx.get(f"{own.url}/_sandbox/calls").json() == []
    finally:
        own.close()


def test_concurrent_posts_get_distinct_increasing_ts(slack: SandboxHttp, channel: str) -> None:
    web = client(slack)
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(
            pool.map(lambda n: web.chat_postMessage(channel=channel, text=str(n)), range(40))
        )

    recorded = [m["ts"] for m in messages(slack, channel=channel)]
    assert sorted(a["ts"] for a in answers) == recorded
    assert len(set(recorded)) == 40 and recorded == sorted(recorded, key=float)


def test_invalid_json_body_is_invalid_json(slack: SandboxHttp) -> None:
    answer = httpx.post(
        f"{slack.url}/api/chat.postMessage",
        content=b"{not json",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )

    assert (answer.status_code, answer.json()) == (200, {"ok": False, "error": "invalid_json"})
