"""The Slack thread of real deploys, through slack_sdk to the sandbox's sink; Slack failing changes nothing."""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from deployer.adapters.slack_chat import SlackChat
from deployer.adapters.slack_client import slack_web_client
from deployer.engine import Engine
from deployer.front.ports import Chat
from deployer.front.thread import SlackThread, post_parent
from deployer.pipeline.events import (
    DeployFinished,
    Event,
    StageFinished,
    StageProgressed,
    StageStarted,
    fan_out,
)
from deployer.pipeline.record import DeployRecord, Outcome, Stage, StageResult, State
from deployer.sandbox.server import Sandbox
from tests.engine_world import ENVIRONMENT, Recorder, World, world_fixture  # noqa: F401
from tests.slack_thread_text import assert_matches, read_messages, read_thread

TOKEN = "xoxb-thread-test"
ASKER = "slack:U0TESTER1"


@pytest.fixture
def slack(sandbox: Sandbox) -> Iterator[Chat]:
    sandbox.faults.clear()
    yield SlackChat(slack_web_client(TOKEN, sandbox.http.url + "/api/"))
    sandbox.faults.clear()


def new_channel(sandbox: Sandbox) -> str:
    channel = "C" + uuid.uuid4().hex[:10].upper()
    sandbox.http.sink.add_channel(channel, f"deploys-{channel.lower()}")
    return channel


@pytest.fixture
def channel(sandbox: Sandbox) -> str:
    return new_channel(sandbox)


def deploy_in_thread(
    world: World, slack: Chat, channel: str, engine: Engine | None = None
) -> tuple[DeployRecord, Recorder]:
    """What the front does: the parent first, then the pipeline with the thread listening."""
    engine = engine or world.engine
    record = engine.new_deploy(ENVIRONMENT, None, ASKER)
    record.slack_channel = channel
    record.slack_ts = post_parent(slack, channel, record)
    assert record.slack_ts is not None
    recorder = Recorder()
    engine.deploy(record, fan_out(recorder, SlackThread(slack, record)))
    return record, recorder


def thread_of(world: World, sandbox: Sandbox, record: DeployRecord) -> str:
    assert record.slack_ts is not None
    return world.note(read_thread(sandbox.http.url, record.slack_ts, record.slack_channel))


def replay(
    slack: Chat, channel: str, events: list[Event], midway: Callable[[], object] = list
) -> tuple[str | None, float]:
    """A fresh thread fed the recorded events (`midway` runs halfway); its ts and the time taken."""
    record = events[0].record
    started = time.monotonic()
    ts = post_parent(slack, channel, record)
    copy = DeployRecord.from_json(record.to_json())
    copy.slack_channel, copy.slack_ts = channel, ts or "1.000001"
    thread = SlackThread(slack, copy)
    for index, event in enumerate(events):
        if index == len(events) // 2:
            midway()
        thread(event)
    return ts, time.monotonic() - started


def test_a_deploy_and_a_rollback_tell_their_story(
    world: World, sandbox: Sandbox, slack: Chat, channel: str
) -> None:
    record, events = deploy_in_thread(world, slack, channel)
    assert record.state == State.SUCCEEDED, record.error
    assert_matches(thread_of(world, sandbox, record), "thread_success")

    # The parent moved through the stages in place: one message, many edits.
    [parent] = [m for m in read_messages(sandbox.http.url, channel) if m["ts"] == record.slack_ts]
    assert parent["original"]["text"].startswith("Deploy of the default branch to prod is queued")
    assert len(parent["edits"]) >= 2 * len(record.stages)
    assert any(
        "▶ *build* — running" in json.dumps(e["blocks"], ensure_ascii=False)
        for e in parent["edits"]
    )

    # Slack answering 429 (Retry-After) and 503 mid-thread: retried, the same thread results.
    sandbox.faults.arm("slack_429", retry_after=1)
    limited = new_channel(sandbox)
    ts, _ = replay(slack, limited, events.events, lambda: sandbox.faults.arm("slack_5xx", times=2))
    assert ts is not None
    assert_matches(read_thread(sandbox.http.url, ts, limited), "thread_success")
    statuses = [
        c["status"] for c in sandbox.http.sink.calls() if c["params"].get("channel") == limited
    ]
    assert statuses.count(429) == 1 and statuses.count(503) == 2

    rollback = world.engine.new_rollback(ENVIRONMENT, None, "github:acme/backend")
    rollback.slack_channel = channel
    rollback.slack_ts = post_parent(slack, channel, rollback)
    world.engine.store.save(rollback)
    done = world.engine.resume(rollback.id, SlackThread(slack, rollback))
    assert done.state == State.SUCCEEDED, done.error
    assert_matches(thread_of(world, sandbox, done), "thread_rollback")


