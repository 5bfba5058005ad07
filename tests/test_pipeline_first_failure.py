"""A first deploy that failed leaves a service that serves nothing: the next deploy takes it
over, and every message says what was read back."""

from __future__ import annotations

import os
import re

import pytest

from deployer import cli
from deployer.pipeline.events import Event, StageProgressed
from deployer.pipeline.record import DeployRecord, Outcome, Stage, State
from tests.engine_world import ENVIRONMENT, Recorder, World, empty_world_fixture  # noqa: F401

NOTHING = "traffic untouched: backend serves nothing, as before"


def progress(events: Recorder, stage: Stage | None = None) -> list[str]:
    return [
        e.message
        for e in events.events
        if isinstance(e, StageProgressed) and (stage is None or e.stage == stage)
    ]


def crashed(world: World, message: str) -> tuple[DeployRecord, Recorder]:
    """A deploy whose candidate exits at start-up; it must fail at ready."""
    world.commit(message)
    world.sandbox.faults.arm("revision_crash")  # the next created revision: the candidate
    record, events = world.deploy()
    assert record.state == State.FAILED
    ready = record.stage(Stage.READY)
    assert ready is not None and ready.outcome == Outcome.FAILED
    assert record.candidate_revision and record.candidate_revision in ready.summary
    assert "container crashed at start-up" in ready.detail
    return record, events


def serving_nothing(world: World) -> None:
    """The service exists (read through the Cloud Run client) and no revision gets traffic."""
    service = world.service()
    assert service.name == world.service_name
    assert world.serving() == []
    assert not service.latest_ready_revision


def checked(world: World, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    os.environ["DEPLOYER_CONFIG"] = str(world.config_path)
    code = cli.main(["check", ENVIRONMENT])
    return code, capsys.readouterr().out


def line(out: str, status: str, subject: str) -> str:
    match = re.search(rf"^  {re.escape(status)} +{re.escape(subject)}: .*$", out, re.MULTILINE)
    assert match, f"no `{status} {subject}` line in:\n{out}"
    return match.group(0)


def test_a_service_left_serving_nothing_is_taken_over_by_the_next_deploy(
    empty_world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    world = empty_world

    first, events = crashed(world, "first, and broken")
    serving_nothing(world)
    assert first.baseline_traffic == [] and first.final_traffic == []
    assert progress(events)[-1] == NOTHING
    assert "traffic now (read back): nothing" in events.text.getvalue()

    code, out = checked(world, capsys)
    assert code == 0, out
    said = line(out, "warn", "service backend")
    assert "exists but serves nothing" in said and "the next deploy takes it over" in said
    assert "0 FAIL" in out

    # A second failure changes nothing: the service still serves nothing, and says so.
    second, events = crashed(world, "still broken")
    serving_nothing(world)
    preflight = second.stage(Stage.PREFLIGHT)
    assert preflight is not None and preflight.outcome == Outcome.SUCCEEDED
    assert preflight.summary.endswith(
        "serving nothing: backend exists, and this deploy takes it over"
    )
    assert second.baseline_traffic == [] and second.final_traffic == []
    assert second.previous_revision is None
    assert progress(events)[-1] == NOTHING
    assert world.revision_names() == {first.candidate_revision, second.candidate_revision}

    # A dry run says what the next deploy will do, and changes nothing.
    _, events = world.deploy(dry_run=True)
    assert "exists but serves nothing: this deploy takes it over" in events.text.getvalue()
    serving_nothing(world)

    world.commit("fixed")
    third, events = world.deploy()
    assert third.state == State.SUCCEEDED, third.error
    candidate = third.candidate_revision or ""
    assert world.serving() == [(candidate, 100)]
    # The candidate tag marked the revision under test; it does not outlive the deploy.
    assert [target.tag for target in world.service().traffic] == [""]
    assert world.health()["version"]["commit"] == third.commit == world.head()
    assert third.baseline_traffic == []
    assert [(s.revision, s.percent) for s in third.final_traffic or []] == [(candidate, 100)]
    deploy = third.stage(Stage.DEPLOY)
    assert deploy is not None and "taking 100% once ready: backend served nothing" in (
        deploy.summary
    )
    promote = third.stage(Stage.PROMOTE)
    assert (
        promote is not None and promote.summary == f"{candidate} takes 100%: nothing served before"
    )

    code, out = checked(world, capsys)
    assert code == 0, out
    assert f"exists, serving {candidate} 100%" in line(out, "ok", "service backend")
    world.note(out)


def test_gradual_steps_give_the_candidate_everything_when_nothing_else_serves(
    empty_world: World,
) -> None:
    world = empty_world
    engine = world.reconfigure(environment={"rollout": {"steps": [10, 50, 100], "step_wait": 0.3}})
    crashed(world, "first, and broken")
    serving_nothing(world)
    world.commit("fixed")
    _, planned = world.deploy(engine=engine, dry_run=True)
    assert "traffic 10% -> 50% -> 100% has nothing to step from" in planned.text.getvalue()
    seen: list[list[tuple[str, int]]] = []

    def watch(event: Event) -> None:
        # What Cloud Run serves whenever a traffic line is said, read while the deploy runs.
        if isinstance(event, StageProgressed) and event.message.startswith("traffic "):
            seen.append(world.serving())

    record, events = world.deploy(engine=engine, listener=watch)

    assert record.state == State.SUCCEEDED, record.error
    candidate = record.candidate_revision or ""
    assert progress(events, Stage.PROMOTE) == [
        f"traffic 100% on {candidate}: nothing else serves, so the first of the steps "
        f"10% -> 50% -> 100% gives {candidate} all of it"
    ]
    assert seen == [[(candidate, 100)]]
    assert world.serving() == [(candidate, 100)]
    assert [target.tag for target in world.service().traffic] == [""]
    assert world.health()["version"]["commit"] == record.commit
    assert "gives" in events.text.getvalue()  # the terminal says it too


def test_an_unhealthy_candidate_that_took_over_is_reported_serving(empty_world: World) -> None:
    """Cloud Run cannot be asked to serve nothing: the deploy says what serves instead."""
    world = empty_world
    crashed(world, "first, and broken")
    world.commit("returns 500")
    world.sandbox.faults.arm("health_500")  # bound to the next revision: the candidate

    record, events = world.deploy()

    assert record.state == State.FAILED
    health = record.stage(Stage.HEALTH)
    assert health is not None and "HTTP 500" in health.summary
    candidate = record.candidate_revision or ""
    assert world.serving() == [(candidate, 100)]
    assert progress(events)[-1] == (
        f"backend serves {candidate} 100%: nothing served before this deploy, "
        "and Cloud Run cannot be asked to serve nothing"
    )
    assert [(s.revision, s.percent) for s in record.final_traffic or []] == [(candidate, 100)]


def test_rollback_refuses_a_service_that_never_served(empty_world: World) -> None:
    world = empty_world
    first, _ = crashed(world, "first, and broken")

    for target in (None, first.candidate_revision):
        record = world.engine.rollback(ENVIRONMENT, target, "cli:tester", lambda e: None)

        assert record.state == State.FAILED
        preflight = record.stage(Stage.PREFLIGHT)
        assert preflight is not None and preflight.outcome == Outcome.FAILED
        assert preflight.summary == (
            "service backend serves no revision and never has; nothing to roll back to"
        )
        serving_nothing(world)
    assert world.store().locks(ENVIRONMENT) == []
