"""A worker killed mid-drain leaves its claim on the thread's box; who may drain it then.

The job's retry of the same task drains at once (the killed attempt's container has
exited), while any other drainer waits the claim out, as it must for a live one.
The claim is left in the store as a SIGKILLed drain leaves it; the drains after it
post through slack_sdk to the sandbox's Slack. (End to end: tests/test_kill_matrix.py.)
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from deployer_sandbox.common.faults import Faults
from deployer_sandbox.harness.http_server import SandboxHttp

from deployer.adapters.slack_chat import SlackChat
from deployer.adapters.slack_client import slack_web_client
from deployer.front.mrkdwn import says
from deployer.front.outbox import Outbox
from deployer.front.thread_box import ThreadBox, change_box
from deployer.store.sqlite import SqliteStore

EXECUTION = "deployer-worker-x7k2p"
DEAD = f"job:{EXECUTION}/0#0/0badc0ffee00"  # attempt 0's drain, SIGKILLed while it held the box


@pytest.fixture
def slack() -> Iterator[SandboxHttp]:
    http = SandboxHttp(Faults())
    http.start()
    yield http
    http.close()


def claimed_thread(slack: SandboxHttp, tmp_path: Path) -> tuple[Outbox, str, str]:
    """An outbox whose one thread is due, and claimed for 15 s by a dead attempt's drain."""
    channel = "C" + uuid.uuid4().hex[:10].upper()
    slack.sink.add_channel(channel, "deploys")
    chat = SlackChat(slack_web_client("xoxb-claims", slack.url + "/api/", timeout=5))
    outbox = Outbox(SqliteStore(tmp_path / "state.db"), chat)
    deploy_id = "d-claims-1"
    outbox.open(deploy_id, channel, says("prod: deploying"))

    def left_by_the_dead(box: ThreadBox | None) -> ThreadBox | None:
        assert box is not None
        box.drainer, box.drain_until = DEAD, time.time() + 15
        return box

    change_box(outbox.store, deploy_id, left_by_the_dead)
    return outbox, deploy_id, channel


def as_task(monkeypatch: pytest.MonkeyPatch, execution: str, attempt: int) -> None:
    """The environment Cloud Run gives a job task (container contract, jobs)."""
    monkeypatch.setenv("CLOUD_RUN_EXECUTION", execution)
    monkeypatch.setenv("CLOUD_RUN_TASK_INDEX", "0")
    monkeypatch.setenv("CLOUD_RUN_TASK_ATTEMPT", str(attempt))


def test_the_retry_of_the_task_sends_the_thread_at_once(
    slack: SandboxHttp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outbox, deploy_id, channel = claimed_thread(slack, tmp_path)
    as_task(monkeypatch, EXECUTION, 1)
    box = outbox.drain(deploy_id, 2)
    assert box is not None and box.ts and not box.pending()
    assert [m["text"] for m in slack.sink.messages(channel)] == ["prod: deploying"]


@pytest.mark.parametrize(
    "drainer", ["another execution's task", "the same attempt", "a process outside a job"]
)
def test_anyone_else_waits_the_claim_out(
    slack: SandboxHttp, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, drainer: str
) -> None:
    outbox, deploy_id, channel = claimed_thread(slack, tmp_path)
    if drainer == "another execution's task":
        as_task(monkeypatch, "deployer-worker-other", 1)
    elif drainer == "the same attempt":
        as_task(monkeypatch, EXECUTION, 0)
    else:
        monkeypatch.delenv("CLOUD_RUN_EXECUTION", raising=False)
    box = outbox.drain(deploy_id, 2)
    assert box is not None and box.ts is None and box.drainer == DEAD
    assert slack.sink.messages(channel) == []
