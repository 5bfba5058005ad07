"""The lock queue and forced unlocks, from Slack.

/deploy prod --queue   waits for prod in FIFO order, told in its own thread; starts by
                       itself when the deploy before it ends; can be cancelled; gives up
                       after `queue_timeout`
Queue button           the busy answer offers the same
unlock prod force      admins only: the deploy holding prod is abandoned, its build
                       stopped and its saved traffic put back, and the next waiter runs
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from deployer_sandbox.harness.sandbox import Sandbox

from deployer.front.context import current_context
from deployer.front.sweep import Sweeper
from deployer.pipeline.record import DeployRecord, State
from tests.engine_world import ENVIRONMENT, World, world_fixture  # noqa: F401
from tests.front_requests import block_action
from tests.front_world import FrontWorld, in_process, make_front


@pytest.fixture
def front(world: World, gcp: Sandbox, repo_root: Path) -> Iterator[FrontWorld]:
    world.reconfigure(deployer={"queue_timeout": 600})
    with in_process(make_front(world, gcp), repo_root) as ready:
        yield ready


def _running(front: FrontWorld) -> DeployRecord:
    """Start a deploy whose build hangs: it holds prod until cancelled. (A new commit: the
    served one's build would be reused, and nothing would hang.)"""
    front.world.commit("to build")
    front.sandbox.faults.arm("build_hang")
    assert front.command("prod").json()["text"].startswith("Started deploy")
    record = front.newest()
    return front.wait(lambda r: r.state == State.RUNNING and bool(r.build_id), record.id)


def _answer(front: FrontWorld, text: str) -> str:
    answer = front.command(text)
    assert answer.status == 200, answer.text
    return str(answer.json()["text"]) if answer.text else ""


def _parent_text(front: FrontWorld, record: DeployRecord) -> str:
    ts = front.posted(record.id)
    [parent] = [m for m in front.messages() if m["ts"] == ts]
    return str(parent["text"])


def test_queued_deploys_wait_their_turn_and_start_by_themselves(front: FrontWorld) -> None:
    first = _running(front)
    front.world.commit("second")
    said = _answer(front, "prod --queue")
    assert "next in line" in said and first.id in said
    second = front.newest()
    assert second.state == State.QUEUED
    said = _answer(front, "prod --queue")
    assert "number 2 in line" in said
    third = front.newest()
    front.settle()
    assert "is queued" in _parent_text(front, second)

    # The running deploy ends (cancelled): the first waiter starts, then the next.
    front.world.store().request_cancel(first.id, f"slack:{front.user}")
    assert front.finished(first.id).state == State.CANCELLED
    done_second = front.finished(second.id, timeout=90)
    assert done_second.state == State.SUCCEEDED
    assert any("prod is free: starting" in note.text for note in done_second.notes)
    done_third = front.finished(third.id, timeout=90)
    assert done_third.state == State.SUCCEEDED
    # First in, first out: the third began only once the second had ended.
    assert done_third.stages[0].started_at >= done_second.stages[-1].started_at
    assert front.world.store().locks(ENVIRONMENT) == []
    assert _parent_text(front, done_second).startswith("prod now runs")


def test_the_busy_answer_offers_a_queue_button(front: FrontWorld) -> None:
    first = _running(front)
    answer = front.command("prod")
    blocks = answer.json()["blocks"]
    [button] = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert button["action_id"] == "deploy_queue"
    url = front.sandbox.http.mint_response_url(channel=front.channel, user=front.user)
    clicked = front.send(
        block_action(
            front.signing_secret,
            "deploy_queue",
            button["value"],
            user=front.user,
            channel=front.channel,
            message_ts="1700000000.000001",
            response_url=url,
        )
    )
    assert clicked.status == 200
    waiting = front.newest()
    assert waiting.state == State.QUEUED and waiting.requester == f"slack:{front.user}"
    front.world.store().request_cancel(first.id, f"slack:{front.user}")
    assert front.finished(waiting.id, timeout=90).state == State.SUCCEEDED


def test_a_queued_deploy_can_be_cancelled_and_never_runs(front: FrontWorld) -> None:
    first = _running(front)
    _answer(front, "prod --queue")
    waiting = front.newest()
    # The worker holding prod tells the waiter's thread too.
    waiting.slack_ts = front.posted(waiting.id)
    time.sleep(1.1)  # as a person would: Slack showed the thread a moment ago
    assert front.click("deploy_cancel", waiting).status == 200
    cancelled = front.finished(waiting.id)
    assert cancelled.state == State.CANCELLED and not cancelled.stages
    front.world.store().request_cancel(first.id, f"slack:{front.user}")
    front.finished(first.id)
    time.sleep(0.5)
    assert front.world.store().get(waiting.id).state == State.CANCELLED  # type: ignore[union-attr]
    assert "Deploy of the default branch to prod was cancelled" in _parent_text(front, cancelled)


def test_a_wait_longer_than_the_queue_timeout_gives_up(front: FrontWorld) -> None:
    front.world.reconfigure(deployer={"queue_timeout": 0.5})
    first = _running(front)
    _answer(front, "prod --queue")
    waiting = front.newest()
    time.sleep(1.1)
    Sweeper(current_context()).sweep(budget=5)
    gave_up = front.finished(waiting.id)
    assert gave_up.state == State.CANCELLED and "gave up" in gave_up.error
    assert "gave up" in _parent_text(front, gave_up)
    front.world.store().request_cancel(first.id, f"slack:{front.user}")
    front.finished(first.id)


def test_only_admins_force_prod_open_and_the_stuck_deploy_is_abandoned(
    front: FrontWorld,
) -> None:
    world = front.world
    old = world.first.candidate_revision
    world.reconfigure(
        environment={
            "allow": {
                "slack_users": [front.user, front.other],
                "slack_channels": [front.channel],
                "admins": [front.user],
            }
        }
    )
    stuck = _running(front)

    denied = front.command("unlock prod force", user=front.other)
    assert "Only prod's admins may force its locks open" in denied.json()["text"]
    assert [lock.holder for lock in world.store().locks(ENVIRONMENT)] == [stuck.id]

    said = _answer(front, "unlock prod force the build is wedged")
    assert stuck.id in said and "abandoned" in said
    done = front.finished(stuck.id, timeout=60)
    assert done.state == State.ABANDONED
    assert done.abandoned_by == f"slack:{front.user}"
    assert "the build is wedged" in done.error
    assert world.serving() == [(old, 100)]
    assert world.store().locks(ENVIRONMENT) == []
    # The run that was stuck stops when it learns it lost the deploy: it never makes the
    # thread go back to "Deploying".
    assert "was abandoned" in _parent_text(front, done)
