"""Deploys that fail before promotion: traffic stays where it was, and the reason is named."""

from __future__ import annotations

import time

from google.cloud.devtools import cloudbuild_v1

from deployer.pipeline.events import StageProgressed
from deployer.pipeline.record import Outcome, Stage, State
from tests.engine_world import ENVIRONMENT, World, world_fixture  # noqa: F401

BuildStatus = cloudbuild_v1.Build.Status


def assert_untouched(world: World) -> None:
    """The first revision still takes all traffic, and the service URL is answered by it."""
    assert world.serving() == [(world.first.candidate_revision, 100)]
    assert world.health()["version"]["commit"] == world.first.commit


def build_status(world: World, build_id: str) -> BuildStatus:
    build = world.builds.get_build(
        request=cloudbuild_v1.GetBuildRequest(
            name=f"projects/{world.project}/locations/europe-west1/builds/{build_id}",
            project_id=world.project,
            id=build_id,
        ),
        timeout=30,
    )
    return BuildStatus(build.status)


def test_a_failed_build_rolls_nothing_out_and_names_the_step(world: World) -> None:
    before = world.revision_names()
    world.commit("broken")
    world.sandbox.faults.arm("build_fail", step="build", message="npm ERR! missing script: build")

    record, events = world.deploy()

    assert record.state == State.FAILED
    assert [s.stage for s in record.stages] == [Stage.PREFLIGHT, Stage.BUILD]
    build = record.stage(Stage.BUILD)
    assert build is not None and build.outcome == Outcome.FAILED
    assert build.summary == "build FAILURE at step build"
    assert 'build step 1 "gcr.io/cloud-builders/docker" failed' in build.detail
    # The step's own words, from its log in Cloud Logging.
    assert build.detail.endswith(
        "Build output (last line of step build):\nnpm ERR! missing script: build"
    )
    assert build.link and (record.build_id or "-") in build.link
    assert record.image is None and record.candidate_revision is None
    assert world.revision_names() == before
    assert_untouched(world)
    assert build_status(world, world.build_ids()[0]) == BuildStatus.FAILURE
    assert world.store().locks(ENVIRONMENT) == []
    assert "build FAILED" in events.text.getvalue()


def test_a_build_past_its_timeout_is_cancelled_and_nothing_rolls_out(world: World) -> None:
    before = world.revision_names()
    engine = world.reconfigure(environment={"timeouts": {"build": 2}})
    world.commit("slow")
    world.sandbox.faults.arm("build_hang")

    started = time.monotonic()
    record, _ = world.deploy(engine=engine)

    assert time.monotonic() - started < 10
    assert record.state == State.FAILED
    build = record.stage(Stage.BUILD)
    assert build is not None and build.outcome == Outcome.TIMED_OUT
    assert build.summary == "build TIMEOUT at step build"
    assert "cancelled the build after 2 s" in build.detail
    assert [s.stage for s in record.stages] == [Stage.PREFLIGHT, Stage.BUILD]
    assert world.revision_names() == before
    assert_untouched(world)
    # The deployer did not leave the build running.
    assert build_status(world, record.build_id or "") == BuildStatus.CANCELLED


def test_a_missing_secret_stops_preflight_before_anything_is_built(world: World) -> None:
    before, builds = world.revision_names(), world.build_ids()
    engine = world.reconfigure(environment={"secrets": {"STRIPE_API_KEY": "stripe-api-key"}})
    world.commit("needs stripe")

    record, events = world.deploy(engine=engine)

    assert record.state == State.FAILED
    assert [s.stage for s in record.stages] == [Stage.PREFLIGHT]
    preflight = record.stage(Stage.PREFLIGHT)
    assert preflight is not None and preflight.outcome == Outcome.FAILED
    assert "STRIPE_API_KEY" in preflight.summary and "stripe-api-key" in preflight.summary
    assert "not found" in preflight.summary
    assert world.build_ids() == builds
    assert world.revision_names() == before
    assert_untouched(world)
    assert world.store().locks(ENVIRONMENT) == []
    assert "stripe-api-key" in events.text.getvalue()


def test_a_revision_that_crashes_at_start_gets_no_traffic_and_its_error_is_quoted(
    world: World,
) -> None:
    before = world.revision_names()
    # The seed's mistake, in the shape the preflight cannot see: MONGODB_URL is given,
    # but empty, which the app refuses (`env_ignore_empty`) as if it were missing. (A
    # variable left out altogether stops at the preflight: tests/test_lint_deploy.py.)
    engine = world.reconfigure(
        environment={"secrets": {"MONGODB_URL": None}, "env": {"MONGODB_URL": ""}}
    )
    world.commit("forgot the database")

    record, events = world.deploy(engine=engine)

    assert record.state == State.FAILED
    assert [s.stage for s in record.stages][-1] == Stage.READY
    ready = record.stage(Stage.READY)
    assert ready is not None and ready.outcome == Outcome.FAILED
    assert record.candidate_revision and record.candidate_revision in ready.summary
    # The container's own words, pydantic's, not just Cloud Run's generic message.
    assert "mongodb_url" in ready.detail
    assert "Field required" in ready.detail
    assert world.revision_names() == before | {record.candidate_revision}
    assert_untouched(world)
    untouched = [
        e.message
        for e in events.events
        if isinstance(e, StageProgressed) and e.message.startswith("traffic untouched")
    ]
    assert untouched == [f"traffic untouched: {world.first.candidate_revision} 100%"]


def test_health_500_fails_the_deploy_and_traffic_stays_on_the_old_revision(world: World) -> None:
    before = world.revision_names()
    world.commit("returns 500")
    world.sandbox.faults.arm("health_500")  # bound to the next revision: the candidate

    record, events = world.deploy()

    assert record.state == State.FAILED
    health = record.stage(Stage.HEALTH)
    assert health is not None and health.outcome == Outcome.FAILED
    assert "HTTP 500" in health.summary
    assert [s.stage for s in record.stages][-1] == Stage.HEALTH
    assert_untouched(world)
    assert world.revision_names() == before | {record.candidate_revision}
    assert any(
        isinstance(e, StageProgressed) and e.message.startswith("traffic untouched")
        for e in events.events
    )


def test_a_hanging_health_check_fails_within_its_timeout(world: World) -> None:
    engine = world.reconfigure(
        service={"health": {"request_timeout": 0.5}}, environment={"timeouts": {"health": 3}}
    )
    world.commit("hangs")
    world.sandbox.faults.arm("health_hang")

    started = time.monotonic()
    record, _ = world.deploy(engine=engine)

    assert time.monotonic() - started < 15
    assert record.state == State.FAILED
    health = record.stage(Stage.HEALTH)
    assert health is not None and health.outcome in (Outcome.FAILED, Outcome.TIMED_OUT)
    assert health.duration <= 3.5
    assert "no answer within 0.5 s" in health.summary
    assert_untouched(world)
