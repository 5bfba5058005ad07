"""Workers killed while analysis judges a deploy (right after a traffic step was judged,
during the watch after verify) and while a hook's execution runs.

A signed `/deploy prod` goes through the front to the world's `deployer-worker` Cloud Run
job (a real `deployer worker` process in the sandbox), which SIGKILLs itself at the named
point (deployer/pipeline/failpoints.py). The job's retry resumes the deploy: it keeps the
stable revision's figures from before the rollout and the watch's end, judges again
what the lost run had not finished, and ends with the candidate serving: one build,
one candidate, the lock free, the thread told once.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from deployer_sandbox.harness.sandbox import Sandbox
from google.cloud import run_v2

from deployer.adapters.google_clients import google_client
from deployer.pipeline.record import DeployRecord, Outcome, Stage, State
from tests.conftest import REGION
from tests.engine_world import ENVIRONMENT, World, world_fixture  # noqa: F401
from tests.front_world import in_process, make_front
from tests.job_front import with_worker_job

WATCH = 3.0


def killed_deploy(world: World, gcp: Sandbox, repo_root: Path, kill_at: str) -> DeployRecord:
    """`/deploy prod` of a new commit through the worker job, whose first run is killed at
    `kill_at`; the record once resumed to its end, checked succeeded, lost once, serving."""
    commit = world.commit(f"killed at {kill_at}")
    front = make_front(world, gcp)
    front.job = with_worker_job(front, {"DEPLOYER_KILL_AT": kill_at})
    with in_process(front, repo_root):
        assert front.command("prod").status == 200
        done = front.finished(front.newest().id, timeout=120)
    assert done.state == State.SUCCEEDED, (done.error, [n.text for n in done.notes])
    assert done.commit == commit
    assert any("worker lost during" in note.text for note in done.notes)
    assert world.serving() == [(done.candidate_revision, 100)]
    # The thread was told once, and tells the end.
    parents = [m for m in front.messages() if not m.get("thread_ts") or m["thread_ts"] == m["ts"]]
    assert len(parents) == 1
    assert parents[0]["text"].startswith(f"prod now runs {commit[:12]}"), parents[0]["text"]
    return done


@pytest.mark.parametrize("kill_at", ["analysis.step50", "watch.window"])
def test_a_worker_killed_while_analysis_judges_ends_true(
    world: World, gcp: Sandbox, repo_root: Path, kill_at: str
) -> None:
    old = world.first.candidate_revision
    world.reconfigure(
        environment={
            "rollout": {"steps": [50, 100], "step_wait": 0},
            "analysis": {
                "max_error_rate": 0.01,
                "min_requests": 10,
                "interval": 1,
                "watch": WATCH,
            },
        },
        deployer={"lease": 2.0},
    )
    builds_before = set(world.build_ids())
    done = killed_deploy(world, gcp, repo_root, kill_at)

    assert set(world.build_ids()) - builds_before == {done.build_id}
    assert {n for n in world.revision_names() if n != old} == {done.candidate_revision}
    assert world.store().locks(ENVIRONMENT) == []
    steps = [m for m in done.analysis if m.phase == "step"]
    watched = [m for m in done.analysis if m.phase == "watch"]
    assert steps and all(m.passed for m in done.analysis)
    assert watched, "the watch judged nothing"
    if kill_at == "analysis.step50":
        # The lost run judged the 50 % step; the resumed one judges it again before 100 %.
        assert [m.percent for m in steps] == [50, 50]
    watch = done.stage(Stage.WATCH)
    assert watch is not None and watch.outcome == Outcome.SUCCEEDED
    assert done.watch_until is not None
    if kill_at == "watch.window":
        # The resumed run kept the lost run's end of the watch: it was not restarted.
        assert done.watch_until < watch.started_at + WATCH - 0.5


def test_a_worker_killed_while_a_hook_runs_never_runs_it_twice(
    world: World, gcp: Sandbox, repo_root: Path
) -> None:
    # postdeploy resumes through the same code (`HookJobs.run` finds the deploy's execution).
    kill_at = "predeploy.running"
    world.reconfigure(
        environment={
            "hooks": {
                "predeploy": {"command": ["python", "-c", "print('migrated')"], "timeout": 60},
                "postdeploy": {"command": ["python", "-c", "print('warmed')"], "timeout": 60},
            }
        },
        deployer={"lease": 2.0},
    )
    done = killed_deploy(world, gcp, repo_root, kill_at)

    assert world.store().locks(ENVIRONMENT) == []
    # The execution the lost run started is the one the resumed run took: one each.
    for name in ("predeploy", "postdeploy"):
        job = f"projects/{world.project}/locations/{REGION}/jobs/{world.service_id}-{name}"
        assert len(hook_executions(gcp, job)) == 1, name
    for stage in (Stage.PREDEPLOY, Stage.POSTDEPLOY):
        result = done.stage(stage)
        assert result is not None and result.outcome == Outcome.SUCCEEDED


def hook_executions(gcp: Sandbox, job: str) -> list[run_v2.Execution]:
    client = google_client(run_v2.ExecutionsClient, gcp.grpc_address)
    return list(client.list_executions(parent=job, timeout=10))
