"""The kill matrix: a worker SIGKILLed at every stage boundary, then resumed by the job's retry.
(Around an approval: tests/test_approval_kills.py.)

A signed `/deploy prod` goes through the front, which dispatches it to the
world's `deployer-worker` Cloud Run job; the sandbox runs the job's task as a
real `python -m deployer.cli worker ID` process. That process kills itself
(SIGKILL, as from outside) at the named point of its first run
(deployer/pipeline/failpoints.py); the job retries the task, and the retry
takes the deploy over and finishes it. On SQLite and on Firestore (emulator).

Each run must end with what a user checks: one build, one candidate revision,
the traffic expected, the lock released, and one thread whose parent tells the
final truth (and says the worker was lost and resumed).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from deployer_sandbox.harness.sandbox import Sandbox

from deployer.front.context import current_context
from deployer.front.sweep import Sweeper
from deployer.pipeline.record import DeployRecord, State
from deployer.store import open_store
from tests.engine_world import ENVIRONMENT, World, close_world, make_world, world_fixture  # noqa: F401
from tests.front_world import FrontWorld, in_process, make_front
from tests.job_front import executions, with_worker_job

KILL_POINTS = [
    "build.submitted",
    "build.running",
    "deploy.created",
    "ready.waiting",
    "health.probing",
    "promote.step1",  # 10 % on the candidate, before the gate to 50 %
    "promote.step2",  # 50 %, before the gate to 100 %
    "succeeded.done",  # verified, before the end is saved and told
]


# Every point on SQLite; on Firestore, one point of each kind of resumption (a build
# followed, a candidate found again, traffic resumed mid-rollout, an end re-told): what
# differs there is the store's transactions, which each of these goes through.
FIRESTORE_POINTS = ["build.submitted", "health.probing", "promote.step1", "succeeded.done"]
CASES = [("sqlite", point) for point in KILL_POINTS] + [
    ("firestore", point) for point in FIRESTORE_POINTS
]


@pytest.fixture
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def killed_world(
    gcp: Sandbox, tmp_path: Path, repo_root: Path, store_kind: str, request: pytest.FixtureRequest
) -> Iterator[tuple[World, str]]:
    world = make_world(gcp, tmp_path / "world", repo_root)
    world.reconfigure(environment={"rollout": {"steps": [10, 50, 100], "step_wait": 0.2}})
    store_url = world.store_url
    if store_kind == "firestore":
        emulator: str = request.getfixturevalue("firestore_emulator")
        os.environ["FIRESTORE_EMULATOR_HOST"] = emulator
        store_url = f"firestore://deployer-tests/kill-{uuid.uuid4().hex[:12]}"
    try:
        yield world, store_url
        world.assert_no_secrets()
    finally:
        close_world(world)


def _front(world: World, gcp: Sandbox, store_url: str, kill_at: str) -> FrontWorld:
    front = make_front(world, gcp)
    front.env["DEPLOYER_STORE"] = store_url
    if store_url.startswith("firestore"):
        front.env["FIRESTORE_EMULATOR_HOST"] = os.environ["FIRESTORE_EMULATOR_HOST"]
    front.job = with_worker_job(front, {"DEPLOYER_KILL_AT": kill_at})
    return front


def _finished(store_url: str, deploy_id: str, front: FrontWorld) -> DeployRecord:
    return front.finished(deploy_id, timeout=120, store=open_store(store_url))


@pytest.mark.parametrize(("store_kind", "kill_at"), CASES, indirect=["store_kind"])
def test_a_worker_killed_at_each_boundary_is_resumed_to_the_true_end(
    killed_world: tuple[World, str], gcp: Sandbox, repo_root: Path, kill_at: str
) -> None:
    world, store_url = killed_world
    old = world.first.candidate_revision
    commit = world.commit(f"killed at {kill_at}")
    builds_before = set(world.build_ids())
    front = _front(world, gcp, store_url, kill_at)
    with in_process(front, repo_root):
        answer = front.command("prod")
        assert answer.status == 200, answer.text
        store = open_store(store_url)
        deploy_id = store.history(ENVIRONMENT, 1)[0].id
        record = _finished(store_url, deploy_id, front)

    # The deploy reached its true end: the new commit serves all traffic.
    assert record.state == State.SUCCEEDED, (record.error, [n.text for n in record.notes])
    assert record.commit == commit
    candidate = record.candidate_revision
    assert candidate and candidate != old
    assert world.serving() == [(candidate, 100)]
    assert world.health()["version"]["commit"] == commit
    # One build, one candidate revision, though two runs worked on it.
    assert set(world.build_ids()) - builds_before == {record.build_id}
    made = {name for name in world.revision_names() if name not in (old,)}
    assert made == {candidate}
    assert record.attempt == 2
    assert any("worker lost during" in note.text for note in record.notes)
    # The environment is free again.
    assert open_store(store_url).locks(ENVIRONMENT) == []
    # The job's task died once and its retry finished the work.
    (execution,) = executions(front, front.job)
    assert execution.retried_count == 1 and execution.succeeded_count == 1
    # One thread; its parent tells the end as read back; a reply says the worker was lost.
    messages = front.messages()
    parents = [m for m in messages if not m.get("thread_ts") or m["thread_ts"] == m["ts"]]
    assert len(parents) == 1, [m["text"] for m in parents]
    assert parents[0]["text"].startswith(f"prod now runs {commit[:12]} on {candidate}"), parents[0][
        "text"
    ]
    replies = [m["text"] for m in messages if m not in parents]
    assert any("Worker lost during" in text and "attempt 2" in text for text in replies), replies


def test_a_worker_that_dies_with_no_retry_left_is_found_by_the_sweep(
    world: World, gcp: Sandbox, repo_root: Path
) -> None:
    """The job gives up on a dead task; the sweep finds the deploy once its lease ran out."""
    old = world.first.candidate_revision
    world.reconfigure(
        environment={"rollout": {"steps": [10, 50, 100], "step_wait": 0.2}},
        deployer={"lease": 1.0},
    )
    commit = world.commit("its worker dies once")
    front = make_front(world, gcp)
    front.job = with_worker_job(front, {"DEPLOYER_KILL_AT": "promote.step1"}, retries=0)
    with in_process(front, repo_root):
        assert front.command("prod").status == 200
        record = front.newest()
        (dead,) = executions(front, front.job)
        assert dead.failed_count == 1
        lost = front.wait(lambda r: r.state == State.RUNNING, record.id)
        assert lost.running_stage == "promote"
        # Still 10 % on the candidate, nobody working on it.
        assert sorted(p for _, p in world.serving()) == [10, 90]
        time.sleep(1.2)  # its lease runs out
        report = Sweeper(current_context()).sweep(budget=5)
        assert report.revived == [record.id]
        done = front.finished(record.id, timeout=90)

    assert done.state == State.SUCCEEDED
    assert done.commit == commit and world.serving() == [(done.candidate_revision, 100)]
    assert done.candidate_revision != old
    assert len(executions(front, front.job)) == 2
    replies = [m["text"] for m in front.messages() if m.get("thread_ts") not in (None, m["ts"])]
    assert any("Worker lost during promote; resumed, attempt 2" in text for text in replies)
