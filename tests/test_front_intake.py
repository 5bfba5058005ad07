"""Intake under races, replays and a misbehaving Slack (observations 3, 4, 5, 6, 8).

races     20 signed `/deploy prod` at once from a cold `deployer serve`: one record,
          one thread; everyone else is told the true holder
replays   the same signed request twice starts one deploy
3 s       a 429 with a long Retry-After, or Slack down, never holds the ack
outbox    a thread whose parent or updates Slack refused for a while converges to
          the final truth; a parent never posted in time is posted late
dead      a worker that died is noticed (sweep, the next request) and resumed
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from deployer_sandbox.harness.sandbox import Sandbox

from deployer.front.context import current_context
from deployer.front.intake import take_in
from deployer.front.sweep import Sweeper
from deployer.pipeline.record import DeployRecord, State
from tests.engine_world import World, thread_sent, world_fixture  # noqa: F401
from tests.front_requests import Answer, slash_command
from tests.front_world import FrontWorld, in_process, make_front, served


@pytest.fixture
def front(world: World, gcp: Sandbox, repo_root: Path) -> Iterator[FrontWorld]:
    with in_process(make_front(world, gcp), repo_root) as ready:
        yield ready


def _parents(front: FrontWorld) -> list[dict[str, object]]:
    return [m for m in front.messages() if m.get("thread_ts") in (None, m["ts"])]


def _new_records(front: FrontWorld) -> list[str]:
    first = front.world.first.id
    return [record.id for record in front.records() if record.id != first]


def test_racing_deploys_from_a_cold_start_make_one_deploy_and_one_thread(
    world: World, gcp: Sandbox, repo_root: Path
) -> None:
    front = make_front(world, gcp)
    world.commit("raced")
    # The winner's build waits, so every racer meets it running.
    gcp.faults.arm("build_hang")
    answers: list[Answer] = []
    with served(front, repo_root):
        start = threading.Barrier(20)

        def send() -> None:
            request = slash_command(
                front.signing_secret, "prod", user=front.user, channel=front.channel
            )
            start.wait(timeout=30)
            answers.append(front.send(request))

        racers = [threading.Thread(target=send) for _ in range(20)]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(60)
        (deploy_id,) = _new_records(front)
        front.world.store().request_cancel(deploy_id, f"slack:{front.user}")
        done = front.finished(deploy_id, timeout=90)

    assert done.state == State.CANCELLED
    assert [a.status for a in answers] == [200] * 20
    said = [a.json()["text"] for a in answers]
    assert sum(text.startswith(f"Started deploy {deploy_id}") for text in said) == 1
    refused = [text for text in said if "is busy" in text]
    assert len(refused) == 19
    for text in refused:
        assert deploy_id in text, text
    assert len(_parents(front)) == 1


def test_a_replayed_slash_command_starts_nothing(front: FrontWorld) -> None:
    front.world.commit("once")
    request = slash_command(front.signing_secret, "prod", user=front.user, channel=front.channel)
    assert front.send(request).status == 200
    again = front.send(replace(request))
    assert again.status == 200 and again.text == ""
    (deploy_id,) = _new_records(front)
    assert front.finished(deploy_id).state == State.SUCCEEDED
    assert len(_parents(front)) == 1


def test_a_long_retry_after_does_not_hold_the_ack(front: FrontWorld) -> None:
    front.world.commit("slack is busy")
    front.sandbox.faults.arm("slack_429", retry_after=8, times=1)
    started = time.monotonic()
    answer = front.command("prod")
    took = time.monotonic() - started
    assert answer.status == 200
    assert took < 8, f"the ack waited {took:.1f} s on Slack's Retry-After"
    (deploy_id,) = _new_records(front)
    # The parent Slack refused is posted later, by the worker, once Slack lets it.
    done = front.finished(deploy_id, timeout=60)
    assert done.state == State.SUCCEEDED
    deadline = time.monotonic() + 30
    while not _parents(front) and time.monotonic() < deadline:
        time.sleep(0.2)
    (parent,) = _parents(front)
    assert str(parent["text"]).startswith("prod now runs")


def test_a_thread_converges_after_slack_errors_and_ends_true(front: FrontWorld) -> None:
    front.world.commit("slack flaps")
    # The build waits, so Slack fails while the deploy runs (a cancel ends it later).
    front.sandbox.faults.arm("build_hang")
    assert front.command("prod").status == 200
    (deploy_id,) = _new_records(front)
    front.posted(deploy_id)
    # Right after the parent: six 503s, the first ones after Slack did the work.
    front.sandbox.faults.arm("slack_5xx", status=503, times=3, after_post=True)
    front.sandbox.faults.arm("slack_5xx", status=503, times=3)
    front.world.store().request_cancel(deploy_id, f"slack:{front.user}")
    done = front.wait(lambda r: r.state.finished, deploy_id, timeout=60)
    assert done.state == State.CANCELLED
    # What the worker could not send before it ended (Slack backed off), the sweep sends.
    sweeper = Sweeper(current_context())
    deadline = time.monotonic() + 90
    while not thread_sent(front.world.store(), deploy_id):
        assert time.monotonic() < deadline, front.world.store().outbox_read(deploy_id)
        sweeper.sweep(budget=5)
        time.sleep(0.5)
    (parent,) = _parents(front)
    assert str(parent["text"]).startswith("Deploy of the default branch to prod was cancelled")


class LostDispatch:
    """A hand-over that never arrives: the job execution that was never started."""

    def dispatch(self, deploy_id: str) -> None:
        pass


def _orphan(front: FrontWorld) -> DeployRecord:
    """A deploy taken in as the front does whose worker never ran; its lease has run out.

    Call it before the front's first request: the context is built with the short lease.
    """
    front.world.reconfigure(deployer={"lease": 1.0})
    front.world.commit("orphaned")
    context = current_context()
    record = context.engine.new_deploy("prod", None, f"slack:{front.user}")
    real = context.dispatcher
    context.dispatcher = LostDispatch()
    try:
        take_in(context, record, front.channel)
    finally:
        context.dispatcher = real
    context.outbox.drain(record.id, 2)  # as the worker would have, before it died
    time.sleep(1.2)  # the lease runs out
    return record


def test_a_dead_worker_is_noticed_and_its_deploy_resumed(front: FrontWorld) -> None:
    """A deploy whose run vanished (its lease ran out): the next request and the sweep see it."""
    record = _orphan(front)
    context = current_context()

    # The next request is told the truth, and the deploy is resumed.
    busy = front.command("prod")
    assert "is busy" in busy.json()["text"] and record.id in busy.json()["text"]
    assert "being resumed" in busy.json()["text"]
    done = front.finished(record.id, timeout=60)
    assert done.state == State.SUCCEEDED
    # A second sweep finds nothing left to do.
    assert Sweeper(context).sweep(budget=2).revived == []


def test_cancel_reaches_a_deploy_whose_worker_died(front: FrontWorld) -> None:
    record = _orphan(front)
    box = front.world.store().outbox_read(record.id)
    assert box is not None
    record.slack_ts = json.loads(box.body)["ts"]
    assert front.click("deploy_cancel", record).status == 200
    done = front.finished(record.id, timeout=60)
    assert done.state == State.CANCELLED
    assert front.world.serving() == [(front.world.first.candidate_revision, 100)]
    assert front.world.store().locks("prod") == []


def test_the_ack_does_not_wait_for_a_slack_that_is_down(
    world: World, gcp: Sandbox, repo_root: Path
) -> None:
    front = make_front(world, gcp)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    front.env["SLACK_API_URL"] = f"http://127.0.0.1:{closed}/api/"
    world.commit("slack is down")
    with in_process(front, repo_root):
        started = time.monotonic()
        answer = front.command("prod")
        took = time.monotonic() - started
        assert answer.status == 200
        assert answer.json()["text"].startswith("Started deploy")
        (deploy_id,) = _new_records(front)
        done = front.wait(lambda r: r.state.finished, deploy_id, timeout=60)
    assert took < 3, f"the ack took {took:.1f} s"
    assert done.state == State.SUCCEEDED
    # Everything the thread should say is kept, to be sent once Slack is back.
    box = front.world.store().outbox_read(deploy_id)
    assert box is not None
    kept = json.loads(box.body)
    assert kept["ts"] is None and kept["parent"]["text"].startswith("prod now runs")
