"""Slack's external file upload in the sandbox, through the real slack_sdk over HTTP:
files.getUploadURLExternal, a POST of the bytes to the upload URL it gave, then
files.completeUploadExternal into a thread; and Slack's refusals of each step.

Every sink here is the test's own (no rate limits, no retries), so each answer is seen
exactly as Slack would send it.
"""

from __future__ import annotations

import base64
import hashlib
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

TOKEN = "xoxb-sandbox-files"
CHANNEL = "C0FILES001"
OUTSIDE = "C0FILESOUT"  # public, the bot has not joined it
CONTENT = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


def own_slack(scopes: set[str] | None = None) -> SandboxHttp:
    http = SandboxHttp(Faults(), sink=SlackSink(scopes=scopes), rate_limits=SlackRateLimits(0))
    http.sink.add_channel(CHANNEL, "deploys")
    http.sink.add_channel(OUTSIDE, "general", is_member=False)
    http.start()
    return http


@pytest.fixture
def slack() -> Iterator[SandboxHttp]:
    http = own_slack()
    yield http
    http.close()


@pytest.fixture
def web(slack: SandboxHttp) -> WebClient:
    return WebClient(token=TOKEN, base_url=f"{slack.url}/api/", retry_handlers=[])


def refused(call: Callable[[], Any]) -> Any:
    """The answer of a call Slack refused (HTTP 200, ok false)."""
    with pytest.raises(SlackApiError) as raised:
        call()
    assert raised.value.response.status_code == 200
    assert raised.value.response["ok"] is False
    return raised.value.response


def shared(slack: SandboxHttp, **query: str) -> list[dict[str, Any]]:
    answer = httpx.get(f"{slack.url}/_sandbox/slack/files", params=query)
    assert answer.status_code == 200
    files: list[dict[str, Any]] = answer.json()
    return files


def test_files_upload_v2_lands_in_the_thread(slack: SandboxHttp, web: WebClient) -> None:
    parent = web.chat_postMessage(channel=CHANNEL, text="deploy d-1 succeeded")["ts"]

    answer = web.files_upload_v2(
        channel=CHANNEL,
        thread_ts=parent,
        filename="analysis-d-1.png",
        title="Analysis of d-1",
        content=CONTENT,
    )

    assert answer["ok"] is True
    [file] = answer["files"]
    assert file["title"] == "Analysis of d-1"
    [kept] = shared(slack, channel=CHANNEL, thread_ts=parent)
    assert kept["id"] == file["id"]
    assert kept["filename"] == "analysis-d-1.png"
    assert kept["length"] == len(CONTENT)
    assert kept["sha256"] == hashlib.sha256(CONTENT).hexdigest()
    assert base64.b64decode(kept["content_base64"]) == CONTENT
    # It shows in the thread, as a reply carrying the file, and the parent counts it.
    messages = web.conversations_history(channel=CHANNEL)["messages"]
    assert [m["ts"] for m in messages] == [parent]
    assert messages[0]["reply_count"] == 1
    thread = httpx.get(
        f"{slack.url}/_sandbox/messages", params={"channel": CHANNEL, "thread_ts": parent}
    ).json()
    [reply] = [m for m in thread if m["ts"] != parent]
    assert [f["id"] for f in reply["files"]] == [file["id"]]
    methods = [call["method"] for call in slack.sink.calls()]
    assert methods[1:4] == ["files.getUploadURLExternal", "upload", "files.completeUploadExternal"]


def test_bytes_of_another_length_are_refused_and_nothing_is_shared(
    slack: SandboxHttp, web: WebClient
) -> None:
    begun = web.files_getUploadURLExternal(filename="chart.png", length=len(CONTENT))

    upload = httpx.post(begun["upload_url"], content=CONTENT[:-1])

    assert upload.status_code == 400
    assert "length" in upload.text
    answer = refused(
        lambda: web.files_completeUploadExternal(
            files=[{"id": begun["file_id"], "title": "chart"}], channel_id=CHANNEL
        )
    )
    assert answer["error"] == "file_not_found"
    assert shared(slack) == []


def test_complete_without_the_upload_is_file_not_found(slack: SandboxHttp, web: WebClient) -> None:
    begun = web.files_getUploadURLExternal(filename="chart.png", length=10)

    answer = refused(
        lambda: web.files_completeUploadExternal(
            files=[{"id": begun["file_id"], "title": "chart"}], channel_id=CHANNEL
        )
    )

    assert answer["error"] == "file_not_found"
    assert shared(slack) == []
    assert slack.sink.messages(CHANNEL) == []


def test_a_file_is_completed_once(slack: SandboxHttp, web: WebClient) -> None:
    begun = web.files_getUploadURLExternal(filename="chart.png", length=len(CONTENT))
    assert httpx.post(begun["upload_url"], content=CONTENT).status_code == 200
    files = [{"id": begun["file_id"], "title": "chart"}]
    web.files_completeUploadExternal(files=files, channel_id=CHANNEL)

    again = refused(lambda: web.files_completeUploadExternal(files=files, channel_id=CHANNEL))

    assert again["error"] == "file_not_found"  # "This method can only be called once."
    assert len(shared(slack)) == 1


@pytest.mark.parametrize("length", [0, -5, "many"])
def test_a_length_that_is_no_size_is_invalid_arguments(web: WebClient, length: Any) -> None:
    answer = refused(lambda: web.files_getUploadURLExternal(filename="chart.png", length=length))

    assert answer["error"] == "invalid_arguments"


def test_files_need_the_files_write_scope() -> None:
    slack = own_slack(scopes=set(DEFAULT_SCOPES) - {"files:write"})
    try:
        web = WebClient(token=TOKEN, base_url=f"{slack.url}/api/", retry_handlers=[])
        answer = refused(lambda: web.files_getUploadURLExternal(filename="a.png", length=3))
    finally:
        slack.close()

    assert answer["error"] == "missing_scope"
    assert answer["needed"] == "files:write"


def test_a_channel_the_bot_has_not_joined_is_not_in_channel(
    slack: SandboxHttp, web: WebClient
) -> None:
    with pytest.raises(SlackApiError) as raised:
        web.files_upload_v2(channel=OUTSIDE, filename="chart.png", content=CONTENT)

    assert raised.value.response["error"] == "not_in_channel"
    assert shared(slack) == []
    assert slack.sink.messages(OUTSIDE) == []


def test_an_armed_slack_error_refuses_the_share(slack: SandboxHttp, web: WebClient) -> None:
    fault = httpx.post(
        f"{slack.url}/_sandbox/faults",
        json={
            "kind": "slack_error",
            "method": "files.completeUploadExternal",
            "error": "not_in_channel",
        },
    )
    assert fault.status_code == 201

    with pytest.raises(SlackApiError) as raised:
        web.files_upload_v2(channel=CHANNEL, filename="chart.png", content=CONTENT)

    assert raised.value.response["error"] == "not_in_channel"
    assert shared(slack) == []
