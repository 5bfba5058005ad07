"""The Slack thread of real deploys, through the outbox and slack_sdk to the sandbox's sink.

The pipeline's listener only writes what the thread should say into the store;
a courier sends it. Slack failing, slow or rate-limiting changes nothing about
the deploy, and the thread still ends true.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from deployer_sandbox.harness.sandbox import Sandbox

from deployer.adapters.slack_chat import SlackChat
from deployer.adapters.slack_client import slack_web_client
from deployer.engine import Engine
from deployer.front.outbox import Outbox
from deployer.front.thread import Courier, SlackThread, open_thread
from deployer.pipeline.events import (
    DeployFinished,
    Event,
    StageFinished,
    StageProgressed,
    StageStarted,
    fan_out,
)
from deployer.pipeline.record import DeployRecord, Outcome, Stage, StageResult, State
from deployer.store.sqlite import SqliteStore
from tests.engine_world import ENVIRONMENT, Recorder, World, world_fixture  # noqa: F401
from tests.slack_thread_text import assert_matches, read_messages, read_thread

TOKEN = "xoxb-thread-test"
ASKER = "slack:U0TESTER1"


def chat_at(url: str) -> SlackChat:
    """Slack as an outbox uses it: one try per call, no sleeping through a Retry-After."""
    return SlackChat(slack_web_client(TOKEN, url, retries=False, timeout=2))


@pytest.fixture
def slack(sandbox: Sandbox) -> Iterator[SlackChat]:
    sandbox.faults.clear()
    yield chat_at(sandbox.http.url + "/api/")
    sandbox.faults.clear()


@pytest.fixture
def outbox(slack: SlackChat, tmp_path: object) -> Outbox:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    return Outbox(SqliteStore(tmp_path / "outbox.db"), slack)


def new_channel(sandbox: Sandbox) -> str:
    channel = "C" + uuid.uuid4().hex[:10].upper()
    sandbox.http.sink.add_channel(channel, f"deploys-{channel.lower()}")
    return channel


@pytest.fixture
def channel(sandbox: Sandbox) -> str:
    return new_channel(sandbox)


def told(outbox: Outbox, record: DeployRecord, run: Callable[[SlackThread], object]) -> None:
    """Open `record`'s thread, run `run` with its listener, then send everything left."""
    assert record.slack_channel is not None
    if outbox.get(record.id) is None:
        open_thread(outbox, record.slack_channel, record)
    courier = Courier(outbox, record.id)
    thread = SlackThread(outbox, record, courier)
    run(thread)
    assert thread.flush_pending()
    assert courier.flush(30), outbox.get(record.id)
    box = outbox.get(record.id)
    assert box is not None
    record.slack_ts = box.ts


def deploy_in_thread(
    world: World, outbox: Outbox, channel: str, engine: Engine | None = None
) -> tuple[DeployRecord, Recorder]:
    """What the front and the worker do: the thread opened, the pipeline told into it."""
    engine = engine or world.engine
    record = engine.new_deploy(ENVIRONMENT, None, ASKER)
    record.slack_channel = channel
    recorder = Recorder()
    told(outbox, record, lambda thread: engine.deploy(record, fan_out(recorder, thread)))
    return record, recorder


def thread_of(world: World, sandbox: Sandbox, record: DeployRecord) -> str:
    assert record.slack_ts is not None
    return world.note(read_thread(sandbox.http.url, record.slack_ts, record.slack_channel))


def replay(
    outbox: Outbox, channel: str, events: list[Event], midway: Callable[[], object] = list
) -> tuple[str | None, float]:
    """A fresh thread fed the recorded events (`midway` runs halfway); its ts and the time taken."""
    record = DeployRecord.from_json(events[0].record.to_json())
    record.id = f"d-replay-{uuid.uuid4().hex[:6]}"
    record.slack_channel = channel
    started = time.monotonic()

    def feed(thread: SlackThread) -> None:
        for index, event in enumerate(events):
            if index == len(events) // 2:
                midway()
            thread(event)

    told(outbox, record, feed)
    return record.slack_ts, time.monotonic() - started


def test_a_deploy_and_a_rollback_tell_their_story(
    world: World, sandbox: Sandbox, outbox: Outbox, channel: str
) -> None:
    world.commit("a feature")  # a new commit is built (the first one's build would be reused)
    record, events = deploy_in_thread(world, outbox, channel)
    assert record.state == State.SUCCEEDED, record.error
    assert_matches(thread_of(world, sandbox, record), "thread_success")

    # The parent moved through the stages in place: one message, several edits.
    [parent] = [m for m in read_messages(sandbox.http.url, channel) if m["ts"] == record.slack_ts]
    assert "the default branch to prod" in parent["original"]["text"]
    assert len(parent["edits"]) >= 1

    # Slack answering 429 (Retry-After) and 503 mid-thread: kept, sent again later, and
    # the same thread results.
    sandbox.faults.arm("slack_429", retry_after=1)
    limited = new_channel(sandbox)
    ts, _ = replay(outbox, limited, events.events, lambda: sandbox.faults.arm("slack_5xx", times=2))
    assert ts is not None
    assert_matches(read_thread(sandbox.http.url, ts, limited), "thread_success")
    statuses = [
        c["status"] for c in sandbox.http.sink.calls() if c["params"].get("channel") == limited
    ]
    assert statuses.count(429) == 1 and statuses.count(503) == 2

    rollback = world.engine.new_rollback(ENVIRONMENT, None, "github:acme/backend")
    rollback.slack_channel = channel
    world.engine.store.save(rollback)
    told(outbox, rollback, lambda thread: world.engine.resume(rollback.id, thread))
    done = world.engine.store.get(rollback.id)
    assert done is not None and done.state == State.SUCCEEDED, done
    done.slack_ts = rollback.slack_ts
    assert_matches(thread_of(world, sandbox, done), "thread_rollback")


