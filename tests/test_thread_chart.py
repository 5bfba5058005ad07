"""The analysis chart in a deploy's Slack thread: the final reply tells the windows in
words, and the chart is shared in the thread right after it, through the same listener,
outbox and courier a worker uses, over slack_sdk to the sandbox's Slack.

The chart is shared once however the outbox retries, and a chart Slack will not take
leaves the text reply as it is and the thread complete.
"""

from __future__ import annotations

import base64
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from deployer_sandbox.common.faults import Faults
from deployer_sandbox.harness.http_server import SandboxHttp
from deployer_sandbox.slack.rate_limits import SlackRateLimits
from deployer_sandbox.slack.sink import DEFAULT_SCOPES

from deployer.adapters.slack_chat import SlackChat
from deployer.adapters.slack_client import slack_web_client
from deployer.front.outbox import Outbox
from deployer.front.thread import Courier, SlackThread, open_thread
from deployer.front.thread_box import ThreadBox, change_box
from deployer.front.thread_files import FILE_TRIES
from deployer.pipeline.events import DeployFinished
from deployer.pipeline.record import DeployRecord
from deployer.store.sqlite import SqliteStore
from tests.analysis_records import THRESHOLDS, judged_record
from tests.test_analysis_chart import png_size

TOKEN = "xoxb-thread-chart"


@pytest.fixture
def slack() -> Iterator[SandboxHttp]:
    http = SandboxHttp(Faults(), rate_limits=SlackRateLimits(0))
    http.start()
    yield http
    http.close()


@pytest.fixture
def channel(slack: SandboxHttp) -> str:
    channel_id = "C" + uuid.uuid4().hex[:10].upper()
    slack.sink.add_channel(channel_id, "deploys")
    return channel_id


@pytest.fixture
def outbox(slack: SandboxHttp, tmp_path: Path) -> Outbox:
    # Slack as a worker's outbox uses it: one try per call, the outbox retries.
    chat = SlackChat(slack_web_client(TOKEN, slack.url + "/api/", retries=False, timeout=2))
    return Outbox(SqliteStore(tmp_path / "state.db"), chat)


def tell_the_end(outbox: Outbox, channel: str, record: DeployRecord) -> ThreadBox:
    """What a worker does with a finished deploy's thread: the listener, then the flush."""
    open_thread(outbox, channel, record)
    courier = Courier(outbox, record.id)
    thread = SlackThread(outbox, record, courier, THRESHOLDS)
    thread(DeployFinished(record))
    assert thread.flush_pending()
    assert courier.flush(budget=20)
    box = outbox.get(record.id)
    assert box is not None and box.ts is not None and not box.pending() and not box.ended
    return box


def arm(slack: SandboxHttp, **fault: Any) -> None:
    assert httpx.post(f"{slack.url}/_sandbox/faults", json=fault).status_code == 201


def files_in(slack: SandboxHttp, channel: str, thread_ts: str) -> list[dict[str, Any]]:
    files: list[dict[str, Any]] = httpx.get(
        f"{slack.url}/_sandbox/slack/files",
        params={"channel": channel, "thread_ts": thread_ts},
    ).json()
    return files


def replies(slack: SandboxHttp, channel: str, box: ThreadBox) -> list[dict[str, Any]]:
    return [m for m in slack.sink.messages(channel, box.ts) if m["ts"] != box.ts and m["thread_ts"]]


def uploads(slack: SandboxHttp) -> list[str]:
    return [c["method"] for c in slack.sink.calls() if c["method"].startswith("files.")]


def test_the_final_reply_tells_the_windows_and_the_chart_follows_in_the_thread(
    slack: SandboxHttp, channel: str, outbox: Outbox
) -> None:
    record = judged_record("d-chart-ok")

    box = tell_the_end(outbox, channel, record)

    [text, shown] = replies(slack, channel, box)
    assert text["text"].startswith("Analysis, candidate against stable:")
    assert "watch 1 failed: candidate 600 requests, 10% 5xx, p95 310 ms" in text["text"]
    assert [f["name"] for f in shown["files"]] == ["analysis-d-chart-ok.png"]
    [chart] = files_in(slack, channel, box.ts)
    assert chart["filename"] == "analysis-d-chart-ok.png"
    assert chart["title"] == "Analysis of d-chart-ok (prod)"
    assert png_size(base64.b64decode(chart["content_base64"])) == (800, 400)


