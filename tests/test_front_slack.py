"""`/deploy` and the thread buttons end to end, through functions-framework on `main.py`.

Each scenario sends signed requests as Slack does, lets the inline worker run
the pipeline against the sandbox, and compares everything Slack shows (every
thread in the channel, and each ephemeral answer) with tests/expected/threads/.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from deployer_sandbox.harness.sandbox import Sandbox

from deployer.front.context import current_context
from deployer.front.sweep import Sweeper
from deployer.pipeline.record import Outcome, Stage, State
from tests.engine_world import World, thread_sent, world_fixture  # noqa: F401
from tests.front_world import FrontWorld, in_process, make_front, unique
from tests.slack_thread_text import assert_matches


@pytest.fixture
def front(world: World, gcp: Sandbox, repo_root: Path) -> Iterator[FrontWorld]:
    with in_process(make_front(world, gcp), repo_root) as ready:
        yield ready


def deploy(front: FrontWorld, text: str = "prod") -> str:
    """`/deploy <text>`: acked at once with an empty body; the new record's id."""
    before = {r.id for r in front.records()}
    started = time.monotonic()
    answer = front.command(text)
    assert answer.status == 200, answer.text
    assert time.monotonic() - started < 3
    new = [r for r in front.records() if r.id not in before]
    assert len(new) == 1
    record = new[0]
    # Acked with where to follow it; the worker posts the thread.
    assert answer.json()["text"].startswith(f"Started deploy {record.id}")
    assert record.requester == f"slack:{front.user}"
    assert record.slack_channel == front.channel
    return record.id


def test_success(front: FrontWorld) -> None:
    front.world.commit("a feature")
    done = front.finished(deploy(front))
    assert done.state == State.SUCCEEDED
    assert front.world.serving() == [(done.candidate_revision, 100)]
    assert_matches(front.thread_text(), "threads/success")


def test_build_failure_then_retry(front: FrontWorld) -> None:
    front.world.commit("breaks the build")
    front.sandbox.faults.arm("build_fail", step="build", message="exit status 1: uv sync failed")
    failed = front.finished(deploy(front))
    assert failed.state == State.FAILED
    assert front.world.serving() == [(front.world.first.candidate_revision, 100)]

    # Retry, clicked twice (a double-click): one new deploy, of the same ref.
    before = len(front.records())
    assert front.click("deploy_retry", failed).status == 200
    assert front.click("deploy_retry", failed).status == 200
    assert len(front.records()) == before + 1
    retried = front.newest()
    assert retried.ref == failed.ref and retried.requester == f"slack:{front.user}"
    assert front.finished(retried.id).state == State.SUCCEEDED
    assert_matches(front.thread_text(), "threads/build_failure")


def test_crash_at_start(front: FrontWorld) -> None:
    front.world.commit("crashes")
    front.sandbox.faults.arm("revision_crash")
    done = front.finished(deploy(front))
    assert done.state == State.FAILED
    ready = done.stage(Stage.READY)
    assert ready is not None and ready.outcome == Outcome.FAILED
    assert front.world.serving() == [(front.world.first.candidate_revision, 100)]
    assert_matches(front.thread_text(), "threads/crash_at_start")


def test_health_failure_during_rollout_is_rolled_back(front: FrontWorld) -> None:
    front.world.reconfigure(
        service={"health": {"failures": 1}},
        environment={"rollout": {"steps": [50, 100], "step_wait": 3}},
    )
    front.world.commit("breaks under load")
    deploy_id = deploy(front)
    # It passed its tagged check; with real traffic it starts answering 500.
    passed = front.wait(lambda r: r.stage(Stage.HEALTH) is not None, deploy_id, 30)
    front.sandbox.faults.arm("health_500", revision=passed.candidate_revision)
    done = front.finished(deploy_id)
    assert done.state == State.ROLLED_BACK
    assert front.world.serving() == [(front.world.first.candidate_revision, 100)]
    assert_matches(front.thread_text(), "threads/health_rollback")


