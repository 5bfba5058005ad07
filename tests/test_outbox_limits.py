"""The outbox against Slack's own rate limits, as the sandbox enforces them: no fault armed.

Several deploys tell their threads in one channel at once; `chat.postMessage`
allows about one message a second per channel there (with a short burst), so
Slack answers 429 with Retry-After. Every thread still ends complete: each
message posted once, in order, each parent showing its last rendering.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from deployer_sandbox.common.faults import Faults
from deployer_sandbox.harness.http_server import SandboxHttp
from deployer_sandbox.slack.rate_limits import SlackRateLimits

from deployer.adapters.slack_chat import SlackChat
from deployer.adapters.slack_client import slack_web_client
from deployer.front.mrkdwn import says
from deployer.front.outbox import Outbox
from deployer.store.sqlite import SqliteStore

SCALE = 4.0  # Slack's limits, four times faster: ~4 posts a second per channel, burst 3
THREADS, REPLIES = 4, 3


@pytest.fixture
def limited_slack() -> Iterator[SandboxHttp]:
    http = SandboxHttp(Faults(), rate_limits=SlackRateLimits(SCALE))
    http.start()
    yield http
    http.close()


def test_threads_sharing_a_channel_converge_through_real_429s(
    limited_slack: SandboxHttp, tmp_path: Path
) -> None:
    channel = "C" + uuid.uuid4().hex[:10].upper()
    limited_slack.sink.add_channel(channel, "busy")
    chat = SlackChat(
        slack_web_client("xoxb-limits", limited_slack.url + "/api/", retries=False, timeout=2)
    )
    outbox = Outbox(SqliteStore(tmp_path / "state.db"), chat)
    deploys = [f"d-limits-{n}" for n in range(THREADS)]
    for deploy_id in deploys:
        outbox.open(deploy_id, channel, says(f"{deploy_id} starting"))
        for reply in range(REPLIES):
            outbox.reply(deploy_id, says(f"{deploy_id} reply {reply}"))
        outbox.parent(deploy_id, says(f"{deploy_id} finished"))

    # Each worker drains its own thread, at the same time as the others.
    def drain(deploy_id: str) -> None:
        end = time.monotonic() + 60
        while time.monotonic() < end:
            box = outbox.drain(deploy_id, 5)
            if box is not None and not box.pending():
                return
            due = box.due_at() if box is not None else None
            time.sleep(max(0.05, (due or time.time()) - time.time()))

    workers = [threading.Thread(target=drain, args=(d,)) for d in deploys]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(90)

    calls = limited_slack.sink.calls()
    assert any(c["status"] == 429 for c in calls), "the limits were never met: raise THREADS"
    messages = limited_slack.sink.messages(channel)
    for deploy_id in deploys:
        box = outbox.get(deploy_id)
        assert box is not None and not box.pending() and not box.ended, box
        [parent] = [m for m in messages if m["ts"] == box.ts]
        assert parent["text"] == f"{deploy_id} finished"
        replies = [m["text"] for m in messages if m["thread_ts"] == box.ts and m["ts"] != box.ts]
        assert replies == [f"{deploy_id} reply {n}" for n in range(REPLIES)]
    parents = [m for m in messages if m["thread_ts"] in (None, m["ts"])]
    assert len(parents) == THREADS
