"""Workers killed around an approval: at parking, once parked with the lock not yet
paused, and right after the approval woke the deploy up.

A signed `/deploy prod` goes through the front to the world's `deployer-worker` Cloud Run
job (a real `deployer worker` process in the sandbox), which SIGKILLs itself at the named
point (deployer/pipeline/failpoints.py). The job's retry, or the sweep, carries the deploy
to its park; the approver's `/deploy approve ID` dispatches a new execution, which (killed
or not) ends with the candidate serving: one build, one candidate, the lock free, the
thread true.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from deployer_sandbox.harness.sandbox import Sandbox

from deployer.front.context import current_context
from deployer.front.sweep import Sweeper
from deployer.pipeline.record import State
from tests.engine_world import ENVIRONMENT, World, thread_sent, world_fixture  # noqa: F401
from tests.front_world import in_process, make_front, unique
from tests.job_front import executions, with_worker_job


@pytest.mark.parametrize("kill_at", ["approval.parking", "approval.parked", "approval.deciding"])
def test_a_worker_killed_around_the_approval_ends_true(
    world: World, gcp: Sandbox, repo_root: Path, kill_at: str
) -> None:
    old = world.first.candidate_revision
    approver = unique("U")
    gcp.http.sink.add_user(approver, "approver")
    world.reconfigure(
        environment={"approval": {"approvers": [approver], "timeout": 300}},
        deployer={"lease": 2.0},
    )
    commit = world.commit(f"killed at {kill_at}")
    builds_before = set(world.build_ids())
    front = make_front(world, gcp)
    front.job = with_worker_job(front, {"DEPLOYER_KILL_AT": kill_at})
    with in_process(front, repo_root):
        assert front.command("prod").status == 200
        deploy_id = front.newest().id
        store = world.store()

        def parked_and_told() -> bool:
            record = store.get(deploy_id)
            if record is None or record.state != State.AWAITING_APPROVAL:
                return False
            lock = next(iter(store.locks(ENVIRONMENT)), None)
            return lock is not None and lock.owner == "" and thread_sent(store, deploy_id)

        deadline = time.monotonic() + 90
        while not parked_and_told():
            assert time.monotonic() < deadline, store.get(deploy_id)
            if kill_at == "approval.parked":
                # Killed between saving the park and pausing its lease: once the lease ran
                # out, the sweep wakes it, and the run parks again.
                Sweeper(current_context()).sweep(budget=2)
            time.sleep(0.2)
        assert world.serving() == [(old, 100)]  # nothing moved while it waits

        answer = front.command(f"approve {deploy_id}", user=approver)
        assert answer.status == 200
        done = front.finished(deploy_id, timeout=120)

    assert done.state == State.SUCCEEDED, (done.error, [n.text for n in done.notes])
    assert done.commit == commit
    assert world.serving() == [(done.candidate_revision, 100)]
    assert set(world.build_ids()) - builds_before == {done.build_id}
    assert {n for n in world.revision_names() if n != old} == {done.candidate_revision}
    assert world.store().locks(ENVIRONMENT) == []
    assert [(v.who, v.verdict) for v in done.votes] == [(f"slack:{approver}", "approve")]
    assert any("worker lost during" in note.text for note in done.notes)
    assert all(e.succeeded_count + e.failed_count >= 1 for e in executions(front, front.job))
    parents = [m for m in front.messages() if not m.get("thread_ts") or m["thread_ts"] == m["ts"]]
    assert len(parents) == 1
    assert parents[0]["text"].startswith(f"prod now runs {commit[:12]}"), parents[0]["text"]