def test_cancel(front: FrontWorld) -> None:
    front.world.commit("slow build")
    front.sandbox.faults.arm("build_hang")
    deploy_id = deploy(front)
    building = front.wait(lambda r: r.build_id is not None, deploy_id, 30)
    assert front.click("deploy_cancel", building).status == 200
    done = front.finished(deploy_id)
    assert done.state == State.CANCELLED
    assert done.cancelled_by == f"slack:{front.user}"
    assert front.world.serving() == [(front.world.first.candidate_revision, 100)]
    # Cancelling what has ended is refused, ephemerally.
    assert front.click("deploy_cancel", done).status == 200
    front.settle()
    assert_matches(front.thread_text(), "threads/cancel")


def test_rollback_button(front: FrontWorld) -> None:
    first = front.world.first.candidate_revision
    front.world.commit("second")
    second = front.finished(deploy(front))
    assert second.state == State.SUCCEEDED
    # Someone not on the allow-list clicks first: refused, ephemerally, nothing started.
    count = len(front.records())
    assert front.click("deploy_rollback", second, user=front.other).status == 200
    assert len(front.records()) == count
    # The same click delivered twice acts once.
    click_ts = f"{time.time():.6f}"
    assert front.click("deploy_rollback", second, action_ts=click_ts).status == 200
    assert front.click("deploy_rollback", second, action_ts=click_ts).status == 200
    assert len(front.records()) == count + 1
    rollback = front.newest()
    assert rollback.kind == "rollback" and rollback.target_revision == first
    assert front.finished(rollback.id).state == State.SUCCEEDED
    assert front.world.serving() == [(first, 100)]
    # The note in the old thread is written after the rollback was handed over; if the
    # rollback's worker ended first, the sweep sends it (Cloud Scheduler, in production).
    sweeper = Sweeper(current_context())
    deadline = time.monotonic() + 30
    while not thread_sent(front.world.store(), second.id):
        assert time.monotonic() < deadline, "the old thread's note was never sent"
        sweeper.sweep(budget=2)
        time.sleep(0.2)
    assert_matches(front.thread_text(), "threads/rollback_button")


def test_denied_user(front: FrontWorld) -> None:
    builds = front.world.build_ids()
    count = len(front.records())
    assert front.command("prod", user=front.other).status == 200
    assert front.command("prod", channel=unique("C")).status == 200  # an allowed person elsewhere
    assert front.command("lock prod", user=front.other).status == 200
    assert len(front.records()) == count
    assert front.world.build_ids() == builds
    assert front.world.store().locks("prod") == []
    front.settle()
    assert_matches(front.thread_text(), "threads/denied")


def test_locked_environment(front: FrontWorld) -> None:
    colleague = unique("U")
    front.sandbox.http.sink.add_user(colleague, "colleague")
    front.people[colleague] = "COLLEAGUE"
    front.world.reconfigure(environment={"allow": {"slack_users": [front.user, colleague]}})
    builds = front.world.build_ids()
    count = len(front.records())
    assert front.command("lock prod db migration <!channel>", user=colleague).status == 200
    assert front.command("prod").status == 200  # refused: the colleague's lock
    assert front.command("rollback prod").status == 200  # refused too
    assert len(front.records()) == count
    assert front.world.build_ids() == builds
    assert front.command("unlock prod").status == 200
    assert front.world.store().locks("prod") == []
    front.settle()
    assert_matches(front.thread_text(), "threads/locked")


def test_status_and_history_answer_within_slack_time(front: FrontWorld) -> None:
    # The serving revision stops answering /health: status still answers in time.
    front.sandbox.faults.arm("health_hang", revision=front.world.first.candidate_revision)
    started = time.monotonic()
    status = front.command("status")
    assert time.monotonic() - started < 3
    assert status.status == 200
    shown = status.json()["blocks"][0]["text"]["text"]
    revision = str(front.world.first.candidate_revision)
    assert "no answer in time" in shown or (revision in shown and "unhealthy" in shown), shown
    history = front.command("history prod").json()
    assert front.world.first.id in history["blocks"][0]["text"]["text"]
    helped = front.command("help", user=front.other).json()  # anyone may read
    assert "How to use" in helped["text"]