def test_the_chart_is_shared_once_when_the_outbox_retries(
    slack: SandboxHttp, channel: str, outbox: Outbox
) -> None:
    # Failures that share nothing: a 503 before the upload began, then Slack's 429 on
    # the share itself (each makes the outbox try the file again, from the start), and
    # a 503 on the thread's first post before any of it.
    arm(slack, kind="slack_5xx", method="files.getUploadURLExternal", times=1)
    arm(slack, kind="slack_429", method="files.completeUploadExternal", retry_after=1, times=1)
    arm(slack, kind="slack_5xx", method="chat.postMessage", times=1)

    box = tell_the_end(outbox, channel, judged_record("d-chart-retried"))

    assert len(files_in(slack, channel, box.ts)) == 1
    [_, shown] = replies(slack, channel, box)
    assert len(shown["files"]) == 1
    assert uploads(slack).count("files.completeUploadExternal") == 2 <= FILE_TRIES


def test_a_share_whose_answer_was_lost_is_not_shared_again(
    slack: SandboxHttp, channel: str, outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    # Slack shares the file, and its answer is lost on the way back.
    arm(slack, kind="slack_5xx", method="files.completeUploadExternal", after_post=True, times=1)

    with caplog.at_level(logging.ERROR):
        box = tell_the_end(outbox, channel, judged_record("d-chart-unsure"))

    assert len(files_in(slack, channel, box.ts)) == 1
    assert uploads(slack).count("files.completeUploadExternal") == 1
    assert "Slack may show it" in caplog.text


def test_a_refused_chart_leaves_the_text_reply_intact(
    slack: SandboxHttp, channel: str, outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    arm(
        slack,
        kind="slack_error",
        method="files.completeUploadExternal",
        error="not_in_channel",
        times=1,
    )

    with caplog.at_level(logging.ERROR):
        box = tell_the_end(outbox, channel, judged_record("d-chart-refused"))

    [text] = replies(slack, channel, box)
    assert text["text"].startswith("Analysis, candidate against stable:")
    assert files_in(slack, channel, box.ts) == []
    assert uploads(slack).count("files.completeUploadExternal") == 1  # never tried again
    assert "analysis-d-chart-refused.png was not shared" in caplog.text
    assert "invite it there" in caplog.text


def test_without_files_write_the_log_names_the_scope(
    slack: SandboxHttp, channel: str, outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    slack.sink.set_scopes(set(DEFAULT_SCOPES) - {"files:write"})

    with caplog.at_level(logging.ERROR):
        box = tell_the_end(outbox, channel, judged_record("d-chart-scope"))

    assert len(replies(slack, channel, box)) == 1
    assert "`files:write`" in caplog.text


def test_a_share_begun_by_a_run_that_died_is_not_begun_again(
    slack: SandboxHttp, channel: str, outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    record = judged_record("d-chart-died")
    open_thread(outbox, channel, record)
    thread = SlackThread(outbox, record, None, THRESHOLDS)
    thread(DeployFinished(record))
    assert thread.flush_pending()
    outbox.drain(record.id, 5, max_calls=2)  # the parent, then the reply's words
    box = outbox.get(record.id)
    assert box is not None and box.ts is not None and box.replies[-1].get("text_posted")

    # A worker began the share and died before writing how it ended: the next drain
    # cannot know whether Slack shows the chart.
    def begun_by_a_dead_run(saved: ThreadBox | None) -> ThreadBox | None:
        assert saved is not None
        saved.replies[-1]["file_sharing"] = True
        return saved

    change_box(outbox.store, record.id, begun_by_a_dead_run)
    with caplog.at_level(logging.ERROR):
        after = outbox.drain(record.id, 5)

    assert after is not None and not after.pending()
    assert uploads(slack) == []
    assert files_in(slack, channel, box.ts) == []
    assert len(replies(slack, channel, box)) == 1  # the words stand
    assert "ended unrecorded" in caplog.text