def test_a_failed_build_names_its_step(
    world: World, sandbox: Sandbox, slack: Chat, channel: str
) -> None:
    world.commit("broken")
    sandbox.faults.arm("build_fail", step="build", message="exit status 1: uv sync failed")
    record, _ = deploy_in_thread(world, slack, channel)
    assert record.state == State.FAILED
    assert_matches(thread_of(world, sandbox, record), "thread_build_failure")


def test_a_crash_at_start_quotes_the_container(
    world: World, sandbox: Sandbox, slack: Chat, channel: str
) -> None:
    engine = world.reconfigure(environment={"secrets": {"MONGODB_URL": None}})
    world.commit("forgot the database")
    record, _ = deploy_in_thread(world, slack, channel, engine)
    assert record.state == State.FAILED
    text = thread_of(world, sandbox, record)
    assert_matches(text, "thread_crash")
    assert "mongodb_url" in text and "Field required" in text


def test_a_lock_reason_cannot_ping_the_channel(
    world: World, sandbox: Sandbox, slack: Chat, channel: str
) -> None:
    world.engine.lock(ENVIRONMENT, "slack:U0OTHER01", "<!channel> freeze & <@U0BOSS>")
    record, _ = deploy_in_thread(world, slack, channel)
    assert record.state == State.FAILED
    raw = json.dumps(read_messages(sandbox.http.url, channel), ensure_ascii=False)
    assert "<!channel>" not in raw and "<@U0BOSS>" not in raw
    text = thread_of(world, sandbox, record)
    assert "locked by <@U0OTHER01>: &lt;!channel&gt; freeze &amp; &lt;@U0BOSS&gt;" in text


# --- without a real deploy: throttling and Slack down ------------------------------------------


def scripted(channel: str, ts: str | None) -> tuple[DeployRecord, list[Event]]:
    record = DeployRecord(
        id="d-lp3x9k2a-0f0f0f",
        kind="deploy",
        environment="prod",
        service="backend",
        requester=ASKER,
        ref="main",
        state=State.RUNNING,
        slack_channel=channel,
        slack_ts=ts,
    )
    now = time.time()
    result = StageResult(Stage.PREFLIGHT, Outcome.FAILED, now, 0.5, "prod is locked", "")
    events: list[Event] = [StageStarted(record, Stage.PREFLIGHT)]
    events += [StageProgressed(record, Stage.BUILD, f"step {n} running") for n in range(40)]
    events += [StageFinished(record, result), DeployFinished(record)]
    return record, events


def test_progress_updates_the_parent_at_most_once_a_second(
    sandbox: Sandbox, slack: Chat, channel: str
) -> None:
    record, events = scripted(channel, None)
    record.slack_ts = post_parent(slack, channel, record)
    thread = SlackThread(slack, record)
    for event in events:
        if isinstance(event, StageFinished):
            record.stages.append(event.result)
        if isinstance(event, DeployFinished):
            record.state = State.FAILED
        thread(event)
    updates = [
        c
        for c in sandbox.http.sink.calls()
        if c["method"] == "chat.update" and c["params"].get("channel") == channel
    ]
    # Started, finished and the end always; 40 progress lines within a second: at most one more.
    assert 3 <= len(updates) <= 4


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_slack_down_costs_the_deploy_little_and_raises_nothing() -> None:
    down = SlackChat(slack_web_client(TOKEN, f"http://127.0.0.1:{closed_port()}/api/"))
    _, events = scripted("C0NOWHERE1", None)
    ts, took = replay(down, "C0NOWHERE1", events)
    assert ts is None
    # The parent post, the first update (which trips the quiet period) and the final one;
    # each refused at once and retried twice after short backoffs.
    assert took < 8


def test_a_thread_without_a_parent_stays_silent(sandbox: Sandbox, slack: Chat) -> None:
    before = len(sandbox.http.sink.calls())
    record, events = scripted("C0NOWHERE2", None)
    for event in events:
        SlackThread(slack, record)(event)
    assert len(sandbox.http.sink.calls()) == before


def test_slack_errors_are_logged_not_raised(
    sandbox: Sandbox, slack: Chat, caplog: pytest.LogCaptureFixture
) -> None:
    assert post_parent(slack, "C0NOSUCH99", scripted("C0NOSUCH99", None)[0]) is None
    record, events = scripted("C0NOSUCH99", "1700000000.000001")
    for event in events:
        SlackThread(slack, record)(event)
    assert "channel_not_found" in caplog.text