def test_a_failed_build_names_its_step(
    world: World, sandbox: Sandbox, outbox: Outbox, channel: str
) -> None:
    world.commit("broken")
    sandbox.faults.arm("build_fail", step="build", message="exit status 1: uv sync failed")
    record, _ = deploy_in_thread(world, outbox, channel)
    assert record.state == State.FAILED
    assert_matches(thread_of(world, sandbox, record), "thread_build_failure")


def test_a_crash_at_start_quotes_the_container(
    world: World, sandbox: Sandbox, outbox: Outbox, channel: str
) -> None:
    # Given, but empty: the preflight cannot tell; the app refuses it at start-up.
    engine = world.reconfigure(
        environment={"secrets": {"MONGODB_URL": None}, "env": {"MONGODB_URL": ""}}
    )
    world.commit("forgot the database")
    record, _ = deploy_in_thread(world, outbox, channel, engine)
    assert record.state == State.FAILED
    text = thread_of(world, sandbox, record)
    assert_matches(text, "thread_crash")
    assert "mongodb_url" in text and "Field required" in text


def test_a_lock_reason_cannot_ping_the_channel(
    world: World, sandbox: Sandbox, outbox: Outbox, channel: str
) -> None:
    world.engine.lock(ENVIRONMENT, "slack:U0OTHER01", "<!channel> freeze & <@U0BOSS>")
    record, _ = deploy_in_thread(world, outbox, channel)
    assert record.state == State.FAILED
    raw = json.dumps(read_messages(sandbox.http.url, channel), ensure_ascii=False)
    assert "<!channel>" not in raw and "<@U0BOSS>" not in raw
    text = thread_of(world, sandbox, record)
    assert "locked by <@U0OTHER01>: &lt;!channel&gt; freeze &amp; &lt;@U0BOSS&gt;" in text


# --- without a real deploy: throttling and Slack down ------------------------------------------


def scripted(channel: str) -> tuple[DeployRecord, list[Event]]:
    record = DeployRecord(
        id=f"d-lp3x9k2a-{uuid.uuid4().hex[:6]}",
        kind="deploy",
        environment="prod",
        service="backend",
        requester=ASKER,
        ref="main",
        state=State.RUNNING,
        slack_channel=channel,
    )
    now = time.time()
    result = StageResult(Stage.PREFLIGHT, Outcome.FAILED, now, 0.5, "prod is locked", "")
    events: list[Event] = [StageStarted(record, Stage.PREFLIGHT)]
    events += [StageProgressed(record, Stage.BUILD, f"step {n} running") for n in range(40)]
    events += [StageFinished(record, result), DeployFinished(record)]
    return record, events


def feed_all(record: DeployRecord, events: list[Event]) -> Callable[[SlackThread], None]:
    def feed(thread: SlackThread) -> None:
        for event in events:
            if isinstance(event, StageFinished):
                record.stages.append(event.result)
            if isinstance(event, DeployFinished):
                record.state = State.FAILED
            thread(event)

    return feed


def test_updates_of_the_parent_coalesce(sandbox: Sandbox, outbox: Outbox, channel: str) -> None:
    record, events = scripted(channel)
    told(outbox, record, feed_all(record, events))
    updates = [
        c
        for c in sandbox.http.sink.calls()
        if c["method"] == "chat.update" and c["params"].get("channel") == channel
    ]
    # 43 events; Slack sees the parent posted, then at most a couple of updates, and the
    # parent ends in the final state.
    assert len(updates) <= 3
    [parent] = [
        m for m in read_messages(sandbox.http.url, channel) if m["thread_ts"] in (None, m["ts"])
    ]
    assert parent["text"].startswith("Deploy of main to prod failed at preflight")


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_slack_down_costs_the_deploy_nothing_and_the_thread_waits(tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    down = Outbox(
        SqliteStore(tmp_path / "down.db"), chat_at(f"http://127.0.0.1:{closed_port()}/api/")
    )
    record, events = scripted("C0NOWHERE1")
    open_thread(down, "C0NOWHERE1", record)
    started = time.monotonic()
    thread = SlackThread(down, record, Courier(down, record.id))
    feed_all(record, events)(thread)
    took = time.monotonic() - started
    # The listener never waits on Slack: it only writes to the store.
    assert took < 5
    box = down.get(record.id)
    assert box is not None and box.pending() and box.ts is None
    assert box.parent is not None and "failed" in str(box.parent["text"])


def test_a_thread_without_a_channel_stays_silent(sandbox: Sandbox, outbox: Outbox) -> None:
    before = len(sandbox.http.sink.calls())
    record, events = scripted("C0NOWHERE2")
    record.slack_channel = None
    thread = SlackThread(outbox, record)
    for event in events:
        thread(event)
    assert outbox.get(record.id) is None
    assert len(sandbox.http.sink.calls()) == before


def test_a_channel_slack_refuses_ends_the_thread_and_is_logged(
    sandbox: Sandbox, outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    record, events = scripted("C0NOSUCH99")
    open_thread(outbox, "C0NOSUCH99", record)
    courier = Courier(outbox, record.id)
    feed_all(record, events)(SlackThread(outbox, record, courier))
    courier.flush(5)
    box = outbox.get(record.id)
    assert box is not None and box.ended.endswith("channel_not_found")
    assert "channel_not_found" in caplog.text
