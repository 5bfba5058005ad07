"""A deploy's promises when its run dies and another takes it over (observations 1, 2, 9, 10).

traffic     the split restored is the one that served before the deploy began,
            never a half-finished split a dead run left behind; what is said
            about traffic is what was read back
locks       every way out releases the lock; a forced unlock clears a deploy's lock,
            stops its build and puts its traffic back
the gate    between traffic steps the candidate itself is probed, N times in a row
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from google.cloud.devtools import cloudbuild_v1

from deployer.adapters.health import HttpHealth
from deployer.cli import main
from deployer.engine import Engine
from deployer.pipeline.events import Event, StageFinished
from deployer.pipeline.ports import HealthOutcome
from deployer.pipeline.record import Outcome, Stage, State
from tests.engine_world import ENVIRONMENT, Recorder, World, world_fixture  # noqa: F401
from tests.killed_runs import killed_deploy, run_env, wait_lease_out

GRADUAL = {"rollout": {"steps": [10, 50, 100], "step_wait": 0.2}}


def _ok_share(world: World, requests: int = 200) -> int:
    """How many of `requests` public requests to the service URL answer 200."""
    url = world.service().uri + "/health"
    with httpx.Client(timeout=5) as client:
        return sum(client.get(url).status_code == 200 for _ in range(requests))


def test_a_resumed_deploy_restores_the_split_saved_before_it_began(
    world: World, repo_root: Path
) -> None:
    old = world.first.candidate_revision
    assert old is not None
    world.reconfigure(environment=GRADUAL)
    world.commit("fails once it has traffic")
    killed = killed_deploy(world, "promote.step1", repo_root)
    candidate = killed.candidate_revision
    assert candidate is not None
    # The dead run left 10 % on the candidate; the baseline it saved says what served before.
    assert world.serving() == sorted([(old, 90), (candidate, 10)])
    assert killed.baseline_traffic is not None
    assert [(s.revision, s.percent) for s in killed.baseline_traffic if s.percent] == [(old, 100)]
    world.sandbox.faults.arm("health_500", revision=candidate)
    wait_lease_out(world)

    recorder = Recorder()
    done = world.engine.resume(killed.id, recorder)

    assert done.state == State.ROLLED_BACK, done.error
    assert world.serving() == [(old, 100)]
    assert done.final_traffic is not None
    assert [(s.revision, s.percent) for s in done.final_traffic] == [(old, 100)]
    rollback = done.stage(Stage.ROLLBACK)
    assert rollback is not None and rollback.outcome == Outcome.SUCCEEDED
    assert rollback.summary.startswith(f"traffic back on {old} 100% (was ")
    assert f"{candidate} 10%" in rollback.summary
    assert "worker lost during promote; resumed, attempt 2" in recorder.text.getvalue()
    assert _ok_share(world) == 200
    assert world.store().locks(ENVIRONMENT) == []


def test_a_preflight_failure_on_a_resumed_run_puts_the_saved_split_back(
    world: World, repo_root: Path
) -> None:
    old = world.first.candidate_revision
    world.reconfigure(environment=GRADUAL)
    world.commit("half out")
    killed = killed_deploy(world, "promote.step2", repo_root)
    assert sorted(p for _, p in world.serving()) == [50, 50]
    # Between the runs the config loses a secret's target: the resumed preflight fails.
    world.reconfigure(environment={"secrets": {"MONGODB_URL": "no-such-secret"}})
    wait_lease_out(world)

    done = world.engine.resume(killed.id, Recorder())

    assert done.state == State.ROLLED_BACK
    preflight = [s for s in done.stages if s.stage == Stage.PREFLIGHT]
    assert preflight[-1].outcome == Outcome.FAILED
    assert world.serving() == [(old, 100)]
    assert done.final_traffic is not None
    assert [(s.revision, s.percent) for s in done.final_traffic] == [(old, 100)]
    assert world.store().locks(ENVIRONMENT) == []


def test_a_preflight_failure_on_a_resumed_run_says_what_serves(
    world: World, repo_root: Path
) -> None:
    from deployer.front.messages import deploy_parent

    old = world.first.candidate_revision
    world.commit("built, not yet out")
    killed = killed_deploy(world, "build.submitted", repo_root)
    world.reconfigure(environment={"secrets": {"MONGODB_URL": "no-such-secret"}})
    wait_lease_out(world)

    done = world.engine.resume(killed.id, Recorder())

    assert done.state == State.FAILED
    headline = deploy_parent(done, 0).text
    assert f"traffic stayed on {old} 100%" in headline
    assert "no earlier revision" not in headline
    assert world.store().locks(ENVIRONMENT) == []


def test_the_gate_between_steps_probes_the_candidate_itself(world: World) -> None:
    old = world.first.candidate_revision
    engine = world.reconfigure(environment=GRADUAL)
    world.commit("healthy once, then not")
    seen: list[list[tuple[str, int]]] = []

    def break_after_health(event: Event) -> None:
        if isinstance(event, StageFinished) and event.result.stage == Stage.HEALTH:
            world.sandbox.faults.arm("health_500", revision=event.record.candidate_revision)
        if isinstance(event, StageFinished) and event.result.stage == Stage.PROMOTE:
            seen.append(world.serving())

    record, _ = world.deploy(engine=engine, listener=break_after_health)

    assert record.state == State.ROLLED_BACK
    promote = record.stage(Stage.PROMOTE)
    assert promote is not None and promote.summary.startswith("candidate unhealthy at 10%")
    # The candidate never got more than its first step.
    assert seen and all(p <= 10 for rev, p in seen[0] if rev == record.candidate_revision)
    assert world.serving() == [(old, 100)]


def test_a_cancel_of_a_dead_deploy_ends_it_and_frees_the_lock(
    world: World, repo_root: Path
) -> None:
    world.commit("hangs in its build")
    world.sandbox.faults.arm("build_hang")
    killed = killed_deploy(world, "build.running", repo_root)
    assert killed.build_id is not None
    world.store().request_cancel(killed.id, "slack:U0TESTER1")
    wait_lease_out(world)

    worker = subprocess.run(
        [sys.executable, "-m", "deployer.cli", "worker", killed.id],
        env=run_env(world),
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert worker.returncode == 0, worker.stderr
    assert "was cancelled" in worker.stdout
    done = world.store().get(killed.id)
    assert done is not None and done.state == State.CANCELLED
    assert world.store().locks(ENVIRONMENT) == []
    build = world.builds.get_build(
        request=cloudbuild_v1.GetBuildRequest(
            name=f"projects/{world.project}/locations/europe-west1/builds/{killed.build_id}",
            project_id=world.project,
            id=killed.build_id,
        ),
        timeout=30,
    )
    assert build.status == cloudbuild_v1.Build.Status.CANCELLED
    assert world.serving() == [(world.first.candidate_revision, 100)]


def test_a_forced_unlock_abandons_a_stuck_deploy_and_puts_traffic_back(
    world: World, repo_root: Path
) -> None:
    old = world.first.candidate_revision
    world.reconfigure(environment=GRADUAL)
    world.commit("stuck half way")
    killed = killed_deploy(world, "promote.step1", repo_root)
    os.environ.update(DEPLOYER_CONFIG=str(world.config_path), DEPLOYER_STORE=world.store_url)
    # Plain unlock leaves a deploy's lock alone; --force clears it.
    assert main(["unlock", ENVIRONMENT]) == 0
    assert [lock.holder for lock in world.store().locks(ENVIRONMENT)] == [killed.id]

    assert main(["unlock", ENVIRONMENT, "--force", "--reason", "worker wedged"]) == 0

    done = world.store().get(killed.id)
    assert done is not None and done.state == State.ABANDONED
    assert done.abandoned_by is not None and done.abandoned_by.startswith("cli:")
    assert "worker wedged" in done.error
    assert world.serving() == [(old, 100)]
    assert done.final_traffic is not None
    assert [(s.revision, s.percent) for s in done.final_traffic] == [(old, 100)]
    assert world.store().locks(ENVIRONMENT) == []


def test_a_deploy_lost_too_often_is_abandoned_and_its_traffic_put_back(
    world: World, repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = world.first.candidate_revision
    world.reconfigure(environment=GRADUAL, deployer={"max_attempts": 1})
    world.commit("lost every time")
    killed = killed_deploy(world, "promote.step1", repo_root)
    wait_lease_out(world)
    # Status says the worker is gone, before anyone acts.
    os.environ.update(DEPLOYER_CONFIG=str(world.config_path), DEPLOYER_STORE=world.store_url)
    main(["status", ENVIRONMENT])
    status = world.note(capsys.readouterr().out)
    assert f"deploy running: {killed.id}" in status
    assert "its worker was lost (lease ran out" in status

    done = world.engine.resume(killed.id, Recorder())

    assert done.state == State.ABANDONED
    assert done.error == "abandoned by the deployer: its worker was lost once"
    assert world.serving() == [(old, 100)]
    assert world.store().locks(ENVIRONMENT) == []


class CrashingHealth(HttpHealth):
    """Probes that crash the run: an exception nobody planned for (the run dies with it)."""

    def check(self, *args: object, **kwargs: object) -> HealthOutcome:
        raise ProbeCrash("the probe blew up")


class ProbeCrash(RuntimeError):
    pass


def test_a_run_that_crashes_keeps_prod_locked_until_the_deploy_is_resumed_or_abandoned(
    world: World,
) -> None:
    old = world.first.candidate_revision
    world.reconfigure(deployer={"lease": 1.0, "max_attempts": 2})
    world.commit("its probes crash")
    crashing = replace(world.platform, health=CrashingHealth())
    engine = Engine(world.config, crashing, world.store())
    record = engine.new_deploy(ENVIRONMENT, None, "cli:tester")

    with pytest.raises(ProbeCrash):
        engine.deploy(record, Recorder())

    # A crash is a death: the deploy keeps prod (nobody else may start on a half-done
    # deploy) until its lease runs out and a run takes it over.
    saved = world.store().get(record.id)
    assert saved is not None and saved.state == State.RUNNING
    assert [lock.holder for lock in world.store().locks(ENVIRONMENT)] == [record.id]
    wait_lease_out(world)
    with pytest.raises(ProbeCrash):
        engine.resume(record.id, Recorder())
    wait_lease_out(world)
    done = engine.resume(record.id, Recorder())

    assert done.state == State.ABANDONED
    assert done.error == "abandoned by the deployer: its worker was lost 2 times"
    assert world.serving() == [(old, 100)]
    assert world.store().locks(ENVIRONMENT) == []
